"""The share group's delivery-count limit, learnt when a route starts.

Kafka delivers a record of a share group at most ``share.delivery.count.limit`` times (the group
config, Kafka 4.3+; else the broker's ``group.share.delivery.count.limit``, default 5): a record
RELEASEd on that delivery, or whose lock runs out on it, is archived, never delivered again.  A
route whose ``max_attempts`` is above the limit would release such a record for a retry that
never comes, and its dead-letter copy would never be made.  So a route reads the limit when it
starts (``read_delivery_count_limit``, through ``ShareAdmin.delivery_count_limit``) and its
outcome policy gives a record up on delivery ``min(max_attempts, limit)``
(``OutcomePolicy.delivery_count_limit``).

Reading it needs DESCRIBE_CONFIGS on the group (and, before Kafka 4.3, on the cluster).  When the
read fails the route logs one WARNING and goes on with ``max_attempts`` alone, as before.  The
limit is read once: a change of the group config applies from the route's next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aioshare.admin import ShareAdmin
from aioshare.runtime.route import Route

__all__ = ["DeliveryLimitReader", "learn_delivery_count_limit", "read_delivery_count_limit"]

log = logging.getLogger(__name__)

# (bootstrap servers, group id, the route's consumer options) -> the group's limit; raises when
# it cannot be read.
DeliveryLimitReader = Callable[[str | tuple[str, ...], str, Mapping[str, Any]], Awaitable[int]]

# The consumer options that also say how to reach the cluster as an admin.
_ADMIN_OPTIONS = ("client_id", "request_timeout", "ssl", "sasl")
_DEFAULT_TIMEOUT = 30.0  # ShareConsumer's request_timeout


async def read_delivery_count_limit(
    bootstrap_servers: str | tuple[str, ...], group_id: str, consumer_options: Mapping[str, Any]
) -> int:
    """The group's delivery-count limit, read with a ShareAdmin that connects as the route's
    consumers do; the whole read (bootstrap included) is bounded by their ``request_timeout``."""
    options = {name: consumer_options[name] for name in _ADMIN_OPTIONS if name in consumer_options}
    timeout = float(options.get("request_timeout", _DEFAULT_TIMEOUT))
    servers = bootstrap_servers if isinstance(bootstrap_servers, str) else ",".join(bootstrap_servers)
    async with asyncio.timeout(timeout):
        async with ShareAdmin(servers, **options) as admin:
            return await admin.delivery_count_limit(group_id)


async def learn_delivery_count_limit(route: Route, read: Callable[[], Awaitable[int]]) -> int | None:
    """The limit ``read()`` returns for ``route``'s group, or None when it cannot be read (one
    WARNING); a WARNING too when ``route.max_attempts`` is above it."""
    try:
        limit = await read()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"not a delivery-count limit: {limit!r}")
    except Exception as exc:
        log.warning(
            "route %r: could not read the delivery-count limit of share group %r (%s); going on with "
            "max_attempts=%s alone: a record released on the group's last delivery is archived by the "
            "broker without a dead-letter copy",
            route.name,
            route.group_id,
            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            route.max_attempts,
        )
        return None
    if route.max_attempts is not None and route.max_attempts > limit:
        given_up = (
            f"dead-lettered to {route.dead_letter_topic!r}"
            if route.dead_letter_topic is not None
            else "rejected"
        )
        log.warning(
            "route %r: max_attempts=%d, but share group %r has a delivery-count limit "
            "(share.delivery.count.limit) of %d: Kafka never delivers a record more than that, so a "
            "record still failing on delivery %d is %s then instead of being retried",
            route.name,
            route.max_attempts,
            route.group_id,
            limit,
            limit,
            given_up,
        )
    else:
        log.debug("route %r: share group %r's delivery-count limit is %d", route.name, route.group_id, limit)
    return limit
