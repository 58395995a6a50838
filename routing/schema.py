"""Declared config: every section of the config file (the top level, `cache`, each rep, each
connector's own keys...) lists its keys once as `Field`s and gets validation, defaults, error
messages naming the key (with "did you mean" and the full list of valid keys), and secret
masking for free. One mechanism for the framework's keys and every connector's.

    >>> schema = (Field("url", str, required=True), Field("api_key", str, secret=True))
    >>> opts = validate_options(schema, {"url": "https://x", "api_key": "s3cr3t-value"}, "connectors[0]")
    >>> opts["api_key"]
    Secret('s3***')
    >>> str(opts["api_key"])
    's3cr3t-value'
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from dialwhom.routing.config_error import ConfigError
from dialwhom.routing.redact import mask_options, mask_secret, remember_secret

__all__ = ["Field", "Secret", "validate_options", "mask_options"]


class Secret(str):
    """A string that never shows itself in `repr`, logs or introspection views."""

    def __repr__(self) -> str:
        return f"Secret({mask_secret(self)!r})"

    def masked(self) -> str:
        return mask_secret(self)


@dataclass(frozen=True)
class Field:
    """One config key: its type, default, bounds, and what it is for (shown in errors)."""

    name: str
    type: type = str
    required: bool = False
    default: Any = None
    secret: bool = False
    help: str = ""
    choices: tuple[Any, ...] | None = None
    #: for numbers: inclusive bounds
    min: float | None = None
    max: float | None = None
    #: for values no plain type describes: ``parse(value, key) -> value``, raising ConfigError
    parse: Callable[[Any, str], Any] | None = None


_TYPE_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true or false", list: "a list", dict: "a mapping"}


def validate_options(
    schema: Iterable[Field], options: Mapping[str, Any], prefix: str, *, also: Iterable[str] = (), what: str = "this connector type",
) -> dict[str, Any]:
    """Check `options` against `schema`; return them with defaults filled and secrets wrapped.

    `prefix` is the section's key (``""`` for the top level); keys in `also` are valid here but
    read by someone else (a connector entry's ``id``, ``type``, ``timeout_ms``...).
    """
    fields = {f.name: f for f in schema}
    valid = set(fields) | set(also)
    for key in options:
        if key not in valid:
            raise ConfigError(_join(prefix, str(key)), unknown_key_message(str(key), valid, what))
    out: dict[str, Any] = {}
    for f in fields.values():
        key = _join(prefix, f.name)
        value = options.get(f.name)
        if f.parse is not None:
            out[f.name] = f.parse(f.default if value is None else value, key)
            continue
        if value is None or value == "":
            if f.required:
                hint = f" (set it from an environment variable: {f.name}: ${{MY_{f.name.upper()}}})" if f.secret else ""
                raise ConfigError(key, f"required{hint}: {f.help}".rstrip(": "))
            out[f.name] = f.default
            continue
        value = _coerce(f, value, key)
        if f.choices is not None and value not in f.choices:
            raise ConfigError(key, f"{value!r} is not one of {', '.join(map(str, f.choices))}")
        if f.min is not None and value < f.min or f.max is not None and value > f.max:
            raise ConfigError(key, f"{value} is out of range; use {f.min} to {f.max}")
        if f.secret:
            value = Secret(value)
            remember_secret(value)  # masked in every outgoing string from now on
        elif isinstance(value, str):
            _remember_url_password(value)
        elif isinstance(value, dict):  # e.g. the http connector's headers: {X-Api-Key: ...}
            for name, item in value.items():
                if _SECRET_NAME.search(str(name)) and isinstance(item, str):
                    remember_secret(item.split()[-1] if item.split() else item)  # 'Bearer <token>'
        out[f.name] = value
    return out


def unknown_key_message(key: str, valid: Iterable[str], what: str) -> str:
    """'unknown key for <what>; did you mean ...? (valid keys: ...)'."""
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key for {what}{hint} (valid keys: {', '.join(valid) or 'none'})"


_SECRET_NAME = re.compile(r"auth|token|secret|password|key|signature", re.I)


def _remember_url_password(value: str) -> None:
    """A password written into a URL option (``http://user:pass@host/``) is a secret too."""
    if "://" in value and "@" in value:
        userinfo = value.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
        if ":" in userinfo:
            remember_secret(userinfo.split(":", 1)[1])


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _coerce(f: Field, value: Any, key: str) -> Any:
    if f.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if f.type is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if f.type is list and isinstance(value, str):
        return [value]
    if isinstance(value, bool) and f.type is not bool or not isinstance(value, f.type):
        shown = "***" if f.secret else repr(value)
        raise ConfigError(key, f"expected {_TYPE_NAMES.get(f.type, f.type.__name__)}, got {shown}")
    return value
