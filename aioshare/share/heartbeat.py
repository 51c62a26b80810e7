"""The heartbeat task: drives ``Membership`` against the group coordinator.

It sends what ``Membership`` builds, feeds back answers and losses, finds the
coordinator again when told (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, disconnects),
hands assignment changes to the consumer and reports fatal errors.  Subscription changes
wake it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aioshare.client.cluster import Cluster
from aioshare.client.connection import Connection
from aioshare.protocol.errors import (
    ErrorCode,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
)
from aioshare.protocol.messages import ShareGroupHeartbeatResponse
from aioshare.protocol.types import TopicIdPartition
from aioshare.share.membership import Membership, MemberState
from aioshare.share.wire import heartbeat_request, heartbeat_response

__all__ = ["HeartbeatLoop"]

log = logging.getLogger(__name__)

_RETRIABLE = (KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable)
_COORDINATOR_MOVED = frozenset({ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE})


class HeartbeatLoop:
    def __init__(
        self,
        membership: Membership,
        cluster: Cluster,
        *,
        on_assignment: Callable[[frozenset[TopicIdPartition]], None],
        on_fatal: Callable[[BaseException], None],
        request_timeout: float,
    ) -> None:
        self.membership = membership
        self._cluster = cluster
        self._on_assignment = on_assignment
        self._on_fatal = on_fatal
        self._request_timeout = request_timeout
        self._wake = asyncio.Event()
        self._answered = asyncio.Event()
        self._conn: Connection | None = None
        self._stopped = False  # run() is over: nothing will send a leave or feed back its answer

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- commands from the consumer ------------------------------------------------------

    def subscribe(self, topics: Iterable[str]) -> None:
        self.membership.subscribe(topics, self._now())
        self._changed()

    def unsubscribe(self) -> None:
        self.membership.unsubscribe(self._now())
        self._changed()

    async def leave(self) -> None:
        """Leave the group (epoch -1) and wait for the answer (or its loss)."""
        self.membership.leave(self._now())
        self._changed()
        # Only run() sends the leave and feeds back its answer: once it has stopped (fatal
        # error, cancelled, crashed) there is nothing left to wait for.
        while not self._stopped and self.membership.state not in (
            MemberState.UNSUBSCRIBED,
            MemberState.FATAL,
        ):
            self._answered.clear()
            await self._answered.wait()

    def _changed(self) -> None:
        change = self.membership.poll_assignment_change()
        if change is not None:
            self._on_assignment(change)
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self._stopped = True
            self._answered.set()  # wakes a leave() waiting for the loop

    async def _run(self) -> None:
        membership = self.membership
        while True:
            self._wake.clear()
            if membership.fatal is not None:
                self._on_fatal(membership.fatal.error())
                return
            now = self._now()
            request = membership.build_heartbeat(now)
            if request is None:
                at = membership.next_heartbeat_at()
                try:
                    async with asyncio.timeout(None if at is None else max(0.0, at - now)):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            try:
                conn = await self._coordinator()
                response = await conn.send(
                    heartbeat_request(request),
                    timeout=self._request_timeout,
                    response_type=ShareGroupHeartbeatResponse,
                )
            except _RETRIABLE as exc:
                log.debug("heartbeat for group %s failed: %s", membership.group_id, exc)
                self._conn = None
                membership.on_failure(self._now(), disconnected=True)
            except KafkaError as exc:
                if exc.retriable:
                    membership.on_failure(self._now(), disconnected=True)
                else:
                    # Coordinator lookup refused, TLS/SASL failure, no ShareGroupHeartbeat on
                    # this broker, ...: the membership dies with it (and drops its assignment),
                    # and the top of the loop reports it.
                    membership.on_fatal(exc)
            else:
                data = heartbeat_response(response)
                if data.error_code in _COORDINATOR_MOVED:
                    self._cluster.invalidate_coordinator(membership.group_id)
                    self._conn = None
                membership.on_response(data, self._now())
            self._changed()
            self._answered.set()

    async def _coordinator(self) -> Connection:
        membership = self.membership
        if membership.need_coordinator or self._conn is None or self._conn.closed:
            if membership.need_coordinator:
                self._cluster.invalidate_coordinator(membership.group_id)
            node = await self._cluster.find_coordinator(membership.group_id, timeout=self._request_timeout)
            membership.coordinator_found()
            self._conn = await self._cluster.connection(node.node_id)
        return self._conn
