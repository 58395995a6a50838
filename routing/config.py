"""The service's config: found, read, `${ENV}`-substituted and validated once, at startup.

Search order (README, "Configuration"): an explicit path, ``$DIALWHOM_CONFIG``, ``./dialwhom.yaml``, then
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

from dialwhom.routing import availability
from dialwhom.routing.bulkhead import DEFAULT_MAX_IN_FLIGHT
from dialwhom.routing.config_error import ConfigError
from dialwhom.routing.phones import parse_config_number
from dialwhom.routing.redact import remember_secret
from dialwhom.routing.schema import Field, Secret, validate_options

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
#: input bounds: a config is small; anything past these is a mistake or an attack (issue 12)
MAX_CONFIG_BYTES = 1024 * 1024  # the file as read
MAX_CONFIG_VALUES = 100_000  # keys, items and scalars once YAML aliases are expanded
MAX_CONFIG_DEPTH = 32  # nesting of mappings and lists
MAX_EXPANDED_CHARS = 4 * 1024 * 1024  # all strings, after ${ENV} substitution
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class Rep:
    """A sales rep: the CRM identities that mean them, how to ring them, their team."""

    owners: tuple[str, ...]
    phones: tuple[str, ...]
    team: str | None
    name: str | None = None
    #: availability (routing/availability.py): a schedule name, an IANA zone, leave
    hours: str | None = None
    timezone: str | None = None
    away: tuple = ()


@dataclass(frozen=True)
class ConnectorSettings:
    id: str
    type: str
    options: Mapping[str, Any]
    timeout_ms: int = 1500
    retries: int = 1
    enabled: bool = True
    #: lookups in flight at once (the bulkhead); more callers are answered without this connector
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT


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
    #: the operator console's sign-in secret (/console, docs/console.md); None = no console
    console_token: str | None = None
    #: availability (routing/availability.py): zone, named weekly hours, closed dates, busy expiry
    timezone: str = "UTC"
    schedules: Mapping[str, Any] = field(default_factory=dict)
    holidays: frozenset = frozenset()
    busy_ttl_s: float = 1800.0
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
    """Where the config comes from, by the documented search order."""
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
        size = found.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError("<file>", f"{found} is {size} bytes, over the {MAX_CONFIG_BYTES}-byte limit (MAX_CONFIG_BYTES); keep data in connector files")
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


def _region(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected text (a region code such as IN), got {type(value).__name__}")
    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(key, f"'{value}' is not a region code; use a two-letter code such as IN, US or GB")
    return region


def _tokens(value: Any, key: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    tokens: list[str] = []
    for i, tok in enumerate(items):
        k = key if len(items) == 1 else f"{key}[{i}]"
        if not isinstance(tok, str):
            raise ConfigError(k, "expected text (a long random secret, best from ${DIALWHOM_TOKEN})")
        if tok.strip() and len(tok.strip()) < 16:
            raise ConfigError(k, "use at least 16 random characters (for example `python -c \"import secrets; print(secrets.token_urlsafe(24))\"`)")
        if tok.strip():
            tokens.append(tok.strip())
            remember_secret(tok.strip())  # masked wherever it appears in what leaves the process
    return tuple(tokens)


def _console_token(value: Any, key: str) -> Secret | None:
    """One secret of 16+ characters, or None (no console)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ConfigError(key, "expected text (a long random secret, best from ${DIALWHOM_CONSOLE_TOKEN})")
    return Secret(_tokens(value, key)[0])


