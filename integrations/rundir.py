"""The run directory `dialwhom serve` keeps for one service: how its processes find each other.

``master.pid`` (whom ``dialwhom reload`` signals), ``server.json`` (config path and address),
``reload.json`` (the master's verdict on the last SIGHUP, shown by /readyz), ``forget/``
(requests to forget a caller, read by every worker: each holds a hash, never the number) and
``metrics/`` (prometheus_client's multiprocess files when several workers run). Mode 0700.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ENV = "DIALWHOM_RUN_DIR"
#: forget requests older than this are removed (every worker has read them by then)
FORGET_KEEP_S = 60.0


def default_path(port: int) -> Path:
    """``$DIALWHOM_RUN_DIR``, else ``<tmp>/dialwhom-<port>`` (one per service on a host)."""
    env = os.environ.get(ENV)
    return Path(env) if env else Path(tempfile.gettempdir()) / f"dialwhom-{port}"


def caller_digest(e164: str) -> str:
    """What a forget request holds instead of the number."""
    return hashlib.sha256(e164.encode()).hexdigest()


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.pidfile = self.path / "master.pid"
        self.server_file = self.path / "server.json"
        self.status_file = self.path / "reload.json"
        self.forget_dir = self.path / "forget"
        self.metrics_dir = self.path / "metrics"

    @classmethod
    def from_env(cls) -> "RunDir | None":
        env = os.environ.get(ENV)
        return cls(env) if env and Path(env).is_dir() else None

    def prepare(self, *, pid: int, config: str | None, bind: str) -> None:
        """Create (mode 0700) and clean: nothing from a previous run may be read as current."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        for folder in (self.metrics_dir, self.forget_dir):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
        self.status_file.unlink(missing_ok=True)
        _write(self.pidfile, f"{pid}\n")
        _write(self.server_file, json.dumps({"pid": pid, "config": config, "bind": bind}))

    def server(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.server_file.read_text())
        except (OSError, ValueError):
            return None

    def master_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def write_status(self, status: dict[str, Any]) -> None:
        _write(self.status_file, json.dumps(status))

    def read_status(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return None

    def post_forget(self, e164: str) -> None:
        """Ask every worker to forget one caller."""
        self.forget_dir.mkdir(mode=0o700, exist_ok=True)
        _write(self.forget_dir / f"{time.time_ns()}-{os.getpid()}.req", caller_digest(e164))
        now = time.time()
        for old in self.forget_dir.glob("*.req"):
            try:
                if now - old.stat().st_mtime > FORGET_KEEP_S:
                    old.unlink()
            except OSError:
                pass

    def forget_requests(self, seen: set[str]) -> list[str]:
        """Digests of forget requests not in `seen` (their names are added to it)."""
        out = []
        try:
            names = sorted(p.name for p in self.forget_dir.glob("*.req"))
        except OSError:
            return out
        for name in names:
            if name in seen:
                continue
            try:
                out.append((self.forget_dir / name).read_text().strip())
            except OSError:
                continue
            seen.add(name)
        return out


def _write(path: Path, text: str) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
