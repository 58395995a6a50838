"""End to end behind HTTPS: Debian's nginx running the shipped examples/nginx/dialwhom.conf
(its ports and paths substituted) with a self-signed certificate, in front of
`dialwhom serve --workers 1`, and a call played through it with `dialwhom simulate`."""

from __future__ import annotations

import sample
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from serving import CLI, free_port, stop, wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "examples" / "nginx" / "dialwhom.conf"
TOKEN = "nginx-e2e-token-0123456789"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

pytestmark = pytest.mark.skipif(
    NGINX is None or shutil.which("openssl") is None,
    reason="needs Debian's nginx and the openssl CLI (apt-get install -y nginx openssl; .ci/run installs nginx)",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    d = tmp_path_factory.mktemp("nginx")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    (d / "accounts.csv").write_text("account_id,account_name,phones,owner\nA-1,Acme,09876543210,asha@example.com\n")
    (d / "dialwhom.yaml").write_text(yaml.safe_dump({
        "token": TOKEN, "trusted_proxies": 1,
        "connectors": [{"id": "accounts", "type": "directory", "path": "accounts.csv"}],
        "reps": [{"owner": "asha@example.com", "phone": sample.ASHA, "team": "north"}],
        "teams": {"north": {"backup": [sample.VIKRAM]}}, "fallback": [sample.FALLBACK],
    }))
    app_port, tls_port = free_port(), free_port()
    app_log = d / "dialwhom.log"
    with open(app_log, "w") as out:
        app = subprocess.Popen([*CLI, "serve", "--config", str(d / "dialwhom.yaml"), "--port", str(app_port), "--workers", "1",
                                "--run-dir", str(d / "run")], cwd=d, stdout=out, stderr=subprocess.STDOUT)
    wait_until_answering(f"http://127.0.0.1:{app_port}/healthz", app, app_log)

    site = SITE.read_text()
    for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;"),
                     ("server 127.0.0.1:8080;", f"server 127.0.0.1:{app_port};"),
                     ("/etc/ssl/certs/dialwhom.pem", str(d / "cert.pem")),
                     ("/etc/ssl/private/dialwhom.key", str(d / "key.pem")),
                     ("/var/log/nginx/dialwhom.access.log", str(d / "access.log"))):
        assert old in site, f"examples/nginx/dialwhom.conf no longer has {old!r}"
        site = site.replace(old, new)
    (d / "site.conf").write_text(site)
    temp = "\n".join(f"  {k}_temp_path {d / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (d / "nginx.conf").write_text(f"""daemon off;
worker_processes 1;
pid {d / 'nginx.pid'};
error_log {d / 'error.log'} info;
events {{ worker_connections 64; }}
http {{
  access_log off;
{temp}
  include {d / 'site.conf'};
}}
""")
    nginx_log = d / "nginx.out"
    with open(nginx_log, "w") as out:
        nginx = subprocess.Popen([NGINX, "-c", str(d / "nginx.conf"), "-p", str(d)], stdout=out, stderr=subprocess.STDOUT)
    wait_until_answering(f"https://127.0.0.1:{tls_port}/healthz", nginx, nginx_log, verify=str(d / "cert.pem"))
    yield {"base": f"https://127.0.0.1:{tls_port}", "dir": d, "app_log": app_log}
    stop(nginx)
    stop(app)


def test_a_call_played_through_nginx_with_tls(stack):
    base, d = stack["base"], stack["dir"]
    env = dict(os.environ, REQUESTS_CA_BUNDLE=str(d / "cert.pem"))
    out = subprocess.run([*CLI, "simulate", f"{base}/exotel/dial-whom?token={TOKEN}", "--fallback-url", f"{base}/exotel/fallback?token={TOKEN}",
                          "--from", "09876543210", "--answers", "busy,completed"], capture_output=True, text=True, timeout=60, env=env, cwd=d)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "answered by +919800000002 on attempt 2; contract kept" in out.stdout


def test_post_through_nginx_and_the_access_logs_hold_no_token_or_number(stack):
    base, d = stack["base"], stack["dir"]
    r = requests.post(f"{base}/exotel/dial-whom?token={TOKEN}", data={"CallSid": "n1", "CallFrom": "09876543210"},
                      verify=str(d / "cert.pem"), timeout=5)
    assert r.status_code == 200 and r.text.startswith(sample.ASHA)
    assert requests.get(f"{base}/metrics", verify=str(d / "cert.pem"), timeout=5).status_code == 404  # not published
    time.sleep(0.3)  # dialwhom writes its log lines in batches every 0.1 s
    access = (d / "access.log").read_text()
    assert "/exotel/dial-whom" in access
    for log in (access, stack["app_log"].read_text()):
        assert TOKEN not in log and "?token" not in log and "9876543210" not in log
