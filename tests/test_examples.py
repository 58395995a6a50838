"""The shipped deployment examples say what the code accepts: the systemd unit's and the
Dockerfile's commands parse, the container's config validates, compose wires Redis to it.
(examples/nginx/dialwhom.conf runs for real in tests/test_e2e_nginx.py; no container is built
here: CI machines cannot run a container build.)"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from dialwhom.cli import build_parser
from dialwhom.integrations.reload import validate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _parse(argv: list[str]):
    assert Path(argv[0]).name == "dialwhom", argv
    return build_parser().parse_args(argv[1:])


def test_the_systemd_unit_runs_serve_and_reloads_through_dialwhom_reload():
    unit = (EXAMPLES / "systemd" / "dialwhom.service").read_text()
    start = re.search(r"^ExecStart=(.+)$", unit, re.M).group(1)
    reload = re.search(r"^ExecReload=(.+)$", unit, re.M).group(1)
    serve = _parse(shlex.split(start))
    assert (serve.command, serve.workers, serve.port) == ("serve", 1, 8080)
    again = _parse(shlex.split(reload))
    assert (again.command, again.port) == ("reload", serve.port)
    assert "Environment=DIALWHOM_RUN_DIR=/run/dialwhom" in unit and "RuntimeDirectory=dialwhom" in unit
    # one worker pinned to one CPU (README "One worker, one CPU"); several workers must not share one
    affinity = re.search(r"^CPUAffinity=(\S+)$", unit, re.M)
    assert affinity is not None and affinity.group(1).isdigit() and serve.workers == 1


def test_the_dockerfile_command_parses_and_its_config_validates(tmp_path, monkeypatch):
    dockerfile = (EXAMPLES / "docker" / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.+\])$", dockerfile, re.M).group(1))
    args = _parse(cmd)
    assert (args.command, args.host, args.workers) == ("serve", "0.0.0.0", 2)
    cfg = tmp_path / "dialwhom.yaml"
    cfg.write_text((EXAMPLES / "docker" / "dialwhom.yaml").read_text())
    (tmp_path / "accounts.csv").write_text((EXAMPLES / "accounts.csv").read_text())
    for name, value in {"DIALWHOM_TOKEN": "t" * 24, "DIALWHOM_OPS_TOKEN": "o" * 24, "DIALWHOM_REDIS_URL": "redis://redis:6379/0"}.items():
        monkeypatch.setenv(name, value)
    settings = validate(str(cfg))
    assert settings.shared_state.url == "redis://redis:6379/0" and settings.log_format == "json"


def test_compose_gives_the_service_redis_and_its_secrets():
    compose = yaml.safe_load((EXAMPLES / "docker" / "compose.yaml").read_text())
    svc = compose["services"]["dialwhom"]
    assert svc["environment"]["DIALWHOM_REDIS_URL"] == "redis://redis:6379/0" and "redis" in compose["services"]
    assert {"DIALWHOM_TOKEN", "DIALWHOM_OPS_TOKEN"} <= set(svc["environment"])
    assert svc["build"]["dockerfile"] == "examples/docker/Dockerfile"
