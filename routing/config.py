"""The service's config: found, read, `${ENV}`-substituted and validated once, at startup.

Search order (interface.md): an explicit path, ``$DIALWHOM_CONFIG``, ``./dialwhom.yaml``, then
the shipped example (``examples/dialwhom.yaml`` with its sample data). Any bad value raises
`ConfigError` naming the key, so a broken config never reaches a caller.

Connector entries are checked here only for what every connector has (``id``, ``type`` and the
framework's own keys); their type-specific keys are checked against each connector's declared
schema when the registry builds them.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
from contextlib import ExitStack
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import phonenumbers
import yaml

from dialwhom.routing.config_error import ConfigError
from dialwhom.routing.phones import parse_config_number

__all__ = ["ConfigError", "Settings", "Rep", "ConnectorSettings", "load", "find_config", "from_mapping"]

def _embedded_default() -> Path:
    """The shipped example config (package data), as a file on disk even from a zipped install."""
    ref = resources.files("dialwhom").joinpath("examples", "dialwhom.yaml")
    if isinstance(ref, Path):
        return ref
    stack = ExitStack()  # a zipped install: extract once for the life of the process
    atexit.register(stack.close)
    folder = stack.enter_context(resources.as_file(resources.files("dialwhom").joinpath("examples")))
    return Path(folder) / "dialwhom.yaml"


EXAMPLE_CONFIG = _embedded_default()
LOOKUP_SOURCES = ("custom_field", "digits", "caller")
BUDGET_CEILING_MS = 8000
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# Keys every connector entry may carry; the framework reads them, not the connector.
FRAMEWORK_CONNECTOR_KEYS = {"id", "type", "timeout_ms", "retries", "enabled"}


@dataclass(frozen=True)
class Rep:
    """A sales rep: the CRM identities that mean them, how to ring them, their team."""

    owners: tuple[str, ...]
    phones: tuple[str, ...]
    team: str | None
    name: str | None = None


@dataclass(frozen=True)
class ConnectorSettings:
    id: str
    type: str
    options: Mapping[str, Any]
    timeout_ms: int = 1500
    retries: int = 1
    enabled: bool = True


@dataclass(frozen=True)
class CacheSettings:
    positive_ttl_s: float = 600.0
    negative_ttl_s: float = 60.0
    stale_max_age_s: float = 7 * 86400.0
    max_entries: int = 100_000
    call_ttl_s: float = 3600.0
    call_max_entries: int = 20_000


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5
    cooldown_s: float = 30.0


@dataclass(frozen=True)
class SharedStateSettings:
    url: str
    prefix: str = "dialwhom:"
    timeout_ms: int = 100


@dataclass(frozen=True)
class Settings:
    """Validated config. Numbers are E.164 (or ``sip:`` ids) by the time they land here."""

    default_region: str = "IN"
    budget_ms: int = 2000
    #: accepted ``?token=`` values; several while rotating (old and new both work)
    tokens: tuple[str, ...] = ()
    lookup_order: tuple[str, ...] = LOOKUP_SOURCES
    connectors: tuple[ConnectorSettings, ...] = ()
    reps: tuple[Rep, ...] = ()
    teams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fallback: tuple[str, ...] = ()
    lines: Mapping[str, str] = field(default_factory=dict)
    max_numbers: int = 5
    cache: CacheSettings = field(default_factory=CacheSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    log_level: str = "INFO"
    #: ring the agent who last talked to a caller (Passthru) when the CRM has no owner; 0 = off
    last_agent_days: float = 30.0
    #: Redis shared by several instances (per-call plans, last agents); None = memory only
    shared_state: SharedStateSettings | None = None
    #: a number `dialwhom check` looks up to prove the connectors answer
    check_number: str | None = None
    source: str = "<dict>"
    base_dir: Path = field(default_factory=Path.cwd)
    # -- operations (issue 14) --
    #: ``text`` or ``json`` (one JSON object per line)
    log_format: str = "text"
    #: optional secret for /metrics, /readyz and the operator endpoints (``Authorization: Bearer``)
    ops_token: str | None = None
    #: proxies in front that set X-Forwarded-For/-Proto/-Host (werkzeug ProxyFix); 0 = none
    trusted_proxies: int = 0
    #: short hash of the validated config, shown in /readyz and every trace
    version: str = ""

    def __post_init__(self) -> None:
        # Lookups by owner identity and by number, derived once (the settings never change).
        set_ = object.__setattr__  # frozen dataclass
        set_(self, "_by_owner", {o.lower(): r for r in self.reps for o in r.owners})
        by_phone: dict[str, Rep] = {}
        for rep in self.reps:
            for number in rep.phones:
                by_phone.setdefault(number, rep)
        set_(self, "_by_phone", by_phone)
        set_(self, "known_numbers", frozenset(by_phone).union(n for nums in self.teams.values() for n in nums))

    def rep_for(self, identity: str) -> Rep | None:
        """The rep whose `owner` list holds `identity` (emails compared case-insensitively)."""
        return self._by_owner.get(identity.lower())

    def rep_by_phone(self, number: str) -> Rep | None:
        """The rep who answers on `number`, if any."""
        return self._by_phone.get(number)

    def resolve_path(self, value: str) -> Path:
        """A path from config: absolute, or relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