def _lookup_order(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list, got {type(value).__name__}")
    for i, item in enumerate(value):
        if item not in LOOKUP_SOURCES:
            raise ConfigError(f"{key}[{i}]", f"'{item}' is not one of {', '.join(LOOKUP_SOURCES)}")
    if len(set(value)) != len(value):
        raise ConfigError(key, "each source may appear once")
    return tuple(value)


def _log_format(value: Any, key: str = "log_format") -> str:
    fmt = str(value).lower()
    if fmt not in ("text", "json"):
        raise ConfigError(key, f"'{value}' is not one of text, json")
    return fmt


def _ops_token(value: Any, key: str = "ops_token") -> str | None:
    token = "" if value is None else str(value).strip()
    if token and len(token) < 16:
        raise ConfigError(key, "use at least 16 random characters (best from ${DIALWHOM_OPS_TOKEN})")
    return token or None


def _log_level(value: Any, key: str = "log_level") -> str:
    level = str(value).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(key, f"'{value}' is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
    return value


def _list(value: Any, key: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list, got {type(value).__name__}")
    return value


def _raw(value: Any, key: str) -> Any:
    return value


# -- the config file's keys, declared once (README "Configuration" documents each) -------------
# Structured sections (connectors, reps, teams, lines, cache, breaker, shared_state) are read
# as raw values here and checked against their own declarations below.
TOP_LEVEL: tuple[Field, ...] = (
    Field("default_region", default="IN", parse=_region, help="how national numbers are read (a region code)"),
    Field("budget_ms", int, default=2000, min=50, max=BUDGET_CEILING_MS, help="the most one answer may take"),
    Field("token", parse=lambda v, k: _tokens(v or [], k), help="shared secret(s) for /exotel/*"),
    Field("lookup_order", parse=lambda v, k: _lookup_order(list(LOOKUP_SOURCES) if v is None else v, k)),
    Field("connectors", parse=lambda v, k: _list(v, k)),
    Field("reps", parse=lambda v, k: _list(v, k)),
    Field("teams", parse=lambda v, k: _mapping(v, k)),
    Field("fallback", parse=_raw),
    Field("lines", parse=lambda v, k: _mapping(v, k)),
    Field("max_numbers", int, default=5, min=1, max=20),
    Field("cache", parse=lambda v, k: _mapping(v, k)),
    Field("breaker", parse=lambda v, k: _mapping(v, k)),
    Field("log_level", default="INFO", parse=_log_level),
    Field("shared_state", parse=lambda v, k: _mapping(v, k)),
    Field("last_agent_days", float, default=30.0, min=0, max=365),
    Field("check_number", str, default=""),
    Field("console_token", parse=lambda v, k: _console_token(v, k), secret=True, help="the operator console's sign-in secret (/console); unset: no console"),
    Field("log_format", default="text", parse=_log_format, help="text, or json (one object per line)"),
    Field("ops_token", parse=_ops_token, help="secret for /metrics, /readyz and /ops/*"),
    Field("trusted_proxies", int, default=0, min=0, max=5, help="proxies that set X-Forwarded-*"),
    *availability.TOP,
)
CACHE: tuple[Field, ...] = (
    Field("positive_ttl_s", float, default=600.0, min=0, max=86400 * 7),
    Field("negative_ttl_s", float, default=60.0, min=0, max=86400),
    Field("stale_max_age_s", float, default=7 * 86400.0, min=0, max=90 * 86400),
    Field("max_entries", int, default=100_000, min=10, max=10_000_000),
    Field("call_ttl_s", float, default=3600.0, min=60, max=86400),
    Field("call_max_entries", int, default=20_000, min=10, max=1_000_000),
)
BREAKER: tuple[Field, ...] = (
    Field("failures", int, default=5, min=1, max=1000),
    Field("cooldown_s", float, default=30.0, min=0.1, max=3600),
)
SHARED_STATE: tuple[Field, ...] = (
    Field("url", str, required=True, secret=True, help="a Redis URL such as redis://127.0.0.1:6379/0 (or rediss://, unix://)"),
    Field("prefix", str, default="dialwhom:"),
    Field("timeout_ms", int, default=100, min=5, max=1000),
)
TEAM: tuple[Field, ...] = (
    Field("backup", parse=lambda v, k: [] if v is None else v, help="numbers rung after the owner, in order"),
    Field("name", str),
    *availability.TEAM,
)
REP: tuple[Field, ...] = (
    Field("owner", parse=_raw, help="the owner's id or email as the CRM reports it (or a list of them)"),
    Field("phone", parse=_raw, help="the number to ring for this rep"),
    Field("team", parse=_raw),
    Field("name", str),
    *availability.REP,
)
#: the keys of a connector entry the framework reads; the rest are the connector's own
CONNECTOR: tuple[Field, ...] = (
    Field("id", parse=_raw),
    Field("type", parse=_raw),
    Field("timeout_ms", int, min=10, max=BUDGET_CEILING_MS),
    Field("retries", int, default=1, min=0, max=5),
    Field("enabled", bool, default=True),
    Field("max_in_flight", int, default=DEFAULT_MAX_IN_FLIGHT, min=1, max=256),
)
FRAMEWORK_CONNECTOR_KEYS = frozenset(f.name for f in CONNECTOR)


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
    data = _substitute(raw, os.environ if environ is None else environ, "", _Budget())
    top = validate_options(TOP_LEVEL, data, "", what="the config file")
    region: str = top["default_region"]
    budget: int = top["budget_ms"]

    def number(key: str, value: Any) -> str:
        if not isinstance(value, (str, int)) or not str(value).strip():
            raise ConfigError(key, "expected a phone number as a string, e.g. \"+919800000001\"")
        return _ringable(key, str(value), region)

    def numbers(key: str, value: Any) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        return tuple(number(f"{key}[{i}]" if isinstance(value, list) else key, x) for i, x in enumerate(items))

    teams: dict[str, tuple[str, ...]] = {}
    for name, body in top["teams"].items():
        key = f"teams.{name}"
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            raise ConfigError(key, "expected a mapping with 'backup: [numbers]'")
        team = validate_options(TEAM, body, key, what="a team")
        teams[str(name)] = numbers(f"{key}.backup", team["backup"])

    reps: list[Rep] = []
    seen_owner: dict[str, str] = {}
    for i, body in enumerate(top["reps"]):
        key = f"reps[{i}]"
        if not isinstance(body, Mapping):
            raise ConfigError(key, "expected a mapping with owner, phone and team")
        rep = validate_options(REP, body, key, what="a rep")
        owners = rep["owner"]
        owners = owners if isinstance(owners, list) else [owners]
        if not owners or any(not isinstance(o, (str, int)) or not str(o).strip() for o in owners):
            raise ConfigError(f"{key}.owner", "required: the owner's id or email as the CRM reports it (or a list of them)")
        owners = [str(o).strip() for o in owners]
        for o in owners:
            if o.lower() in seen_owner:
                raise ConfigError(f"{key}.owner", f"'{o}' is already used by {seen_owner[o.lower()]}")
            seen_owner[o.lower()] = key
        if rep["phone"] in (None, "", []):
            raise ConfigError(f"{key}.phone", "required: the number to ring for this rep")
        team = rep["team"]
        if team is not None and str(team) not in teams:
            raise ConfigError(f"{key}.team", f"team '{team}' is not defined under 'teams'")
        reps.append(Rep(tuple(owners), numbers(f"{key}.phone", rep["phone"]), str(team) if team is not None else None, rep["name"]))

    fallback = numbers("fallback", top["fallback"] or [])
    lines: dict[str, str] = {}
    for num, team in top["lines"].items():
        key = f"lines.{num}"
        e164 = number(key, num)
        if str(team) not in teams:
            raise ConfigError(key, f"team '{team}' is not defined under 'teams'")
        lines[e164] = str(team)

    connectors: list[ConnectorSettings] = []
    ids: set[str] = set()
    for i, body in enumerate(top["connectors"]):
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
        framework = {k: v for k, v in body.items() if k in FRAMEWORK_CONNECTOR_KEYS}
        own = validate_options(CONNECTOR, framework, key)
        connectors.append(
            ConnectorSettings(
                id=cid,
                type=ctype,
                # the connector's own keys are checked against its schema when it is built
                options={k: val for k, val in body.items() if k not in FRAMEWORK_CONNECTOR_KEYS},
                timeout_ms=min(1500, budget) if own["timeout_ms"] is None else own["timeout_ms"],
                retries=own["retries"],
                enabled=own["enabled"],
                max_in_flight=own["max_in_flight"],
            )
        )

    cache = CacheSettings(**validate_options(CACHE, top["cache"], "cache", what="cache"))
    breaker = BreakerSettings(**validate_options(BREAKER, top["breaker"], "breaker", what="breaker"))
    shared = None
    if top["shared_state"]:
        sv = validate_options(SHARED_STATE, top["shared_state"], "shared_state", what="shared_state")
        url = str(sv["url"])
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("shared_state.url", "required: a Redis URL such as redis://127.0.0.1:6379/0 (or rediss://, unix://)")
        shared = SharedStateSettings(url, sv["prefix"], sv["timeout_ms"])
    avail, reps, teams = availability.parse(top, reps, teams)
    return Settings(
        **avail,
        default_region=region,
        budget_ms=budget,
        tokens=top["token"],
        lookup_order=top["lookup_order"],
        connectors=tuple(connectors),
        reps=tuple(reps),
        teams=teams,
        fallback=fallback,
        lines=lines,
        max_numbers=top["max_numbers"],
        cache=cache,
        breaker=breaker,
        log_level=top["log_level"],
        shared_state=shared,
        last_agent_days=top["last_agent_days"],
        check_number=_check_number(top["check_number"] or "", region),
        console_token=top["console_token"],
        source=source,
        base_dir=base_dir or Path.cwd(),
        log_format=top["log_format"],
        ops_token=top["ops_token"],
        trusted_proxies=top["trusted_proxies"],
        version=config_version(data),
    )


def _check_number(value: str, region: str) -> str | None:
    if not value:
        return None
    return _ringable("check_number", value, region)


def config_version(data: Mapping[str, Any]) -> str:
    """A short hash of the config as validated (after ``${ENV}``): equal configs, equal versions."""
    canonical = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    # letters only: a run of digits in a log line or header is masked as if it were a number
    return hashlib.sha256(canonical.encode()).hexdigest()[:10].translate(_HEX_TO_LETTERS)


_HEX_TO_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijkmnpqr")


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


class _Budget:
    """What one config may expand to; `_substitute` spends it and stops at the first limit."""

    __slots__ = ("values", "chars")

    def __init__(self):
        self.values = 0
        self.chars = 0

    def spend(self, key: str, depth: int, chars: int = 0) -> None:
        self.values += 1
        self.chars += chars
        where = key or "<file>"
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(where, f"nested deeper than {MAX_CONFIG_DEPTH} levels (MAX_CONFIG_DEPTH); a recursive YAML alias?")
        if self.values > MAX_CONFIG_VALUES:
            raise ConfigError(where, f"more than {MAX_CONFIG_VALUES} values once YAML aliases are expanded (MAX_CONFIG_VALUES); "
                                     "an alias bomb, or data that belongs in a connector's file")
        if self.chars > MAX_EXPANDED_CHARS:
            raise ConfigError(where, f"more than {MAX_EXPANDED_CHARS} characters of text after ${{ENV}} substitution (MAX_EXPANDED_CHARS)")


def _substitute(value: Any, environ: Mapping[str, str], key: str, budget: _Budget, depth: int = 0) -> Any:
    """Replace ``${NAME}`` (or ``${NAME:-default}``) in every string with the environment's
    value; counts what it builds against `budget`, so aliases cannot blow it up."""
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(key or "<file>", f"environment variable {name} is not set (set it, or write ${{{name}:-}} to allow it empty)")
        text = _ENV_REF.sub(repl, value) if "${" in value else value
        budget.spend(key, depth, len(text))
        return text
    budget.spend(key, depth)
    if isinstance(value, Mapping):
        return {k: _substitute(v, environ, f"{key}.{k}" if key else str(k), budget, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, environ, f"{key}[{i}]", budget, depth + 1) for i, v in enumerate(value)]
    return value
