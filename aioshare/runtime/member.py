"""A route's member: one ShareConsumer of its group, sized from the route.

A route runs ``consumers`` members; their consumers together hold at most
``(concurrency + prefetch) * records_per_job`` records (``max_in_flight``, split evenly), and
report lock expiries and acknowledgement results to the route's callbacks.  A member also
answers for its consumer's group membership (``member_epoch``, ``last_heartbeat_at``,
``heartbeat_interval``, ``heartbeat_failures``, ``failure``): what the health endpoints read;
and ``failed`` completes once its consumer fails, so that a fetch loop waiting for a free
handler slot learns of it at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aioshare.runtime.consumer import ConsumerFactory, ConsumerLike, ConsumerSpec
from aioshare.runtime.route import Route
from aioshare.share.ack_tracker import AckResultCallback
from aioshare.share.consumer import LockExpiredCallback

__all__ = ["Member", "max_in_flight_per_member"]

log = logging.getLogger(__name__)


def max_in_flight_per_member(route: Route) -> int:
    """Each member's share of what the route's handlers can take at once, and of the jobs
    fetched ahead for them (``prefetch``)."""
    total = (route.concurrency + route.prefetch_jobs) * route.jobs.records_per_job
    return max(1, math.ceil(total / route.consumers))


class Member:
    """One ShareConsumer of a route."""

    def __init__(
        self,
        route: Route,
        index: int,
        *,
        factory: ConsumerFactory,
        bootstrap_servers: str | tuple[str, ...],
        options: Mapping[str, Any],
        on_lock_expired: LockExpiredCallback,
        on_ack_result: AckResultCallback,
    ) -> None:
        self.route_name = route.name
        self.index = index
        self.started = False
        in_flight = max_in_flight_per_member(route)
        spec = ConsumerSpec(
            topics=route.topics,
            group_id=route.group_id,
            bootstrap_servers=bootstrap_servers,
            max_in_flight=in_flight,
            max_poll_records=in_flight,
            on_lock_expired=on_lock_expired,
            on_ack_result=on_ack_result,
            value_type=route.value_type,
            value_deserializer=route.value_deserializer,
            key_deserializer=route.key_deserializer,
            member_index=index,
            keep_alive_fraction=route.renew_fraction,
            options={**options, **route.consumer_options},
        )
        self.consumer: ConsumerLike = factory(spec)
        self._failed: asyncio.Future[BaseException] | None = None
        self._failure_watch: asyncio.Task[None] | None = None

    # Membership health, as ShareConsumer reports it.  ConsumerLike does not include these (a
    # consumer factory may return a test double), so a consumer without them answers None.

    @property
    def member_epoch(self) -> int | None:
        """The epoch the coordinator last gave this member (0 while joining or rejoining)."""
        epoch = getattr(self.consumer, "member_epoch", None)
        return epoch if isinstance(epoch, int) else None

    @property
    def last_heartbeat_at(self) -> float | None:
        """When (``loop.time()``) the coordinator last answered a heartbeat without an error;
        None before the first."""
        at = getattr(self.consumer, "last_heartbeat_at", None)
        return float(at) if isinstance(at, int | float) else None

    @property
    def heartbeat_interval(self) -> float | None:
        """The heartbeat interval (seconds) the coordinator last gave this member; None
        before its first answer."""
        interval = getattr(self.consumer, "heartbeat_interval", None)
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            return None
        return float(interval)

    @property
    def heartbeat_failures(self) -> int | None:
        """Heartbeats lost or answered with an error since the last clean answer."""
        failures = getattr(self.consumer, "heartbeat_failures", None)
        return failures if isinstance(failures, int) else None

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the consumer (it cannot go on), or None."""
        failure = getattr(self.consumer, "failure", None)
        return failure if isinstance(failure, BaseException) else None

    @property
    def failed(self) -> asyncio.Future[BaseException]:
        """Completes with the consumer's error once it failed (``wait_failed()``); never for
        a consumer without that method (a test double), nor before ``start()``.  Read it, add
        callbacks to it; do not cancel it."""
        if self._failed is None:
            self._failed = asyncio.get_running_loop().create_future()
        return self._failed

    async def start(self) -> None:
        """Join the group."""
        await self.consumer.start()
        self.started = True
        wait_failed = getattr(self.consumer, "wait_failed", None)
        if callable(wait_failed):
            self._failure_watch = asyncio.get_running_loop().create_task(
                self._watch_failure(wait_failed),
                name=f"aioshare-route-{self.route_name}-member-{self.index}-failure",
            )

    async def _watch_failure(self, wait_failed: Callable[[], Awaitable[object]]) -> None:
        try:
            exc = await wait_failed()
        except Exception:
            log.exception("route %r: member %d: wait_failed() raised", self.route_name, self.index)
            return
        if isinstance(exc, BaseException) and not self.failed.done():
            self.failed.set_result(exc)

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 -- the consumer's own close budget
        """Commit what is recorded and leave the group (failures are logged, not raised)."""
        watch, self._failure_watch = self._failure_watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.wait([watch])  # not ``await watch``: its cancellation is not ours
        if not self.started:
            return
        self.started = False
        try:
            await self.consumer.commit(timeout=timeout)
        except Exception as exc:
            log.debug("route %r: final commit of member %d failed: %r", self.route_name, self.index, exc)
        try:
            await self.consumer.close(timeout=timeout)
        except Exception as exc:
            log.warning("route %r: closing member %d failed: %r", self.route_name, self.index, exc)
