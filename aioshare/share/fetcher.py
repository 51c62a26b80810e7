"""The per-leader loop: the I/O shell around one ``LeaderSession``.

``LeaderSession`` (leader_session.py, sans-IO) decides which request goes next and what each
answer means; this shell owns what it cannot: the connection to the leader, the clock, the
wait between turns and the sending.  Each turn it asks the session for a request, connects
(a failure or a new connection is reported to the session), sends what the session built,
reports the answer or its absence, and passes the session's events to the consumer
(``on_events``) - except a metadata refresh, which it asks the cluster for itself.

``stop()`` makes the loop close the session with the final epoch (-1), which delivers the
last acks and makes the broker release every record still acquired, then return.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from aioshare.client.cluster import Cluster
from aioshare.client.connection import Connection
from aioshare.protocol.types import TopicIdPartition
from aioshare.share.ack_tracker import AckTracker
from aioshare.share.capacity import Capacity
from aioshare.share.leader_session import (
    NETWORK_ERRORS,
    FetchConfig,
    FetchEvent,
    LeaderSession,
    MessageFactory,
    RefreshMetadata,
    RenewUnsupportedError,
    Turn,
)

__all__ = ["FetchConfig", "LeaderFetcher", "RenewUnsupportedError"]


class LeaderFetcher:
    def __init__(
        self,
        node_id: int,
        *,
        cluster: Cluster,
        config: FetchConfig,
        tracker: AckTracker,
        capacity: Capacity,
        make_messages: MessageFactory,
        on_events: Callable[[list[FetchEvent]], None],
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.node_id = node_id
        self.core = LeaderSession(
            node_id,
            config=config,
            tracker=tracker,
            capacity=capacity,
            make_messages=make_messages,
            topic_name=self._topic_name,
        )
        self._cluster = cluster
        self._on_events = on_events
        self._wake = asyncio.Event()
        self._stopping = False
        self._conn: Connection | None = None
        self._clock = clock or asyncio.get_running_loop().time

    def __repr__(self) -> str:
        return f"LeaderFetcher(node={self.node_id}, epoch={self.core.session.epoch})"

    # -- control -----------------------------------------------------------------------

    def set_partitions(self, tps: set[TopicIdPartition]) -> None:
        if self.core.set_partitions(tps):
            self.wake()

    def remove(self, tp: TopicIdPartition) -> None:
        self.core.remove(tp)
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Fetch no more; close the session (final epoch) and return."""
        self._stopping = True
        self.core.stop_fetching()
        self.wake()

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._wake.clear()
            if self._stopping:
                turn = self.core.closing()
                self._emit()
                if turn is not None:
                    await self._take(turn)
                return
            action = self.core.next_request(self._clock())
            self._emit()
            if isinstance(action, Turn):
                await self._take(action)
                continue
            if action is None or action > 0:
                try:
                    async with asyncio.timeout(action):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def _take(self, turn: Turn) -> None:
        """Connect, send the turn's request, hand the answer (or its absence) to the core."""
        core = self.core
        try:
            conn = await self._connect()
            out = core.build(turn, conn.version_for if conn is not None else None, self._clock())
            self._emit()
            if out is None or conn is None:
                return
            try:
                response = await conn.send(out.request, out.version, timeout=out.timeout)
            except BaseException as exc:
                handled = core.unanswered(out, exc, self._clock())
                self._emit()
                if not handled:
                    raise
                return
            core.answered(out, response, self._clock())
            self._emit()
        finally:
            core.release(turn)

    async def _connect(self) -> Connection | None:
        """The connection to the leader, or None after a failure (reported to the core)."""
        try:
            conn = await self._cluster.connection(self.node_id)
        except NETWORK_ERRORS as exc:
            self._conn = None
            self.core.connection_failed(exc, self._clock())
            self._emit()
            return None
        if conn is not self._conn:
            if self._conn is not None:
                self.core.connection_replaced()
                self._emit()
            self._conn = conn
        return conn

    def _topic_name(self, topic_id: uuid.UUID) -> str | None:
        topic = self._cluster.topic(topic_id)
        return topic.name if topic is not None else None

    def _emit(self) -> None:
        events = self.core.take_events()
        if not events:
            return
        if any(isinstance(e, RefreshMetadata) for e in events):
            self._cluster.request_refresh()
            events = [e for e in events if not isinstance(e, RefreshMetadata)]
        if events:
            self._on_events(events)
