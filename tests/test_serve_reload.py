"""A real `dialwhom serve --workers 2` (gunicorn) reloaded under load: a bad config is refused
and the master survives; a good one swaps in; no request fails and no answer mixes configs.
Also: metrics summed over both workers, /readyz naming the worker, `dialwhom forget`."""

from __future__ import annotations

import sample
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from serving import CLI, free_port, stop, wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
OPS = "ops-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {OPS}"}
PLAN_A, PLAN_B = sample.FALLBACK, "+918000000001"


def _config(fallback: str) -> dict:
    return {"connectors": [{"id": "accounts", "type": "directory", "path": "accounts.csv"}],
            "reps": [{"owner": "asha@example.com", "phone": sample.ASHA}],
            "fallback": [fallback], "ops_token": OPS, "log_format": "json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reload")
    (folder / "accounts.csv").write_text("account_id,account_name,phones,owner\nA-1,Acme,09876543210,asha@example.com\n")
    path = folder / "dialwhom.yaml"
    path.write_text(yaml.safe_dump(_config(PLAN_A)))
    port = free_port()
    run_dir = folder / "run"
    log = open(folder / "server.log", "w")
    env = dict(os.environ, DIALWHOM_WATCH_S="0.1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([*CLI, "serve", "--config", str(path), "--port", str(port), "--workers", "2", "--threads", "8",
                             "--run-dir", str(run_dir)], cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_until_answering(base + "/healthz", proc, folder / "server.log")
    yield {"base": base, "proc": proc, "config": path, "log": folder / "server.log", "run_dir": run_dir, "port": port}
    stop(proc)
    log.close()


def _versions(base: str, tries: int = 30) -> dict[int, str]:
    """worker pid -> config version, from fresh connections (any worker may accept each)."""
    seen: dict[int, str] = {}
    for _ in range(tries):
        doc = requests.get(base + "/readyz", headers={**AUTH, "Connection": "close"}, timeout=2).json()
        seen[doc["worker"]] = doc["config_version"]
    return seen


def _wait_status(run_dir: Path, since: float) -> dict:
    for _ in range(200):
        try:
            status = json.loads((run_dir / "reload.json").read_text())
            if status["at"] >= since:
                return status
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("no reload verdict")


def test_reload_under_load_bad_refused_good_applied(server):
    base, proc = server["base"], server["proc"]
    version_a = set(_versions(base).values())
    assert len(version_a) == 1
    answers: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as s:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = s.get(f"{base}/exotel/dial-whom?CallSid=L{threading.get_ident()}-{i}&From=09000000001", timeout=5)
                    answers.append((r.status_code, r.text, r.headers.get("X-Dialwhom-Trace", "")))
                except requests.RequestException as exc:
                    answers.append((0, str(exc), ""))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        bad = _config(PLAN_B)
        bad["fallback"] = "not a number"
        server["config"].write_text(yaml.safe_dump(bad))
        sent = time.time()
        os.kill(proc.pid, signal.SIGHUP)
        status = _wait_status(server["run_dir"], sent)
        assert status["ok"] is False and status["key"] == "fallback"
        time.sleep(0.3)
        assert proc.poll() is None  # the master is still up
        doc = requests.get(base + "/readyz", headers=AUTH, timeout=2).json()
        assert doc["reload"]["ok"] is False and "fallback" in doc["reload"]["error"]
        assert set(_versions(base).values()) == version_a  # the old config keeps serving

        server["config"].write_text(yaml.safe_dump(_config(PLAN_B)))
        out = subprocess.run([*CLI, "reload", "--run-dir", str(server["run_dir"])], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "reloaded: config" in out.stdout
        for _ in range(100):
            versions = _versions(base)
            if len(versions) == 2 and not set(versions.values()) & version_a:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"workers did not all reload: {versions}")
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert answers and all(status == 200 for status, _, _ in answers), [a for a in answers if a[0] != 200][:3]
    version_b = set(_versions(base).values())
    for _, body, trace in answers:  # every answer is wholly one config's: body and version agree
        cfg = trace.rsplit("cfg=", 1)[1]
        assert (body, cfg in version_a) in ((PLAN_A, True), (PLAN_B, False)), (body, trace)
        assert cfg in version_a | version_b
    assert {body for _, body, _ in answers} == {PLAN_A, PLAN_B}
    log = server["log"].read_text()
    assert "reload refused: config error at 'fallback'" in log
    assert "Worker failed to boot" not in log


def test_metrics_sum_over_both_workers_and_readyz_names_the_worker(server):
    base = server["base"]
    assert len(_versions(base, tries=60)) == 2  # two worker pids answered

    def total(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("dialwhom_decisions_total{") and 'endpoint="fallback"' in line)

    before = total(requests.get(base + "/metrics", headers=AUTH, timeout=2).text)
    with requests.Session() as s:
        for i in range(40):
            assert s.get(f"{base}/exotel/fallback?CallSid=M{i}", timeout=2).status_code == 200
    time.sleep(0.4)  # each worker writes its tallies every DIALWHOM_WATCH_S (0.1 s here)
    seen = set()
    for _ in range(6):  # whichever worker answers the scrape, the sum is the same
        r = requests.get(base + "/metrics", headers=AUTH, timeout=2)
        seen.add(total(r.text) - before)
    assert seen == {40.0}
    assert requests.get(base + "/metrics", timeout=2).status_code == 401  # ops_token guards it


def test_several_workers_without_shared_state_warns(server):
    assert "without shared_state" in server["log"].read_text()


def test_json_log_lines_parse_one_by_one(server):
    requests.get(f"{server['base']}/exotel/dial-whom?CallSid=J1&From=09876543210", timeout=2)
    time.sleep(0.3)
    lines = [line for line in server["log"].read_text().splitlines() if line.startswith("{")]
    docs = [json.loads(line) for line in lines]  # every JSON line parses alone
    decisions = [d for d in docs if d.get("event") == "decision" and d.get("call") == "J1"]
    assert decisions and decisions[0]["caller"] == "+91*******210" and decisions[0]["path"] in ("fresh", "cache")
    access = [d for d in docs if d.get("event") == "access" and d.get("path") == "/exotel/dial-whom"]
    assert access and access[0]["status"] == "200" and "?" not in json.dumps(access[0])  # no query string, no token
    assert any(d["logger"] == "gunicorn.error" for d in docs)  # gunicorn's own lines, same format
    assert "9876543210" not in server["log"].read_text()


def test_forget_reaches_every_worker(server):
    base = server["base"]
    out = subprocess.run([*CLI, "forget", "09876543210", "--run-dir", str(server["run_dir"]), "--config", str(server["config"])],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "forgot +91*******210: every worker" in out.stdout
    assert "9876543210" not in out.stdout
