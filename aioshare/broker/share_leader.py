"""The partition-leader side of share groups (semantics doc, sections 3, 4 and 6): the asyncio shell.

`ShareLeader` is what Kafka's SharePartitionManager is on each broker: it owns the share
sessions of every node (one `ShareSessionCache` per node), the `SharePartition` state machines
the nodes lead, the acquisition-lock timer and the wake-ups of long-polling ShareFetch
requests. The ShareFetch and ShareAcknowledge handlers (apis/share_fetch.py,
apis/share_acknowledge.py) resolve requests through it.

* Share-partitions are loaded lazily on the first fetch, from `cluster.share_state` (the
  embedded share coordinator): restored when a start offset was persisted, otherwise started at
  `share.auto.offset.reset` evaluated now (section 4.9).
* Every state change is written to the store before the request that caused it is answered
  (section 4.5, "an ack result is only returned after the new state has been persisted").
  Acquisition alone writes nothing, as in Kafka: ACQUIRED is volatile (section 6.3).
* One timer task for the whole broker sleeps until the earliest acquisition-lock deadline of
  any cached share-partition; expiry makes records available again and wakes waiting fetches.
* A node only serves share-partitions it leads. Cached state is tagged with the leader epoch
  it was loaded under; when leadership moves the cached object is dropped (never written
  again) and the new leader reloads from the store, which is how state survives leader moves.
* Sessions end on a final epoch or a disconnect, which releases the member's records
  (delivery count kept, ARCHIVED at the delivery limit: Kafka 4.2+, KAFKA-19972); when a
  group's last session on a node disconnects, the node drops that group's cached
  share-partitions (Kafka's onGroupEmpty).

Deliberate differences from Kafka are marked "Deviation:" with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import logging
import uuid
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from aioshare.broker.cluster import Cluster
from aioshare.broker.config import IsolationLevel
from aioshare.broker.log import BatchInfo, PartitionLog
from aioshare.broker.server import ApiRegistry, ConnectionInfo
from aioshare.broker.share_dlq import DeadLetterWriter
from aioshare.broker.share_partition import (
    AckBatch,
    AcquiredRange,
    InvalidPersistedStateError,
    SharePartition,
    validate_ack_batches,
)
from aioshare.broker.share_sessions import ClosedSession, ShareSessionCache
from aioshare.broker.share_state import ShareStateKey
from aioshare.broker.topics import Partition
from aioshare.protocol.errors import ErrorCode, UnknownServerError
from aioshare.protocol.types import AcquireMode, TopicIdPartition

logger = logging.getLogger("aioshare.broker.share")

# The timer never sleeps less than this, so a wall clock running behind the loop clock
# cannot make it spin.
_MIN_TIMER_SLEEP = 0.001

Waker = Callable[[], None]


def _last_offset(batch: BatchInfo) -> int:
    return batch.last_offset


def _base_offset(batch: BatchInfo) -> int:
    return batch.base_offset


class LeaderResult(NamedTuple):
    """Outcome of one operation on a share-partition: an error code (NONE when it worked)."""

    error_code: int
    error_message: str | None = None


class Fetched(NamedTuple):
    """What one ShareFetch attempt acquired from one share-partition."""

    acquired: list[AcquiredRange]
    # Offsets acquired (counted against the request's MaxRecords).
    acquired_count: int
    # Whole log batches covering the acquired ranges, bytes as stored.
    records: bytes
    error_code: int = ErrorCode.NONE
    error_message: str | None = None


_NOTHING = Fetched([], 0, b"")


class AckOutcome(NamedTuple):
    """The result of one partition's acknowledgements in a ShareFetch or ShareAcknowledge."""

    error_code: int
    error_message: str | None = None
    # Set with NOT_LEADER_OR_FOLLOWER, for CurrentLeader and NodeEndpoints.
    moved: Partition | None = None
    # Batches passed KafkaApis' checks and went to the share-partition (SharePartitionManager).
    applied: bool = False


@dataclasses.dataclass(slots=True)
class _Cached:
    share_partition: SharePartition
    # The topic partition and leader epoch the state was loaded under: any difference later
    # means leadership moved (or the topic was re-created) and this copy is stale.
    partition: Partition
    leader_epoch: int


