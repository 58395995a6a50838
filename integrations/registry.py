"""Finding connector types (entry-point group ``dialwhom.connectors``) and building them.

Built-ins are registered through the same group as third-party plugins, so both load the same
way. Tests pass an explicit mapping of type names to classes instead of scanning the
environment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Iterable, Mapping

from dialwhom.integrations.base import Connector, ConnectorContext
from dialwhom.routing.schema import validate_options
from dialwhom.routing.config import FRAMEWORK_CONNECTOR_KEYS, ConfigError, Settings

__all__ = ["GROUP", "ConnectorType", "discover", "build_connectors"]

GROUP = "dialwhom.connectors"
log = logging.getLogger("dialwhom.registry")


@dataclass(frozen=True)
class ConnectorType:
    """One entry of the registry: where a type comes from, and its class once loaded."""

    name: str
    value: str
    package: str | None
    version: str | None
    entry_point: EntryPoint | None = None
    cls: type[Connector] | None = None

    def load(self) -> type[Connector]:
        if self.cls is not None:
            return self.cls
        assert self.entry_point is not None
        cls = self.entry_point.load()
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise TypeError(f"{self.value} is not a dialwhom Connector subclass")
        return cls


def discover() -> dict[str, list[ConnectorType]]:
    """Every connector type installed, by name (a list, so duplicates can be reported)."""
    found: dict[str, list[ConnectorType]] = {}
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        found.setdefault(ep.name, []).append(
            ConnectorType(
                name=ep.name,
                value=ep.value,
                package=dist.metadata["Name"] if dist else None,
                version=dist.version if dist else None,
                entry_point=ep,
            )
        )
    return found


def _resolve(type_name: str, key: str, registry: Mapping[str, list[ConnectorType]]) -> type[Connector]:
    candidates = registry.get(type_name) or []
    if not candidates:
        known = ", ".join(sorted(registry)) or "none installed"
        raise ConfigError(key, f"unknown connector type '{type_name}' (installed: {known}); install the plugin package that provides it")
    if len(candidates) > 1:
        where = ", ".join(f"{c.value} from {c.package or '?'}" for c in candidates)
        raise ConfigError(key, f"connector type '{type_name}' is registered more than once ({where}); uninstall one")
    try:
        return candidates[0].load()
    except Exception as exc:  # a plugin's import failure must name the plugin, not crash oddly
        raise ConfigError(key, f"connector type '{type_name}' ({candidates[0].value}) failed to load: {type(exc).__name__}: {exc}") from None


def registry_from_classes(classes: Iterable[type[Connector]]) -> dict[str, list[ConnectorType]]:
    """A registry from explicit classes (tests, embedding)."""
    reg: dict[str, list[ConnectorType]] = {}
    for cls in classes:
        reg.setdefault(cls.type_name, []).append(
            ConnectorType(cls.type_name, f"{cls.__module__}:{cls.__qualname__}", None, None, cls=cls)
        )
    return reg


def build_connectors(
    settings: Settings,
    registry: Mapping[str, list[ConnectorType]] | None = None,
    *,
    redis: Any = None,
    data_changed: Callable[[str], None] | None = None,
) -> list[Connector]:
    """One connector instance per enabled config entry, in config (priority) order.

    `redis`: the shared-state client handed to every connector; `data_changed(connector_id)`:
    what a connector's `context.data_changed()` calls (the runtime drops its cached answers).
    """
    registry = discover() if registry is None else registry
    used = {c.type for c in settings.connectors if c.enabled}
    for name, candidates in registry.items():
        if name in used:
            continue
        if len(candidates) > 1:
            log.warning("connector type %r is registered %d times; unused, so ignored", name, len(candidates))
            continue
        try:  # a broken plugin that config does not use must not stop startup: say so, skip it
            candidates[0].load()
        except Exception as exc:
            log.warning("connector type %r (%s from %s) fails to load and is skipped: %s: %s",
                        name, candidates[0].value, candidates[0].package or "?", type(exc).__name__, exc)
    built: list[Connector] = []
    for i, cs in enumerate(settings.connectors):
        if not cs.enabled:
            continue
        key = f"connectors[{i}]"
        cls = _resolve(cs.type, f"{key}.type", registry)
        options = validate_options(cls.config_schema, cs.options, key, also=FRAMEWORK_CONNECTOR_KEYS)
        context = ConnectorContext(
            id=cs.id,
            region=settings.default_region,
            timeout_s=cs.timeout_ms / 1000.0,
            retries=cs.retries,
            base_dir=settings.base_dir,
            redis=redis,
            key_prefix=settings.shared_state.prefix if settings.shared_state else "dialwhom:",
            data_changed=(lambda cid=cs.id: data_changed(cid)) if data_changed else ConnectorContext.data_changed,
        )
        try:
            built.append(cls(options, context))
        except ConfigError as exc:
            if exc.key.startswith("connectors["):
                raise
            raise ConfigError(f"{key}.{exc.key}", exc.message) from None
    return built
