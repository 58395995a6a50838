"""Starting and stopping real servers in end-to-end tests (`dialwhom serve`, nginx)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

#: the `dialwhom` command, run by the interpreter running the tests
CLI = [sys.executable, "-c", "import sys; from dialwhom.cli import main; sys.exit(main(sys.argv[1:]))"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answering(url: str, proc: subprocess.Popen, log: Path, **kw) -> None:
    """Poll `url` until it answers; fail with the server's log if it exits or never does."""
    for _ in range(300):
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited: " + log.read_text())
        try:
            requests.get(url, timeout=0.5, **kw)
            return
        except requests.RequestException:
            time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{url} never answered: " + log.read_text())


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
