"""Running the service for years: gunicorn whose master cannot be taken down by a bad config.

gunicorn's own SIGHUP re-reads its settings and starts new workers; a worker that cannot load
the app exits with "Worker failed to boot" and the master halts. Here the master keeps the
last valid `Settings` instead: on SIGHUP it validates the config file, and if it is bad logs
the refusal (naming the key), writes it to the run directory for /readyz and changes nothing.
If it is good, the master keeps it and forwards SIGHUP to each worker, which reloads
in-process (`dialwhom.integrations.reload`: built beside, swapped whole, caches carried
over). A worker that starts later (a crash, a timeout) is built from the master's last valid
settings, never from a file that may have gone bad since.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from dialwhom import logs
from dialwhom.server import RedactingLogger
from dialwhom.integrations.reload import KEY, validate
from dialwhom.integrations.rundir import RunDir
from dialwhom.routing.config import ConfigError, Settings

log = logging.getLogger("dialwhom.serve")


class ServeState:
    """What the master knows: the config file, the last valid settings, the run directory."""

    def __init__(self, config: str | None, settings: Settings, run_dir: RunDir):
        self.config = config
        self.settings = settings
        self.run_dir = run_dir
        logs.set_format(settings.log_format)  # the master's own lines (gunicorn's) too

    def validate_for_reload(self, say=None) -> bool:
        """Check the config file again; keep it if valid. Records the verdict in the run dir."""
        say = say or log
        started = time.time()
        try:
            settings = validate(self.config or self.settings.source)
        except ConfigError as exc:
            say.error("reload refused: %s; still serving config %s", exc, self.settings.version)
            self.run_dir.write_status({"ok": False, "at": started, "error": str(exc), "key": exc.key, "serving": self.settings.version})
            return False
        except Exception as exc:  # whatever a connector's constructor raises, the master stays up
            say.error("reload refused: %s: %s; still serving config %s", type(exc).__name__, exc, self.settings.version)
            self.run_dir.write_status({"ok": False, "at": started, "error": f"{type(exc).__name__}: {exc}", "serving": self.settings.version})
            return False
        previous, self.settings = self.settings.version, settings
        logs.set_format(settings.log_format)
        self.run_dir.write_status({"ok": True, "at": started, "version": settings.version, "from": previous})
        say.info("config %s valid; workers reload in place (was %s)", settings.version, previous)
        return True


def install_reload_signal(app: Any) -> None:
    """SIGHUP in this process reloads `app`'s config (in a thread: not inside the handler)."""
    reloader = app.extensions["dialwhom.reload"]

    def on_hup(signum, frame) -> None:
        threading.Thread(target=reloader.reload, name="dialwhom-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, on_hup)


def run_gunicorn(state: ServeState, settings: dict[str, Any]) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    class DialwhomArbiter(Arbiter):
        def handle_hup(self) -> None:
            self.log.info("Hang up: validating %s before any worker reloads", state.config or state.settings.source)
            if state.validate_for_reload(self.log):
                for pid in list(self.WORKERS):
                    try:
                        os.kill(pid, signal.SIGHUP)
                    except ProcessLookupError:
                        pass

    loaded: list[Any] = []  # the Flask app this worker built (worker.wsgi may wrap it)

    def post_worker_init(worker) -> None:
        from dialwhom.cli import _freeze_startup_objects

        _freeze_startup_objects(worker)
        install_reload_signal(loaded[-1])

    def child_exit(server, worker) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid)

    def worker_exit(server, worker) -> None:
        logs.flush()

    class DialwhomServer(BaseApplication):
        def load_config(self):
            hooks = {"post_worker_init": post_worker_init, "child_exit": child_exit, "worker_exit": worker_exit,
                     "logger_class": GunicornLogger}
            for key, value in {**settings, **hooks}.items():
                if key in self.cfg.settings:  # older gunicorn lacks some (control_socket_disable)
                    self.cfg.set(key, value)

        def load(self):
            from dialwhom.app import create_app

            app = create_app(state.settings)  # the master's last valid settings
            loaded.append(app)
            return app

        def run(self):
            try:
                DialwhomArbiter(self).run()
            except RuntimeError as exc:
                print(f"\nError: {exc}\n", file=sys.stderr)
                sys.stderr.flush()
                sys.exit(1)

    DialwhomServer().run()


def run_dev_server(app: Any, state: ServeState, host: str, port: int) -> None:
    """Werkzeug's server; SIGHUP reloads in this process after the same validation."""
    reloader = app.extensions["dialwhom.reload"]

    def on_hup(signum, frame) -> None:
        def work() -> None:
            if state.validate_for_reload():
                reloader.reload()
        threading.Thread(target=work, name="dialwhom-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, on_hup)
    app.run(host=host, port=port, threaded=True)


class GunicornLogger(RedactingLogger):
    """gunicorn's error and access logs, redacted, in dialwhom's format (``logger_class``)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for h in logger.handlers:
                h.setFormatter(logs.Formatter())

    def access(self, resp, req, environ, request_time) -> None:
        if not logs.is_json():
            return super().access(resp, req, environ, request_time)
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict or self.cfg.syslog):
            return None
        atoms = self.atoms(resp, req, environ, request_time)
        fields = {"event": "access", "remote": atoms.get("h"), "method": atoms.get("m"), "path": atoms.get("U"),
                  "status": atoms.get("s"), "bytes": atoms.get("B"), "ms": atoms.get("M")}
        try:
            self.access_log.info("%s %s %s", atoms.get("m"), atoms.get("U"), atoms.get("s"), extra={"fields": fields})
        except Exception:
            self.error("Failed to log access")


__all__ = ["GunicornLogger", "ServeState", "run_gunicorn", "run_dev_server", "install_reload_signal", "KEY"]
