"""Kafka API handlers, one module per API family.

Each module has `register(registry, cluster)`, which registers its handlers with the
`ApiRegistry` (API key, handler, supported version range) and may return a `Service` whose
`start()`/`close()` the embedded broker calls around serving (for modules that own timers or
other tasks). A new family of APIs (the share-group APIs) plugs in by adding its module to
`DEFAULT_MODULES`; ApiVersions then advertises it automatically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aioshare.broker.apis import (
    api_versions,
    coordinator,
    fetch,
    list_offsets,
    metadata,
    produce,
    sasl,
    share_acknowledge,
    share_fetch,
    share_groups_api,
    topics_admin,
)
from aioshare.broker.cluster import Cluster
from aioshare.broker.server import ApiRegistry


class Service(Protocol):
    """Something a handler module runs in the background (timers, purgatories)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class ApiModule(Protocol):
    def register(self, registry: ApiRegistry, cluster: Cluster) -> Service | None: ...


DEFAULT_MODULES: tuple[ApiModule, ...] = (
    api_versions,
    metadata,
    topics_admin,
    produce,
    fetch,
    list_offsets,
    coordinator,
    share_groups_api,
    share_fetch,
    share_acknowledge,
    sasl,
)


def install(
    registry: ApiRegistry, cluster: Cluster, modules: Sequence[ApiModule] = DEFAULT_MODULES
) -> list[Service]:
    """Register every module's handlers; returns the services to start and close."""
    services: list[Service] = []
    for module in modules:
        service = module.register(registry, cluster)
        if service is not None:
            services.append(service)
    return services
