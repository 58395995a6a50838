"""Reloading the config into a running service without ever serving a half-built one.

A reload builds a complete new `Runtime` beside the one serving (every key validated, every
connector built), then swaps it in with one assignment: a request sees the old config or the
new one, never a mix. A bad config is refused (`ConfigError` names the key) and the old one
keeps serving. What the change does not touch is carried over: connectors whose settings are
unchanged (their HTTP pools, tokens, CSV index), their cached answers and breakers, the
per-call plans, the last agents and the metrics. A changed or removed connector's cached
answers are dropped.

Under gunicorn the master validates on SIGHUP and forwards the signal to its workers, which
reload in-process (`dialwhom.serve`); the dev server reloads itself on SIGHUP.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping

from dialwhom.integrations.registry import ConnectorType, build_connectors
from dialwhom.integrations.rundir import RunDir
from dialwhom.integrations.runtime import Runtime, connectors_for, load_settings, make_shared
from dialwhom.routing.config import ConfigError, ConnectorSettings, Settings
from dialwhom.routing.service import RoutingService

log = logging.getLogger("dialwhom.reload")

#: the Flask app's extensions key holding the serving Runtime (one dict assignment swaps it)
KEY = "dialwhom"


def validate(config: Any, registry: Mapping[str, list[ConnectorType]] | None = None) -> Settings:
    """Load and fully check a config (connectors built, then closed); raises ConfigError."""
    settings = load_settings(config)
    for connector in build_connectors(settings, registry):
        connector.close()
    return settings


def _identity(settings: Settings, cs: ConnectorSettings) -> str:
    """Everything a connector is built from: equal identities, interchangeable connectors."""
    return json.dumps([asdict(cs), settings.default_region, str(settings.base_dir)], sort_keys=True, default=str)


def rebuild(old: Runtime, config: Any, registry: Mapping[str, list[ConnectorType]] | None = None) -> tuple[Runtime, set[str]]:
    """A new Runtime for `config`, reusing what the change leaves alone; (runtime, changed ids).

    Raises ConfigError (and builds nothing that stays) when the config is bad.
    """
    settings = load_settings(config)
    shared = old.service.shared if settings.shared_state == old.settings.shared_state else make_shared(settings)
    fresh, serve = connectors_for(settings, registry, shared)  # validates every connector, changed or not
    old_by_identity = {_identity(old.settings, cs): c for cs, c in zip(old.specs, old.connectors)}
    specs = tuple(cs for cs in settings.connectors if cs.enabled)
    connectors, changed = [], set()
    for cs, built in zip(specs, fresh):
        previous = old_by_identity.get(_identity(settings, cs))
        if previous is not None:
            built.close()
            connectors.append(previous)
        else:
            connectors.append(built)
            changed.add(cs.id)
    changed |= {c.id for c in old.connectors if c not in connectors}  # removed ones
    service = serve(RoutingService(settings, connectors, metrics=old.service.metrics, shared=shared, clock=old.service.clock))
    _carry_over(old.service, service, changed)
    return Runtime(settings, connectors, service, specs), changed


def _carry_over(old: RoutingService, new: RoutingService, changed: set[str]) -> None:
    """Keep the old service's state that is still true under the new settings."""
    if new.settings.cache == old.settings.cache:
        new.cache = old.cache
        for cid in changed:
            new.cache.forget_connector(cid)
        new.calls = old.calls  # a call in progress keeps the plan it was first given
    if new.settings.last_agent_days == old.settings.last_agent_days:
        new.last_agents = old.last_agents
    if new.settings.breaker == old.settings.breaker:
        for cid, breaker in old.breakers.items():
            if cid in new.breakers and cid not in changed:
                new.breakers[cid] = breaker


def retire(old: Runtime, new: Runtime, changed: set[str]) -> None:
    """Close what only the old runtime used, once its in-flight requests are done."""
    for cid in changed:  # an old request may have cached an answer after the swap
        new.service.cache.forget_connector(cid)
    old.service.close_pool()
    for c in old.connectors:
        if c not in new.connectors:
            c.close()


class Reloader:
    """Swaps the serving Runtime in `extensions[KEY]`; remembers how the last reload went."""

    def __init__(self, extensions: MutableMapping[str, Any], source: Any, *,
                 registry: Mapping[str, list[ConnectorType]] | None = None,
                 run_dir: RunDir | None = None, clock: Callable[[], float] = time.time,
                 retire_after_s: float | None = None):
        self.extensions = extensions
        self.source = source
        self.registry = registry
        self.run_dir = run_dir
        self.clock = clock
        self.retire_after_s = retire_after_s
        self.last: dict[str, Any] | None = None
        self._lock = threading.Lock()

    @property
    def runtime(self) -> Runtime:
        return self.extensions[KEY]

    def reload(self, config: Any = None) -> dict[str, Any]:
        """Validate and apply `config` (default: the file this service was started with)."""
        with self._lock:
            old = self.runtime
            try:
                new, changed = rebuild(old, self.source if config is None else config, self.registry)
            except ConfigError as exc:
                log.error("reload refused: %s; still serving config %s", exc, old.settings.version)
                self.last = {"ok": False, "at": self.clock(), "error": str(exc), "key": exc.key, "serving": old.settings.version}
                return self.last
            except Exception as exc:  # a connector's constructor failing oddly must not take us down
                log.error("reload refused: %s: %s; still serving config %s", type(exc).__name__, exc, old.settings.version)
                self.last = {"ok": False, "at": self.clock(), "error": f"{type(exc).__name__}: {exc}", "serving": old.settings.version}
                return self.last
            self.extensions[KEY] = new  # the swap: one assignment
            if config is not None and not isinstance(config, Mapping):
                self.source = config
            delay = self.retire_after_s
            if delay is None:
                delay = max(old.settings.budget_ms, new.settings.budget_ms) / 1000.0 + 1.0
            if delay <= 0:
                retire(old, new, changed)
            else:
                t = threading.Timer(delay, retire, (old, new, changed))
                t.daemon = True
                t.start()
            log.info("reloaded config %s -> %s (%s); connectors rebuilt: %s", old.settings.version, new.settings.version,
                     new.settings.source, ", ".join(sorted(changed)) or "none")
            self.last = {"ok": True, "at": self.clock(), "version": new.settings.version, "from": old.settings.version,
                         "connectors_rebuilt": sorted(changed)}
            return self.last

    def status(self) -> dict[str, Any] | None:
        """The newest verdict: this process's last reload, or the master's refusal (run dir)."""
        master = self.run_dir.read_status() if self.run_dir else None
        candidates = [s for s in (self.last, master) if s]
        return max(candidates, key=lambda s: s.get("at", 0)) if candidates else None


def source_of(config: Any, settings: Settings) -> Any:
    """What a reload re-reads: the path given, else the file the settings came from."""
    if config is None or isinstance(config, (str, os.PathLike)):
        return config  # None: the search order again ($DIALWHOM_CONFIG, ./dialwhom.yaml, ...)
    if isinstance(config, Settings):
        return Path(config.source) if Path(config.source).is_file() else config
    return config  # a mapping (tests): reloaded only with an explicit new config


__all__ = ["Reloader", "validate", "rebuild", "retire", "source_of"]
