"""`dialwhom serve` as a real gunicorn process for end-to-end tests: started on a free port,
waited for until /healthz answers, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

COMMAND = [sys.executable, "-c", "import sys; from dialwhom.cli import main; sys.exit(main(sys.argv[1:]))"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(config: Path, *args: str, cwd: Path | None = None) -> Iterator[tuple[str, Path]]:
    """``(base_url, log_path)`` of `dialwhom serve --config config *args` (log in cwd/server.log)."""
    folder = cwd or config.parent
    log_path = folder / "server.log"
    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*COMMAND, "serve", "--config", str(config), "--port", str(port), *args],
                                cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if requests.get(base + "/healthz", timeout=0.5).status_code == 200:
                        break
                except requests.RequestException:
                    time.sleep(0.05)
            else:
                pytest.fail("gunicorn did not start: " + log_path.read_text())
            yield base, log_path
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