class ShareLeader:
    """Leader-side share-group service of one embedded cluster (all of its nodes)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        config = cluster.config
        self._dead_letters = DeadLetterWriter(cluster)
        self._max_sessions = config.group_share_max_share_sessions
        self._sessions: dict[int, ShareSessionCache] = {}
        self._partitions: dict[int, dict[ShareStateKey, _Cached]] = {}
        # Lock deadlines: (deadline ms, tie-breaker, node id, key). Entries go stale when locks
        # are acknowledged or partitions dropped; `_scheduled` says which entry is current.
        self._deadlines: list[tuple[int, int, int, ShareStateKey]] = []
        self._scheduled: dict[tuple[int, ShareStateKey], int] = {}
        self._sequence = itertools.count()
        self._waiters: dict[ShareStateKey, set[Waker]] = {}
        self._timer: asyncio.Task[None] | None = None
        self._timer_wake: asyncio.Event | None = None
        self._closed = False
        cluster.share_state.add_reset_listener(self._state_reset)

    # ------------------------------------------------------------------ lifecycle (Service)

    async def start(self) -> None:
        if self._timer is None and not self._closed:
            self._timer_wake = asyncio.Event()
            self._timer = asyncio.get_running_loop().create_task(
                self._run_timer(), name="aioshare-share-lock-timer"
            )

    async def close(self) -> None:
        """Stop the timer. Sessions and acquisitions are volatile: nothing more is written."""
        self._closed = True
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        for wakers in list(self._waiters.values()):
            for wake in list(wakers):
                wake()

    # ------------------------------------------------------------------ sessions

    def sessions(self, node_id: int) -> ShareSessionCache:
        cache = self._sessions.get(node_id)
        if cache is None:
            cache = self._sessions[node_id] = ShareSessionCache(self._max_sessions)
        return cache

    def connection_closed(self, info: ConnectionInfo) -> None:
        """Disconnect listener: close the connection's sessions, release their records, and
        drop cached share-partitions of groups left without a session on this node."""
        if self._closed:
            # The broker is shutting down: acquisitions die with it, the store already holds
            # them as AVAILABLE (snapshot), so there is nothing to write.
            return
        cache = self._sessions.get(info.node_id)
        if cache is None:
            return
        result = cache.disconnect(info.connection_id)
        for closed in result.closed:
            self.release_session(info.node_id, closed)
        for group_id in result.empty_groups:
            self._evict_group(info.node_id, group_id)

    def release_session(self, node_id: int, closed: ClosedSession) -> None:
        """A session ended (final epoch or disconnect): release what the member holds on the
        session's partitions, delivery count kept and ARCHIVED at the limit (section 4.8).

        Kafka logs release failures and does not report them to the client; so do we.
        """
        group_id, member_id = closed.key
        for topic_partition in closed.partitions:
            key = ShareStateKey(group_id, topic_partition.topic_id, topic_partition.partition)
            cached = self._valid(node_id, key)
            if cached is None:
                continue
            change = cached.share_partition.release_member(member_id)
            if change.state_changed:
                self._persist(node_id, key, cached)
            if change.offsets_changed:
                self._wake(key)

    def _evict_group(self, node_id: int, group_id: str) -> None:
        cached = self._partitions.get(node_id)
        if not cached:
            return
        for key in [key for key in cached if key.group_id == group_id]:
            self._drop(node_id, key)

    # ------------------------------------------------------------------ partitions

    def resolve(self, topic_id: uuid.UUID, index: int) -> tuple[Partition | None, ErrorCode]:
        """The topic partition for a request's (TopicId, PartitionIndex), or the error for it."""
        topic = self._cluster.topics.by_id(topic_id)
        if topic is None:
            return None, ErrorCode.UNKNOWN_TOPIC_ID
        partition = topic.partition(index)
        if partition is None:
            return None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        return partition, ErrorCode.NONE

    def _valid(self, node_id: int, key: ShareStateKey) -> _Cached | None:
        """The cached share-partition if this node still leads it under the same epoch."""
        node = self._partitions.get(node_id)
        cached = node.get(key) if node is not None else None
        if cached is None:
            return None
        partition = cached.partition
        topic = self._cluster.topics.by_id(key.topic_id)
        if (
            topic is None
            or topic.partition(key.partition) is not partition
            or partition.leader != node_id
            or partition.leader_epoch != cached.leader_epoch
        ):
            # Kafka's SharePartitionListener.onBecomingFollower/onDeleted: drop the state; the
            # new leader reloads it from the share coordinator.
            self._drop(node_id, key)
            return None
        self._apply_group_configs(key.group_id, cached.share_partition)
        return cached

    def _apply_group_configs(self, group_id: str, share_partition: SharePartition) -> None:
        """The group's current limits (per group from Kafka 4.3, the broker's in 4.2)."""
        configs = self._cluster.group_configs.get(group_id)
        share_partition.set_group_limits(
            max_in_flight_records=configs.share_partition_max_record_locks,
            max_delivery_count=configs.share_delivery_count_limit,
            renew_enabled=configs.share_renew_acknowledge_enable,
            dead_letter_queue=self._dead_letters.enabled(group_id),
        )

    def cached(self, node_id: int, group_id: str, partition: Partition) -> SharePartition | None:
        """The loaded share-partition (None when not loaded or leadership moved)."""
        cached = self._valid(node_id, ShareStateKey(group_id, partition.topic.topic_id, partition.index))
        return cached.share_partition if cached is not None else None

    def load(self, node_id: int, group_id: str, partition: Partition) -> SharePartition:
        """The share-partition for a fetch, loading it from the store on first use.

        Raises BrokerError (e.g. OFFSET_NOT_AVAILABLE for a by_duration reset that finds no
        offset: Kafka fails the partition and retries the load on the next fetch).
        """
        key = ShareStateKey(group_id, partition.topic.topic_id, partition.index)
        cached = self._valid(node_id, key)
        if cached is not None:
            return cached.share_partition
        store = self._cluster.share_state
        persisted = store.read(key)
        log = partition.log
        configs = self._cluster.group_configs.get(group_id)
        # Kafka's leader only serves share-partitions the group coordinator initialised
        # (InitializeShareGroupState, start offset -1) before it assigned them. A member may
        # fetch here before our coordinator got to it (it initialises on heartbeat) or with no
        # heartbeat at all (raw-protocol clients and tests); treating "no state" exactly like
        # the coordinator's "start -1" gives the same result as if it had initialised the
        # partition just before: share.auto.offset.reset is evaluated now, at first load.
        undecided = persisted is None or persisted.start_offset < 0

        def offset_for_timestamp(timestamp: int) -> int | None:
            found = log.offset_for_timestamp(timestamp)
            return found[0] if found is not None else None

        try:
            share_partition = SharePartition.initialize(
                persisted,
                reset=configs.share_auto_offset_reset,
                log_start_offset=log.log_start_offset,
                high_watermark=log.high_watermark,
                now_ms=self._cluster.now_ms(),
                max_in_flight_records=configs.share_partition_max_record_locks,
                max_delivery_count=configs.share_delivery_count_limit,
                offset_for_timestamp=offset_for_timestamp,
            )
        except InvalidPersistedStateError as exc:
            logger.error("share-partition %s has invalid persisted state: %s", key, exc)
            raise UnknownServerError(str(exc)) from exc
        share_partition.leader_epoch = partition.leader_epoch
        self._apply_group_configs(group_id, share_partition)
        cached = _Cached(share_partition, partition, partition.leader_epoch)
        self._partitions.setdefault(node_id, {})[key] = cached
        if undecided:
            # Deviation: the start offset chosen by the reset is written at once, so a restart
            # before the first acknowledgement does not evaluate `latest` again and skip what
            # was produced in between. Kafka writes nothing here; DescribeShareGroupOffsets
            # still shows -1 until the first real write, as on Kafka (first_load).
            self._persist(node_id, key, cached, first_load=True)
        return share_partition

    def _drop(self, node_id: int, key: ShareStateKey) -> None:
        node = self._partitions.get(node_id)
        if node is not None and node.pop(key, None) is not None:
            self._scheduled.pop((node_id, key), None)
            # Waiting fetches re-check: they reload the state or see the new leader.
            self._wake(key)

    def _state_reset(self, key: ShareStateKey) -> None:
        """The coordinator replaced or deleted the state (Alter/DeleteShareGroupOffsets,
        DeleteGroups, a fresh initialisation): cached copies are stale everywhere."""
        for node_id in list(self._partitions):
            self._drop(node_id, key)

    def _persist(
        self, node_id: int, key: ShareStateKey, cached: _Cached, *, first_load: bool = False
    ) -> bool:
        """Write the share-partition's durable state; False (and the state dropped) on failure.

        Kafka rolls a failed write back; dropping the cached copy does the same here: the next
        fetch reloads the last durable state. Records the change dead-lettered are written to the
        group's DLQ topic first (Kafka's DLQ flow, done synchronously: see share_dlq.py).
        """
        letters = cached.share_partition.take_dead_letters()
        if letters:
            self._dead_letters.write(key.group_id, cached.partition, letters)
        try:
            self._cluster.share_state.write(key, cached.share_partition.snapshot(), first_load=first_load)
        except OSError:
            logger.exception("cannot persist share-partition state %s", key)
            self._drop(node_id, key)
            return False
        return True

    @property
    def cluster(self) -> Cluster:
        return self._cluster

    @property
    def closed(self) -> bool:
        """The broker is shutting down: long polls answer with what they have."""
        return self._closed

    # ------------------------------------------------------------------ acknowledgements

    def acknowledge_all(
        self,
        node_id: int,
        group_id: str,
        member_id: str,
        acknowledgements: Mapping[TopicIdPartition, Sequence[AckBatch]],
        *,
        version: int,
        is_renew_ack: bool,
        lock_duration_ms: int,
    ) -> dict[TopicIdPartition, AckOutcome]:
        """Every partition's acknowledgements of one request, checked in KafkaApis' order:
        unknown topic id / partition, then the batch rules (INVALID_REQUEST), then leadership,
        then the share-partition itself. Partitions are independent of each other."""
        outcomes: dict[TopicIdPartition, AckOutcome] = {}
        for topic_partition, batches in acknowledgements.items():
            partition, error = self.resolve(topic_partition.topic_id, topic_partition.partition)
            if partition is None:
                outcomes[topic_partition] = AckOutcome(error)
                continue
            problem = validate_ack_batches(batches, version=version, is_renew_ack=is_renew_ack)
            if problem is not None:
                outcomes[topic_partition] = AckOutcome(ErrorCode.INVALID_REQUEST, problem)
                continue
            if not batches:
                # KafkaApis.handleAcknowledgements' emptyAcknowledgements: NONE, not applied.
                outcomes[topic_partition] = AckOutcome(ErrorCode.NONE)
                continue
            if partition.leader != node_id:
                # Deviation: Kafka answers UNKNOWN_TOPIC_OR_PARTITION here (the share-partition
                # left its cache with the leadership); naming the new leader lets clients move
                # the acknowledgement's partition at once, and both fail the acknowledgement.
                outcomes[topic_partition] = AckOutcome(
                    ErrorCode.NOT_LEADER_OR_FOLLOWER, None, partition, True
                )
                continue
            result = self.acknowledge(node_id, group_id, member_id, partition, batches, lock_duration_ms)
            outcomes[topic_partition] = AckOutcome(result.error_code, result.error_message, None, True)
        return outcomes

    def lock_duration_ms(self, group_id: str) -> int:
        return self._cluster.group_configs.get(group_id).share_record_lock_duration_ms

    def acknowledge(
        self,
        node_id: int,
        group_id: str,
        member_id: str,
        partition: Partition,
        batches: Sequence[AckBatch],
        lock_duration_ms: int,
    ) -> LeaderResult:
        """Apply one partition's acknowledgements (all or nothing) and persist before answering."""
        key = ShareStateKey(group_id, partition.topic.topic_id, partition.index)
        cached = self._valid(node_id, key)
        if cached is None:
            # SharePartitionManager.acknowledge: no share-partition in the cache.
            return LeaderResult(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
        share_partition = cached.share_partition
        result = share_partition.acknowledge(
            member_id, batches, now_ms=self._cluster.now_ms(), lock_duration_ms=lock_duration_ms
        )
        if result.error_code:
            return LeaderResult(result.error_code, result.error_message)
        if result.state_changed and not self._persist(node_id, key, cached):
            return LeaderResult(ErrorCode.KAFKA_STORAGE_ERROR, "Failed to persist the share-partition state.")
        # RENEW made new locks; acknowledgements of any kind may free window space, so waiting
        # fetches are retried like Kafka's completeDelayedShareFetchRequest after an ack.
        self._schedule(node_id, key, share_partition)
        self._wake(key)
        return LeaderResult(ErrorCode.NONE)

    # ------------------------------------------------------------------ acquisition

    def acquire(
        self,
        node_id: int,
        group_id: str,
        member_id: str,
        partition: Partition,
        share_partition: SharePartition,
        *,
        max_records: int,
        batch_size: int,
        mode: AcquireMode,
        max_bytes: int,
        min_one: bool,
        isolation: IsolationLevel,
        lock_duration_ms: int,
    ) -> Fetched:
        """Read the log from the next fetch offset and acquire records for `member_id`.

        Works per log batch: the index is bisected and walked only as far as records could be
        acquired (the in-flight window plus `max_records` new offsets), and only the bytes of
        the batches covering the acquired ranges are read (Kafka's maybeSliceFetchRecords).
        """
        key = ShareStateKey(group_id, partition.topic.topic_id, partition.index)
        log = partition.log
        changed = share_partition.update_log_start_offset(log.log_start_offset).state_changed
        result_changed, fetched = self._acquire(
            share_partition,
            log,
            member_id,
            max_records=max_records,
            batch_size=batch_size,
            mode=mode,
            max_bytes=max_bytes,
            min_one=min_one,
            read_committed=isolation is IsolationLevel.READ_COMMITTED,
            lock_duration_ms=lock_duration_ms,
        )
        if result_changed:
            changed = True
        if changed:
            cached = self._valid(node_id, key)
            if cached is not None and not self._persist(node_id, key, cached):
                return Fetched([], 0, b"", ErrorCode.KAFKA_STORAGE_ERROR, "Failed to persist the state.")
        if fetched.acquired_count:
            self._schedule(node_id, key, share_partition)
        return fetched

    def _acquire(
        self,
        share_partition: SharePartition,
        log: PartitionLog,
        member_id: str,
        *,
        max_records: int,
        batch_size: int,
        mode: AcquireMode,
        max_bytes: int,
        min_one: bool,
        read_committed: bool,
        lock_duration_ms: int,
    ) -> tuple[bool, Fetched]:
        if not share_partition.can_acquire_records():
            # Window full with nothing to re-deliver (section 4.4): no data, no error.
            return False, _NOTHING
        fetch_offset = share_partition.next_fetch_offset()
        bound = log.last_stable_offset if read_committed else log.high_watermark
        if fetch_offset >= bound:
            return False, _NOTHING
        entries = log.batches
        start = bisect_left(entries, fetch_offset, key=_last_offset)
        # Nothing past the in-flight window plus max_records new offsets can be acquired by
        # this call (the batch holding the last one is still completed).
        stop_at = max(share_partition.end_offset + 1, fetch_offset) + max_records
        total = 0
        end = start
        count = len(entries)
        while end < count:
            entry = entries[end]
            if entry.last_offset >= bound or entry.base_offset >= stop_at:
                break
            if total + entry.size > max_bytes and not (min_one and end == start):
                break
            total += entry.size
            end += 1
        if end == start:
            return False, _NOTHING
        walked = entries[start:end]
        spans = [(entry.base_offset, entry.last_offset) for entry in walked]
        aborted = _aborted_spans(log, walked) if read_committed else ()
        result = share_partition.acquire(
            member_id,
            spans,
            max_records=max_records,
            batch_size=batch_size,
            now_ms=self._cluster.now_ms(),
            lock_duration_ms=lock_duration_ms,
            mode=mode,
            fetch_offset=fetch_offset,
            aborted=aborted,
        )
        records = b""
        if result.read_range is not None:
            first, last = result.read_range
            lo = bisect_left(walked, first, key=_last_offset)
            hi = bisect_right(walked, last, key=_base_offset)
            records = log.read_batches(walked[lo:hi])
        return result.state_changed, Fetched(result.acquired, result.count, records)

    def has_acquirable(self, share_partition: SharePartition, log: PartitionLog, bound: int) -> int:
        """Bytes a fetch could acquire now, estimated from the log (for MinBytes); 0 if none."""
        if not share_partition.can_acquire_records():
            return 0
        fetch_offset = share_partition.next_fetch_offset()
        if fetch_offset >= bound:
            return 0
        entries = log.batches
        start = bisect_left(entries, fetch_offset, key=_last_offset)
        stop = bisect_left(entries, bound, key=_last_offset)
        if stop <= start:
            return 0
        return entries[stop - 1].position + entries[stop - 1].size - entries[start].position

    # ------------------------------------------------------------------ long polling

    async def wait(
        self, keys: Iterable[ShareStateKey], logs: Iterable[PartitionLog], max_wait: float
    ) -> bool:
        """Wait until a watched share-partition changes (release, expiry, ack, reload) or a
        watched log changes (append, log start move, leader move), at most `max_wait` seconds."""
        if self._closed:
            return False
        woken = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        watched_keys = list(keys)
        watched_logs = list(logs)
        for key in watched_keys:
            self._waiters.setdefault(key, set()).add(wake)
        for log in watched_logs:
            log.add_listener(wake)
        try:
            async with asyncio.timeout(max(0.0, max_wait)):
                await woken
            return True
        except TimeoutError:
            return False
        finally:
            for key in watched_keys:
                wakers = self._waiters.get(key)
                if wakers is not None:
                    wakers.discard(wake)
                    if not wakers:
                        del self._waiters[key]
            for log in watched_logs:
                log.remove_listener(wake)

    def _wake(self, key: ShareStateKey) -> None:
        wakers = self._waiters.get(key)
        if wakers:
            for wake in list(wakers):
                wake()

    # ------------------------------------------------------------------ the lock timer

    def _schedule(self, node_id: int, key: ShareStateKey, share_partition: SharePartition) -> None:
        deadline = share_partition.next_deadline()
        if deadline is None:
            return
        current = self._scheduled.get((node_id, key))
        if current is not None and current <= deadline:
            return
        self._scheduled[(node_id, key)] = deadline
        entry = (deadline, next(self._sequence), node_id, key)
        heapq.heappush(self._deadlines, entry)
        if self._deadlines[0] is entry and self._timer_wake is not None:
            self._timer_wake.set()

    def expire_due(self, now_ms: int) -> None:
        """Expire every lock whose deadline has passed (the timer calls this; tests may too)."""
        heap = self._deadlines
        while heap and heap[0][0] <= now_ms:
            deadline, _sequence, node_id, key = heapq.heappop(heap)
            current = self._scheduled.get((node_id, key))
            if current is not None and current != deadline:
                continue  # superseded by an earlier or later entry for the same partition
            self._scheduled.pop((node_id, key), None)
            cached = self._valid(node_id, key)
            if cached is None:
                continue
            share_partition = cached.share_partition
            change = share_partition.expire_locks(now_ms)
            if change.state_changed:
                # Kafka logs a failed write on expiry and carries on; _persist does the same.
                self._persist(node_id, key, cached)
            if change.offsets_changed:
                self._wake(key)
            self._schedule(node_id, key, share_partition)

    async def _run_timer(self) -> None:
        assert self._timer_wake is not None
        wake = self._timer_wake
        while True:
            wake.clear()
            now = self._cluster.now_ms()
            try:
                self.expire_due(now)
            except Exception:
                logger.exception("share-partition lock expiry failed")
            delay = None
            if self._deadlines:
                delay = max(_MIN_TIMER_SLEEP, (self._deadlines[0][0] - self._cluster.now_ms()) / 1000)
            try:
                async with asyncio.timeout(delay):
                    await wake.wait()
            except TimeoutError:
                pass


def _aborted_spans(log: PartitionLog, walked: Sequence[BatchInfo]) -> list[tuple[int, int]]:
    """Data batches of aborted transactions among `walked` (read_committed, section 4.10)."""
    txns = log.aborted_transactions(walked[0].base_offset, walked[-1].last_offset + 1)
    if not txns:
        return []
    spans: list[tuple[int, int]] = []
    for txn in txns:
        lo = bisect_left(walked, txn.first_offset, key=_last_offset)
        hi = bisect_left(walked, txn.last_offset, key=_base_offset)
        for batch in walked[lo:hi]:
            if batch.producer_id == txn.producer_id and batch.is_transactional and not batch.is_control:
                spans.append((batch.base_offset, batch.last_offset))
    return spans


# One ShareLeader per registry (one embedded broker run): the ShareFetch and ShareAcknowledge
# modules both register against it, the first one to ask returns it as the Service to start.
# Keyed weakly by the registry, which the leader never references, so a finished broker's
# leader is collected with its registry.
_LEADERS: weakref.WeakKeyDictionary[ApiRegistry, ShareLeader] = weakref.WeakKeyDictionary()


def leader_for(registry: ApiRegistry, cluster: Cluster) -> tuple[ShareLeader, bool]:
    """The registry's ShareLeader and whether this call created it (the creator returns the Service)."""
    leader = _LEADERS.get(registry)
    if leader is not None:
        return leader, False
    leader = ShareLeader(cluster)
    registry.add_disconnect_listener(leader.connection_closed)
    _LEADERS[registry] = leader
    return leader, True
