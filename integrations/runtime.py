"""Assembling the service from config: settings, connectors, routing service.

Used by the web app, the command line and the tests, so all three build the service the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dialwhom.integrations.base import Connector
from dialwhom.integrations.registry import ConnectorType, build_connectors
from dialwhom.routing import config as config_mod
from dialwhom.routing.config import ConnectorSettings, Settings
from dialwhom.routing.ports import Clock
from dialwhom.routing.redact import safe_url
from dialwhom.routing.service import RoutingService
from dialwhom.routing.shared import RedisState

log = logging.getLogger("dialwhom")


@dataclass
class Runtime:
    settings: Settings
    connectors: list[Connector]
    service: RoutingService
    #: the config entry each connector was built from (same order): what a reload compares
    specs: tuple[ConnectorSettings, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.specs:
            self.specs = tuple(cs for cs in self.settings.connectors if cs.enabled)

    def close(self) -> None:
        self.service.close()


def load_settings(config: Settings | Mapping[str, Any] | str | os.PathLike | None = None) -> Settings:
    """Settings from an object, a mapping (tests), a path, or the search order (None)."""
    if isinstance(config, Settings):
        return config
    if isinstance(config, Mapping):
        return config_mod.from_mapping(config, base_dir=Path.cwd())
    return config_mod.load(config)


def build_runtime(
    config: Settings | Mapping[str, Any] | str | os.PathLike | None = None,
    *,
    registry: Mapping[str, list[ConnectorType]] | None = None,
    clock: Clock | None = None,
) -> Runtime:
    """Validate config and build every connector; raises ConfigError naming the key."""
    settings = load_settings(config)
    shared = make_shared(settings)
    connectors, serve = connectors_for(settings, registry, shared)
    if not settings.fallback:
        log.warning("config has no 'fallback' numbers: an unknown caller on a line without a team gets no answer")
    return Runtime(settings, connectors, serve(RoutingService(settings, connectors, shared=shared, clock=clock)))


def connectors_for(settings: Settings, registry: Mapping[str, list[ConnectorType]] | None, shared: "RedisState | None"):
    """(connectors, serve): `serve(service)` names the service whose cache a connector's
    `context.data_changed()` clears (connectors only call back once serving)."""
    service: list[RoutingService] = []

    def data_changed(connector_id: str) -> None:
        if service:
            dropped = service[0].cache.forget_connector(connector_id)
            log.info("connector=%s data changed: %d cached answers dropped", connector_id, dropped)

    def serve(svc: RoutingService) -> RoutingService:
        service.append(svc)
        return svc

    return build_connectors(settings, registry, redis=shared.client if shared else None, data_changed=data_changed), serve


def make_shared(settings: Settings) -> "RedisState | None":
    """The Redis shared by several instances, when `shared_state` is configured."""
    if settings.shared_state is None:
        return None
    shared = RedisState(
        settings.shared_state.url,
        prefix=settings.shared_state.prefix,
        timeout_s=settings.shared_state.timeout_ms / 1000.0,
        call_ttl_s=settings.cache.call_ttl_s,
        agent_ttl_s=max(1.0, settings.last_agent_days * 86400.0),
    )
    if not shared.ping():
        log.warning("shared_state: Redis at %s does not answer; each instance answers from its own memory until it does", safe_url(settings.shared_state.url))
    return shared
