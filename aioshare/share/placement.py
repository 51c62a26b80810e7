"""Which leader's session fetches which assigned partition.

Assignments arrive by topic id; leaders come from metadata.  ``Placement`` keeps one
``LeaderFetcher`` per leader and gives each its partitions.  It re-reads metadata when a
partition's leader is unknown or a fetcher reported it misplaced (NOT_LEADER_OR_FOLLOWER,
UNKNOWN_TOPIC_ID, ...).  When a partition moves to another leader, the records acquired
from the old one are written off: the old leader cannot take acks for them any more and
the new one never gave them to us.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aioshare.client.backoff import Backoff
from aioshare.client.cluster import Cluster
from aioshare.protocol.errors import KafkaConnectionError, KafkaError
from aioshare.protocol.types import TopicIdPartition
from aioshare.share.ack_tracker import AckTracker
from aioshare.share.fetcher import LeaderFetcher

__all__ = ["Placement"]

log = logging.getLogger(__name__)


class Placement:
    def __init__(
        self,
        cluster: Cluster,
        tracker: AckTracker,
        *,
        start_fetcher: Callable[[int], LeaderFetcher],
        records_lost: Callable[[list[TopicIdPartition]], None],
    ) -> None:
        self._cluster = cluster
        self._tracker = tracker
        self._start_fetcher = start_fetcher
        self._records_lost = records_lost
        self.fetchers: dict[int, LeaderFetcher] = {}
        self.assignment: frozenset[TopicIdPartition] = frozenset()
        self._where: dict[TopicIdPartition, int] = {}
        self._misplaced: set[TopicIdPartition] = set()
        self._dirty = asyncio.Event()
        self._backoff = Backoff()

    def set_assignment(self, tps: frozenset[TopicIdPartition]) -> None:
        self.assignment = tps
        for tp in [tp for tp in self._where if tp not in tps]:
            # Revoked: stop fetching now; acks for its records still go to the same leader.
            self.fetchers[self._where.pop(tp)].remove(tp)
        self._dirty.set()

    def misplaced(self, tp: TopicIdPartition) -> None:
        node = self._where.pop(tp, None)
        if node is not None:
            self.fetchers[node].remove(tp)
        self._misplaced.add(tp)
        self._cluster.request_refresh()
        self._dirty.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if await self._reconcile():
                self._backoff.reset()
                continue
            # Some partition has no known leader yet: look again after a pause.
            try:
                async with asyncio.timeout(self._backoff.next_delay()):
                    await self._dirty.wait()
            except TimeoutError:
                self._dirty.set()

    async def _reconcile(self) -> bool:
        """Place every assigned partition; False if some could not be placed yet."""
        assignment = self.assignment
        cluster = self._cluster
        unknown = [tp for tp in assignment if cluster.leader_for(tp.topic_id, tp.partition) is None]
        if self._misplaced or unknown:
            try:
                await cluster.refresh(sorted({tp.topic_id for tp in assignment}, key=str))
            except KafkaError as exc:
                log.debug("metadata refresh for the assignment failed: %s", exc)
                return False
            if assignment is not self.assignment:
                return True  # changed while we waited; the next round sees the new one
        wanted: dict[int, set[TopicIdPartition]] = {}
        placed_all = True
        for tp in assignment:
            leader = cluster.leader_for(tp.topic_id, tp.partition)
            if leader is None:
                placed_all = False
                continue
            wanted.setdefault(leader.node_id, set()).add(tp)
            self._misplaced.discard(tp)
            old = self._where.get(tp)
            if old is not None and old != leader.node_id:
                self.fetchers[old].remove(tp)
            route = self._tracker.routes.get(tp)
            if route is not None and route != leader.node_id:
                # Records acquired from the old leader cannot be acknowledged any more.
                lost = [tp]
                self._tracker.abandon(lost, KafkaConnectionError(f"{tp} moved to node {leader.node_id}"))
                self._records_lost(lost)
            self._tracker.routes[tp] = leader.node_id
            self._where[tp] = leader.node_id
        for node in set(wanted) | set(self.fetchers):
            fetcher = self.fetchers.get(node)
            if fetcher is None:
                fetcher = self.fetchers[node] = self._start_fetcher(node)
            fetcher.set_partitions(wanted.get(node, set()))
        return placed_all