def find_config(explicit: str | os.PathLike | None = None) -> Path:
    """Where the config comes from, by interface.md's search order."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("--config", f"file not found: {path}")
        return path
    env = os.environ.get("DIALWHOM_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError("DIALWHOM_CONFIG", f"file not found: {path}")
        return path
    local = Path("dialwhom.yaml")
    if local.is_file():
        return local
    return EXAMPLE_CONFIG


def load(path: str | os.PathLike | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Find, read and validate the config file."""
    found = find_config(path)
    try:
        raw = yaml.safe_load(found.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {found}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError("<file>", f"{found} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if raw is None:
        raw = {}
    return from_mapping(raw, environ=environ, source=str(found), base_dir=found.resolve().parent)


def from_mapping(
    raw: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    source: str = "<dict>",
    base_dir: Path | None = None,
) -> Settings:
    """Validate a config mapping (from YAML or a test) into `Settings`."""
    if not isinstance(raw, Mapping):
        raise ConfigError("<file>", "the top level must be a mapping of keys to values")
    data = _substitute(raw, os.environ if environ is None else environ, "")
    v = _Validator(data)
    region = v.str("default_region", "IN").upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError("default_region", f"'{region}' is not a region code; use a two-letter code such as IN, US or GB")
    budget = v.int("budget_ms", 2000, 50, BUDGET_CEILING_MS)
    raw_tokens = v.raw("token", [])
    raw_tokens = raw_tokens if isinstance(raw_tokens, list) else [raw_tokens]
    tokens: list[str] = []
    for i, tok in enumerate(raw_tokens):
        key = "token" if len(raw_tokens) == 1 else f"token[{i}]"
        if not isinstance(tok, str):
            raise ConfigError(key, "expected text (a long random secret, best from ${DIALWHOM_TOKEN})")
        if tok.strip() and len(tok.strip()) < 16:
            raise ConfigError(key, "use at least 16 random characters (for example `python -c \"import secrets; print(secrets.token_urlsafe(24))\"`)")
        if tok.strip():
            tokens.append(tok.strip())
    order = tuple(v.list("lookup_order", list(LOOKUP_SOURCES)))
    for i, item in enumerate(order):
        if item not in LOOKUP_SOURCES:
            raise ConfigError(f"lookup_order[{i}]", f"'{item}' is not one of {', '.join(LOOKUP_SOURCES)}")
    if len(set(order)) != len(order):
        raise ConfigError("lookup_order", "each source may appear once")

    def number(key: str, value: Any) -> str:
        if not isinstance(value, (str, int)) or not str(value).strip():
            raise ConfigError(key, "expected a phone number as a string, e.g. \"+919800000001\"")
        return _ringable(key, str(value), region)

    def numbers(key: str, value: Any) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        return tuple(number(f"{key}[{i}]" if isinstance(value, list) else key, x) for i, x in enumerate(items))

    teams: dict[str, tuple[str, ...]] = {}
    for name, body in v.map("teams").items():
        key = f"teams.{name}"
        if body is None:
            body = {}
        if isinstance(body, list):
            raise ConfigError(key, "expected a mapping with 'backup: [numbers]'")
        if not isinstance(body, Mapping):
            raise ConfigError(key, "expected a mapping with 'backup: [numbers]'")
        unknown = set(body) - {"backup", "name"}
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key; a team has 'backup' (and an optional 'name')")
        teams[str(name)] = numbers(f"{key}.backup", body.get("backup") or [])

    reps: list[Rep] = []
    seen_owner: dict[str, str] = {}
    for i, body in enumerate(v.list("reps", [])):
        key = f"reps[{i}]"
        if not isinstance(body, Mapping):
            raise ConfigError(key, "expected a mapping with owner, phone and team")
        unknown = set(body) - {"owner", "phone", "team", "name"}
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key; a rep has owner, phone, team and an optional name")
        owners = body.get("owner")
        owners = owners if isinstance(owners, list) else [owners]
        if not owners or any(not isinstance(o, (str, int)) or not str(o).strip() for o in owners):
            raise ConfigError(f"{key}.owner", "required: the owner's id or email as the CRM reports it (or a list of them)")
        owners = [str(o).strip() for o in owners]
        for o in owners:
            if o.lower() in seen_owner:
                raise ConfigError(f"{key}.owner", f"'{o}' is already used by {seen_owner[o.lower()]}")
            seen_owner[o.lower()] = key
        if body.get("phone") in (None, "", []):
            raise ConfigError(f"{key}.phone", "required: the number to ring for this rep")
        team = body.get("team")
        if team is not None and str(team) not in teams:
            raise ConfigError(f"{key}.team", f"team '{team}' is not defined under 'teams'")
        reps.append(Rep(tuple(owners), numbers(f"{key}.phone", body["phone"]), str(team) if team is not None else None, body.get("name")))

    fallback = numbers("fallback", v.raw("fallback", []) or [])
    lines: dict[str, str] = {}
    for num, team in v.map("lines").items():
        key = f"lines.{num}"
        e164 = number(key, num)
        if str(team) not in teams:
            raise ConfigError(key, f"team '{team}' is not defined under 'teams'")
        lines[e164] = str(team)

    connectors: list[ConnectorSettings] = []
    ids: set[str] = set()
    for i, body in enumerate(v.list("connectors", [])):
        key = f"connectors[{i}]"
        if not isinstance(body, Mapping):
            raise ConfigError(key, "expected a mapping with at least 'id' and 'type'")
        cid = body.get("id")
        if not isinstance(cid, str) or not _ID.match(cid):
            raise ConfigError(f"{key}.id", "required: a short name of lowercase letters, digits, '-' or '_' (used in logs and metrics)")
        if cid in ids:
            raise ConfigError(f"{key}.id", f"'{cid}' is used twice; connector ids must be unique")
        ids.add(cid)
        ctype = body.get("type")
        if not isinstance(ctype, str) or not ctype:
            raise ConfigError(f"{key}.type", "required: the connector type, e.g. directory, http, hubspot")
        cv = _Validator(body, prefix=f"{key}.")
        connectors.append(
            ConnectorSettings(
                id=cid,
                type=ctype,
                options={k: val for k, val in body.items() if k not in FRAMEWORK_CONNECTOR_KEYS},
                timeout_ms=cv.int("timeout_ms", min(1500, budget), 10, BUDGET_CEILING_MS),
                retries=cv.int("retries", 1, 0, 5),
                enabled=cv.bool("enabled", True),
            )
        )

    cache_v = _Validator(v.map("cache"), prefix="cache.")
    cache = CacheSettings(
        positive_ttl_s=cache_v.float("positive_ttl_s", 600, 0, 86400 * 7),
        negative_ttl_s=cache_v.float("negative_ttl_s", 60, 0, 86400),
        stale_max_age_s=cache_v.float("stale_max_age_s", 7 * 86400, 0, 90 * 86400),
        max_entries=cache_v.int("max_entries", 100_000, 10, 10_000_000),
        call_ttl_s=cache_v.float("call_ttl_s", 3600, 60, 86400),
        call_max_entries=cache_v.int("call_max_entries", 20_000, 10, 1_000_000),
    )
    cache_v.no_unknown()
    breaker_v = _Validator(v.map("breaker"), prefix="breaker.")
    breaker = BreakerSettings(
        failures=breaker_v.int("failures", 5, 1, 1000),
        cooldown_s=breaker_v.float("cooldown_s", 30, 0.1, 3600),
    )
    breaker_v.no_unknown()
    shared = None
    shared_raw = v.map("shared_state")
    if shared_raw:
        sv = _Validator(shared_raw, prefix="shared_state.")
        url = sv.str("url", "")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("shared_state.url", "required: a Redis URL such as redis://127.0.0.1:6379/0 (or rediss://, unix://)")
        shared = SharedStateSettings(url, sv.str("prefix", "dialwhom:"), sv.int("timeout_ms", 100, 5, 1000))
        sv.no_unknown()
    log_format = v.str("log_format", "text").lower()
    if log_format not in ("text", "json"):
        raise ConfigError("log_format", f"'{log_format}' is not one of text, json")
    ops_token = v.str("ops_token", "") or None
    if ops_token is not None and len(ops_token) < 16:
        raise ConfigError("ops_token", "use at least 16 random characters (best from ${DIALWHOM_OPS_TOKEN})")
    settings = Settings(
        default_region=region,
        budget_ms=budget,
        tokens=tuple(tokens),
        lookup_order=order,
        connectors=tuple(connectors),
        reps=tuple(reps),
        teams=teams,
        fallback=fallback,
        lines=lines,
        max_numbers=v.int("max_numbers", 5, 1, 20),
        cache=cache,
        breaker=breaker,
        log_level=_log_level(v.str("log_level", "INFO")),
        shared_state=shared,
        last_agent_days=v.float("last_agent_days", 30, 0, 365),
        check_number=_check_number(v.str("check_number", ""), region),
        source=source,
        base_dir=base_dir or Path.cwd(),
        log_format=log_format,
        ops_token=ops_token,
        trusted_proxies=v.int("trusted_proxies", 0, 0, 5),
        version=config_version(data),
    )
    v.no_unknown()
    return settings


def config_version(data: Mapping[str, Any]) -> str:
    """A short hash of the config as validated (after ``${ENV}``): equal configs, equal versions."""
    canonical = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


#: written after a number, it means "ring this as written": a range phonenumbers does not know yet
UNCHECKED_MARK = "!"


def _ringable(key: str, value: str, region: str) -> str:
    """A config number in E.164 (or a ``sip:`` id) that phonenumbers says can ring.

    A number of a possible length but not valid (one digit short or long) would be sent to
    Exotel and never ring: a config error, unless written with a trailing ``!``.
    """
    text = value.strip()
    unchecked = text.endswith(UNCHECKED_MARK)
    if unchecked:
        text = text[:-1].rstrip()
    parsed = parse_config_number(text, region)
    if parsed is None:
        raise ConfigError(key, f"'{value}' is not a phone number (write it in E.164, e.g. +919800000001, or as sip:<id>)")
    if unchecked or parsed.startswith("sip:") or phonenumbers.is_valid_number(phonenumbers.parse(parsed)):
        return parsed
    raise ConfigError(key, f"'{value}' cannot ring: it is not a valid number for its country (a digit short or long?); "
                      f"if it really is in use, write it with a trailing '{UNCHECKED_MARK}' (\"{text}{UNCHECKED_MARK}\") to skip this check")


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log_level", f"'{value}' is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _check_number(value: str, region: str) -> str | None:
    if not value:
        return None
    return _ringable("check_number", value, region)


def _substitute(value: Any, environ: Mapping[str, str], key: str) -> Any:
    """Replace ``${NAME}`` (or ``${NAME:-default}``) in every string with the environment's value."""
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(key or "<file>", f"environment variable {name} is not set (set it, or write ${{{name}:-}} to allow it empty)")
        return _ENV_REF.sub(repl, value)
    if isinstance(value, Mapping):
        return {k: _substitute(v, environ, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, environ, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


class _Validator:
    """Typed reads of one mapping, remembering which keys were used, naming the key on error."""

    def __init__(self, data: Mapping[str, Any], prefix: str = ""):
        self.data = data
        self.prefix = prefix
        self.used: set[str] = set()

    def raw(self, key: str, default: Any) -> Any:
        self.used.add(key)
        value = self.data.get(key, default)
        return default if value is None else value

    def str(self, key: str, default: str) -> str:
        value = self.raw(key, default)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ConfigError(self.prefix + key, f"expected text, got {type(value).__name__}")
        return value.strip()

    def int(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.prefix + key, f"expected a whole number between {lo} and {hi}, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(self.prefix + key, f"{value} is out of range; use {lo} to {hi}")
        return value

    def float(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(self.prefix + key, f"expected a number between {lo} and {hi}, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(self.prefix + key, f"{value} is out of range; use {lo} to {hi}")
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self.prefix + key, f"expected true or false, got {value!r}")
        return value

    def list(self, key: str, default: list) -> list:
        value = self.raw(key, default)
        if not isinstance(value, list):
            raise ConfigError(self.prefix + key, f"expected a list, got {type(value).__name__}")
        return value

    def map(self, key: str) -> Mapping[str, Any]:
        value = self.raw(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(self.prefix + key, f"expected a mapping, got {type(value).__name__}")
        return value

    def no_unknown(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise ConfigError(self.prefix + str(key), "unknown key (check the spelling against the README's config reference)")
