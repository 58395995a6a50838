"""The README's samples are what the code prints: the `check` transcript, the trace header of
the quick start's request, and the decision log line."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from dialwhom.app import create_app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
MS = re.compile(r"\d+(\.\d+)?ms|elapsed_ms=\d+(\.\d+)?")  # timings vary from run to run


def test_the_check_sample_is_what_check_prints():
    block = README.split("```console\n$ dialwhom check --config examples/dialwhom.yaml\n", 1)[1].split("```", 1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALWHOM_") and k != "NO_COLOR"}
    out = subprocess.run([sys.executable, "-c", "import sys; from dialwhom.cli import main; sys.exit(main(sys.argv[1:]))",
                          "check", "--config", "examples/dialwhom.yaml"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert out.stdout == block


def test_the_trace_and_log_samples_are_what_the_service_prints(caplog, monkeypatch):
    monkeypatch.delenv("DIALWHOM_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    app = create_app("examples/dialwhom.yaml")
    try:
        with caplog.at_level(logging.INFO, logger="dialwhom.decision"):
            r = app.test_client().get("/exotel/dial-whom?CallSid=demo1&From=09876543210")
    finally:
        app.extensions["dialwhom"].close()
    header = r.headers["X-Dialwhom-Trace"]
    sample = re.search(r"`(path=fresh; key=caller; via=accounts;[^`]+)`", README).group(1)
    assert MS.sub("#", sample) == MS.sub("#", header)
    line = next(rec.getMessage() for rec in caplog.records if rec.name == "dialwhom.decision")
    logged = re.search(r"`\S+ INFO dialwhom.decision (decision call=demo1 [^`]+)`", README).group(1)
    assert MS.sub("#", logged) == MS.sub("#", line)
