"""The console end to end: `dialwhom serve --workers 1` (gunicorn) with console_token, signed in
over real HTTP, showing a call made through /exotel/dial-whom."""

from __future__ import annotations

import re
from pathlib import Path

from served import serving
import requests
import yaml
from sample import ASHA, ASHA_CUSTOMER, sample_config

from dialwhom.routing.redact import mask

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_TOKEN = "gunicorn-console-0123456789abcdef"


def test_console_under_gunicorn(tmp_path):
    config = sample_config(console_token=CONSOLE_TOKEN, connectors=[{"id": "accounts", "type": "directory", "path": str(ROOT / "examples" / "accounts.csv")}])
    (tmp_path / "dialwhom.yaml").write_text(yaml.safe_dump(config))
    with serving(tmp_path / "dialwhom.yaml", "--workers", "1", "--threads", "4", cwd=tmp_path) as (base, log_path):
        with requests.Session() as browser:
            assert browser.post(base + "/console/login", data={"token": "wrong-token-0123456789abcdef"}).status_code == 403
            signed = browser.post(base + "/console/login", data={"token": CONSOLE_TOKEN}, allow_redirects=False)
            assert signed.status_code == 303 and "HttpOnly" in signed.headers["Set-Cookie"]
            assert requests.get(base + "/exotel/dial-whom", params={"CallSid": "g-1", "CallFrom": ASHA_CUSTOMER}, timeout=5).text.startswith(ASHA)
            (entry,) = browser.get(base + "/console/api/decisions", timeout=5).json()["decisions"]
            assert entry["path"] == "fresh" and entry["first"] == {"number": mask(ASHA), "why": "owner"}
            pages = {p: browser.get(f"{base}/console/{p}", timeout=5) for p in ("live", "now", "charts", "try")}
            assert all(r.status_code == 200 for r in pages.values())
            assert mask("+919876543210") in pages["live"].text
            assert browser.get(base + "/console/static/console.js").status_code == 200
            for r in pages.values():
                assert "9876543210" not in r.text and ASHA not in r.text and CONSOLE_TOKEN not in r.text
            assert re.search(r"<svg", pages["charts"].text)
    assert CONSOLE_TOKEN not in (tmp_path / "server.log").read_text()
