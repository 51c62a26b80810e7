"""The per-leader loop: one share session, one request at a time.

A ``LeaderFetcher`` owns the ``ShareSessionState`` for one broker and is the only thing
that sends on it, because the broker checks every request's session epoch against the one
it expects.  Each turn of its loop picks one request:

1. pending RENEWs → a renew-only request (promptly: someone awaits it; a RENEW recorded
   while a long-polling ShareFetch is out goes right after it, so within ``MaxWaitMs``);
2. acks for partitions this session no longer fetches → a standalone ShareAcknowledge;
3. free capacity → a ShareFetch asking for at most that many records, carrying the
   pending acks of the fetched partitions;
4. acks older than the linger (capacity full, so no fetch is due) → ShareAcknowledge;
5. otherwise sleep until woken (acks, capacity, assignment, close) or the linger ends.

``stop()`` makes the loop close the session with the final epoch (-1), which delivers the
last acks and makes the broker release every record still acquired, then return.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aioshare.client.backoff import Backoff
from aioshare.client.cluster import Cluster
from aioshare.client.connection import Connection, RequestNotSentError
from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.errors import (
    BrokerError,
    ErrorCode,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    UnsupportedCompressionTypeError,
    UnsupportedVersionError,
    error_for_code,
)
from aioshare.protocol.messages import (
    ShareAcknowledgeRequest,
    ShareAcknowledgeResponse,
    ShareFetchRequest,
    ShareFetchResponse,
)
from aioshare.protocol.types import AckType, AcquireMode, TopicIdPartition
from aioshare.share.ack_tracker import AckInDoubtError, AckTracker, RenewRequest
from aioshare.share.acks import AckSnapshot
from aioshare.share.capacity import Capacity
from aioshare.share.delivery import Acquired, unpack_partition
from aioshare.share.leases import ExpiredRange
from aioshare.share.membership import topics_not_authorized
from aioshare.share.message import Message, RecordLike
from aioshare.share.session import FetchParams, SessionOutcome, ShareSessionState
from aioshare.share.wire import acknowledge_request, fetch_request

__all__ = ["FetchConfig", "FetchHost", "LeaderFetcher", "RenewUnsupportedError"]

log = logging.getLogger(__name__)

_RENEW_MIN_VERSION = 2  # ShareAcknowledge/ShareFetch v2 (Kafka 4.2, KIP-1222)
_RECORD_LIMIT_MIN_VERSION = 2  # ShareFetch v2 ShareAcquireMode (KIP-1206)
_NETWORK_ERRORS = (KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable)
# A broker times a lock from its own clock in whole milliseconds, rounded down, so its lock
# can end up to 1 ms before `sent_at + lock`; a lock is taken to end this much earlier here so
# that `lock_expires_at` never comes after the broker's expiry (and a redelivery).
_LOCK_CLOCK_SLACK = 0.002
# Partition errors that mean "this broker is not where the partition is": find it again.
_MOVED = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.UNKNOWN_TOPIC_ID,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.KAFKA_STORAGE_ERROR,
    }
)
# Partition errors the application must hear about: retrying cannot fix them.
_FATAL_PARTITION = frozenset({ErrorCode.TOPIC_AUTHORIZATION_FAILED})


_Snapshot = AckSnapshot[None]


class RenewUnsupportedError(UnsupportedVersionError):
    """The leader only speaks ShareAcknowledge v1: RENEW (KIP-1222) needs Kafka 4.2+ (v2)."""


@dataclass(frozen=True, slots=True)
class FetchConfig:
    group_id: str
    member_id: str
    max_poll_records: int
    max_wait_ms: int
    min_bytes: int
    max_bytes: int
    acquire_mode: AcquireMode
    request_timeout: float


class FetchHost(Protocol):
    """What a fetcher needs from its consumer."""

    def deliver(self, messages: list[Message]) -> None: ...

    def misplaced(self, tp: TopicIdPartition) -> None: ...

    def fatal(self, exc: BaseException) -> None: ...

    def records_lost(self, tps: list[TopicIdPartition]) -> None: ...

    def leases_added(self, lock_timeout_ms: int) -> None: ...

    def leases_expired(self, expired: list[ExpiredRange]) -> None: ...

    def make_messages(
        self,
        tp: TopicIdPartition,
        runs: list[tuple[Acquired, list[RecordLike]]],
        deadline: float,
        out: list[Message],
    ) -> None: ...


class LeaderFetcher:
    def __init__(
        self,
        node_id: int,
        *,
        cluster: Cluster,
        config: FetchConfig,
        tracker: AckTracker,
        capacity: Capacity,
        host: FetchHost,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.node_id = node_id
        self.session = ShareSessionState(config.group_id, config.member_id, node_id)
        self._cluster = cluster
        self._config = config
        self._tracker = tracker
        self._capacity = capacity
        self._host = host
        self._wake = asyncio.Event()
        self._stopping = False
        self._backoff = Backoff()
        self._retry_at = 0.0
        self._conn: Connection | None = None
        self._dead = False  # a fatal error was reported: fetch no more
        self._clock = clock or asyncio.get_running_loop().time

    def __repr__(self) -> str:
        return f"LeaderFetcher(node={self.node_id}, epoch={self.session.epoch})"

    # -- control -----------------------------------------------------------------------

    def set_partitions(self, tps: set[TopicIdPartition]) -> None:
        if set(self.session.partitions) != tps:
            self.session.set_partitions(sorted(tps))
            self._capacity.set_fetching(self.node_id, bool(tps))
            self.wake()

    def remove(self, tp: TopicIdPartition) -> None:
        self.session.remove(tp)
        self._capacity.set_fetching(self.node_id, bool(self.session.partitions))
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Fetch no more; close the session (final epoch) and return."""
        self._stopping = True
        self._capacity.set_fetching(self.node_id, False)
        self.wake()

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._wake.clear()
            if self._stopping:
                await self._close_session()
                return
            delay = await self._turn()
            if delay is None or delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def _turn(self) -> float | None:
        """Send at most one request; returns how long to sleep (None: until woken)."""
        now = self._clock()
        if self._dead:
            return None
        if now < self._retry_at:
            return self._retry_at - now
        tracker, node, capacity = self._tracker, self.node_id, self._capacity
        capacity.done_waiting(node)
        if tracker.has_renewals(node):
            await self._renew()
            return 0
        fetched = self.session.partitions
        due = tracker.due_at(node)
        # Acks for partitions we no longer fetch cannot ride a ShareFetch.
        if due is not None and due <= now and tracker.has_pending_outside(node, fetched):
            await self._acknowledge()
            return 0
        if due is not None and tracker.flushing and self.session.is_open:
            await self._acknowledge()
            return 0
        free = capacity.free()
        if fetched and free > 0:
            full = min(self._config.max_poll_records, capacity.share())
            # A sliver of capacity freed by a few acks waits for the linger, so one fetch
            # collects what several acks freed instead of many fetches of one record.
            if free >= full or due is None or due <= now:
                await self._fetch(capacity.reserve(min(free, self._config.max_poll_records)))
                return 0
            capacity.wait_for(node, full)  # ... unless acks free a whole fetch sooner
        if due is not None:
            if due <= now and self.session.is_open:
                await self._acknowledge()
                return 0
            if due <= now:
                # No session to carry them (it was lost before they were sent).
                snapshot = tracker.take(node)
                if snapshot is not None:
                    tracker.fail(snapshot, KafkaConnectionError("no share session with the leader"))
                return 0
            return due - now
        return None

    # -- requests ----------------------------------------------------------------------

    async def _connect(self) -> Connection | None:
        """The connection to the leader, or None after a failure (already handled).

        A new connection means the old one closed, and the broker dropped our session
        with it (releasing our records): the session restarts at epoch 0.
        """
        try:
            conn = await self._cluster.connection(self.node_id)
        except _NETWORK_ERRORS as exc:
            log.debug("node %s unreachable: %s", self.node_id, exc)
            self._conn = None
            if self.session.is_open:
                self.session.reset()
            self._session_lost(KafkaConnectionError(f"node {self.node_id} unreachable: {exc}"))
            self._retry_later(refresh=True)
            # The leader may be gone for good (a killed broker is fenced and its partitions get
            # new leaders): placement looks them up again instead of this fetcher retrying a
            # dead node forever.  Found on a real 3-broker Kafka with one broker SIGKILLed.
            for tp in list(self.session.partitions):
                self._host.misplaced(tp)
            return None
        if conn is not self._conn:
            if self._conn is not None and self.session.is_open:
                self.session.reset()
                self._session_lost(KafkaConnectionError(f"connection to node {self.node_id} was lost"))
            self._conn = conn
        return conn

    async def _exchange(
        self,
        conn: Connection,
        request: ApiMessage,
        version: int,
        limit: float,
        acks: _Snapshot | RenewRequest | None,
    ) -> ApiMessage | None:
        """Send one session request; on no answer, fail its acks and reset the session."""
        try:
            return await conn.send(request, version, timeout=limit)
        except BaseException as exc:
            self._failed(self.session.on_failure(), acks, exc, type(request).__name__)
            if isinstance(exc, _NETWORK_ERRORS):
                log.debug("%s to node %s failed: %s", type(request).__name__, self.node_id, exc)
                self._retry_later(refresh=isinstance(exc, KafkaConnectionError))
                return None
            raise

    async def _fetch(self, max_records: int) -> None:
        try:
            response, acks, sent_at = await self._send_fetch(max_records)
        finally:
            self._capacity.unreserve(max_records)
        if response is not None:
            self._on_fetch_response(response, acks, sent_at)

    async def _send_fetch(
        self, max_records: int
    ) -> tuple[ShareFetchResponse | None, _Snapshot | None, float]:
        cfg = self._config
        conn = await self._connect()
        if conn is None:
            return None, None, 0.0
        try:
            version = conn.version_for(ShareFetchRequest.API_KEY)
            if cfg.acquire_mode is AcquireMode.RECORD_LIMIT and version < _RECORD_LIMIT_MIN_VERSION:
                raise UnsupportedVersionError(
                    f"acquire_mode='record_limit' needs ShareFetch v2 (Kafka 4.2); node "
                    f"{self.node_id} offers v{version}"
                )
        except UnsupportedVersionError as exc:
            self._fatal(exc)
            return None, None, 0.0
        acks = self._tracker.take(self.node_id, self.session.partitions) if self.session.is_open else None
        params = FetchParams(
            max_wait_ms=cfg.max_wait_ms,
            min_bytes=cfg.min_bytes,
            max_bytes=cfg.max_bytes,
            max_records=max_records,
            batch_size=max_records,
            acquire_mode=cfg.acquire_mode,
        )
        data = self.session.build_fetch(params, acks.batches if acks is not None else None)
        sent_at = self._clock()
        timeout = cfg.request_timeout + cfg.max_wait_ms / 1000
        response = await self._exchange(conn, fetch_request(data), version, timeout, acks)
        assert response is None or isinstance(response, ShareFetchResponse)
        return response, acks, sent_at

    def _on_fetch_response(
        self, response: ShareFetchResponse, acks: _Snapshot | None, sent_at: float
    ) -> None:
        outcome = self.session.on_response(response.error_code)
        if acks is not None:
            if outcome.acks_failed:
                self._tracker.fail(acks, error_for_code(response.error_code, response.error_message))
            else:
                codes, messages = {}, {}
                for topic in response.responses:
                    for pd in topic.partitions:
                        tp = TopicIdPartition(topic.topic_id, pd.partition_index)
                        codes[tp] = pd.acknowledge_error_code
                        messages[tp] = pd.acknowledge_error_message
                self._tracker.complete(acks, codes, messages)
        if outcome.error_code:
            self._top_level_error(outcome, response.error_message)
            return
        self._backoff.reset()
        lock_ms = response.acquisition_lock_timeout_ms
        deadline = sent_at + lock_ms / 1000 - _LOCK_CLOCK_SLACK if lock_ms > 0 else math.inf
        fetched = set(self.session.partitions)
        delivered: list[Message] = []
        added = False
        now = self._clock()
        for topic in response.responses:
            for pd in topic.partitions:
                tp = TopicIdPartition(topic.topic_id, pd.partition_index)
                if pd.error_code:
                    self._partition_error(tp, pd.error_code, pd.error_message)
                if pd.acquired_records:
                    added = True
                    self._take_acquired(tp, pd, deadline, now, tp in fetched, delivered)
        if added:
            self._host.leases_added(lock_ms)
        if delivered:
            self._host.deliver(delivered)

    def _take_acquired(
        self,
        tp: TopicIdPartition,
        pd: ShareFetchResponse.PartitionData,
        deadline: float,
        now: float,
        wanted: bool,
        out: list[Message],
    ) -> None:
        tracker = self._tracker
        tracker.routes[tp] = self.node_id
        ranges: list[Acquired] = []
        superseded: list[ExpiredRange] = []
        for a in pd.acquired_records:
            dc = a.delivery_count
            spans, old = tracker.take_acquired(tp, a.first_offset, a.last_offset, dc, deadline, now)
            ranges.extend(Acquired(lo, hi, dc) for lo, hi in spans)
            superseded.extend(old)
        if superseded:
            # Their deliveries are over: the application hears it as for any lock expiry.
            self._host.leases_expired(superseded)
        if not ranges:
            return
        if not wanted:
            # Revoked while the fetch was in flight: give the records straight back.
            for r in ranges:
                tracker.settle_range(tp, r.first, r.last, AckType.RELEASE)
            return
        try:
            unpacked = unpack_partition(pd.records, ranges)
        except UnsupportedCompressionTypeError as exc:
            # No codec here for these batches: give them back once (another member may read
            # them) and stop, rather than burn a delivery attempt per fetch.
            for r in ranges:
                tracker.settle_range(tp, r.first, r.last, AckType.RELEASE)
            self._fatal(UnsupportedCompressionTypeError(f"{self._name(tp)}: {exc}"))
            return
        if unpacked.corrupt is not None:
            log.warning(
                "group %s, %s: a record batch failed its checks (%s); rejecting offsets %s, as "
                "Kafka's Java client does%s",
                self._config.group_id,
                self._name(tp),
                unpacked.corrupt,
                ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in unpacked.rejects) or "-",
                "; releasing the rest of the response" if unpacked.releases else "",
            )
        for first, last in unpacked.rejects:
            tracker.settle_range(tp, first, last, AckType.REJECT)
        for first, last in unpacked.gaps:
            tracker.settle_range(tp, first, last, AckType.GAP)
        for first, last in unpacked.releases:
            tracker.settle_range(tp, first, last, AckType.RELEASE)
        if unpacked.runs:
            self._host.make_messages(tp, unpacked.runs, deadline, out)

    async def _renew(self) -> None:
        tracker, node = self._tracker, self.node_id
        conn = await self._connect()
        if conn is None or not self.session.is_open:
            tracker.fail_renewals(node, KafkaConnectionError(f"no share session with node {node}"))
            return
        version = conn.version_for(ShareAcknowledgeRequest.API_KEY)
        if version < _RENEW_MIN_VERSION:
            tracker.fail_renewals(
                node,
                RenewUnsupportedError(
                    f"RENEW needs ShareAcknowledge v2 (Kafka 4.2+); node {node} offers v{version}"
                ),
            )
            return
        # Checked against the leases now, as it is sent: see AckTracker.take_renewals.
        request = tracker.take_renewals(node)
        if request is None:
            return
        data = self.session.build_acknowledge(request.batches, renew=True)
        sent_at = self._clock()
        response = await self._exchange(
            conn, acknowledge_request(data), version, self._config.request_timeout, request
        )
        if response is None:
            return
        assert isinstance(response, ShareAcknowledgeResponse)
        outcome = self.session.on_response(response.error_code)
        if outcome.acks_failed:
            tracker.fail(request, error_for_code(response.error_code, response.error_message))
        else:
            codes, messages = self._partition_results(response)
            lock_ms = response.acquisition_lock_timeout_ms
            deadline = sent_at + lock_ms / 1000 - _LOCK_CLOCK_SLACK if lock_ms > 0 else None
            tracker.complete_renewals(request, codes, messages, deadline)
            if deadline is not None:
                self._host.leases_added(lock_ms)
        if outcome.error_code:
            self._top_level_error(outcome, response.error_message)

    async def _acknowledge(self) -> None:
        tracker = self._tracker
        conn = await self._connect()
        snapshot = tracker.take(self.node_id)
        if snapshot is None:
            return
        if conn is None or not self.session.is_open:
            tracker.fail(snapshot, KafkaConnectionError(f"no share session with node {self.node_id}"))
            return
        version = conn.version_for(ShareAcknowledgeRequest.API_KEY)
        data = self.session.build_acknowledge(snapshot.batches)
        response = await self._exchange(
            conn, acknowledge_request(data), version, self._config.request_timeout, snapshot
        )
        if response is None:
            return
        assert isinstance(response, ShareAcknowledgeResponse)
        outcome = self.session.on_response(response.error_code)
        if outcome.acks_failed:
            tracker.fail(snapshot, error_for_code(response.error_code, response.error_message))
        else:
            codes, messages = self._partition_results(response)
            tracker.complete(snapshot, codes, messages)
        if outcome.error_code:
            self._top_level_error(outcome, response.error_message)

    def _partition_results(
        self, response: ShareAcknowledgeResponse
    ) -> tuple[dict[TopicIdPartition, int], dict[TopicIdPartition, str | None]]:
        codes: dict[TopicIdPartition, int] = {}
        messages: dict[TopicIdPartition, str | None] = {}
        for topic in response.responses:
            for pd in topic.partitions:
                tp = TopicIdPartition(topic.topic_id, pd.partition_index)
                codes[tp] = pd.error_code
                messages[tp] = pd.error_message
                if pd.error_code in _MOVED:
                    self._host.misplaced(tp)
        return codes, messages

    async def _close_session(self) -> None:
        """Final epoch: last acks, then the broker releases what we still hold."""
        tracker = self._tracker
        tracker.fail_renewals(self.node_id, IllegalStateError("the consumer is closing"))
        conn = await self._connect() if self.session.is_open else None
        snapshot = tracker.take(self.node_id)
        data = self.session.build_close(snapshot.batches if snapshot is not None else None)
        if conn is None or data is None:
            if snapshot is not None:
                tracker.fail(snapshot, KafkaConnectionError(f"no share session with node {self.node_id}"))
            return
        version = conn.version_for(ShareAcknowledgeRequest.API_KEY)
        response = await self._exchange(
            conn, acknowledge_request(data), version, self._config.request_timeout, snapshot
        )
        if response is None:
            return
        assert isinstance(response, ShareAcknowledgeResponse)
        self.session.on_response(response.error_code)
        if snapshot is None:
            return
        if response.error_code:
            tracker.fail(snapshot, error_for_code(response.error_code, response.error_message))
            return
        codes: dict[TopicIdPartition, int] = {}
        messages: dict[TopicIdPartition, str | None] = {}
        for topic in response.responses:
            for pd in topic.partitions:
                tp = TopicIdPartition(topic.topic_id, pd.partition_index)
                codes[tp] = pd.error_code
                messages[tp] = pd.error_message
        tracker.complete(snapshot, codes, messages)

    # -- failures ----------------------------------------------------------------------

    def _name(self, tp: TopicIdPartition) -> str:
        """``topic-partition`` for logs and errors, by name when metadata has it."""
        topic = self._cluster.topic(tp.topic_id)
        return f"{topic.name if topic is not None else tp.topic_id}-{tp.partition}"

    def _fatal(self, exc: BaseException) -> None:
        self._dead = True
        self._host.fatal(exc)

    def _retry_later(self, *, refresh: bool) -> None:
        self._retry_at = self._clock() + self._backoff.next_delay()
        if refresh:
            # The broker may be gone for good; the partitions may have moved.
            self._cluster.request_refresh()

    def _failed(
        self, outcome: SessionOutcome, acks: _Snapshot | RenewRequest | None, exc: BaseException, what: str
    ) -> None:
        """The request got no answer: the broker dropped our session with the connection."""
        if acks is not None:
            self._tracker.fail(acks, self._unanswered(what, exc))
        self._session_lost(KafkaConnectionError(f"share session with node {self.node_id} lost: {exc}"))

    def _unanswered(self, what: str, exc: BaseException) -> BaseException:
        """What the acks of a request that got no answer failed with.

        Not written at all (the connection was already dead): the broker never saw them, a
        plain failure.  Written and then the connection died, the request timed out or was
        abandoned: the broker may have applied them - AckInDoubtError.  An answer that could
        not be read is reported as it is.
        """
        if isinstance(exc, RequestNotSentError):
            return exc
        if isinstance(exc, KafkaError) and not isinstance(exc, _NETWORK_ERRORS):
            return exc
        doubt = AckInDoubtError(
            f"{what} to node {self.node_id} was sent but not answered ({exc!r}): "
            "the broker may or may not have applied these acknowledgements"
        )
        doubt.__cause__ = exc
        return doubt

    def _session_lost(self, exc: BaseException) -> None:
        tps = self._tracker.partitions_of(self.node_id)
        if tps:
            self._tracker.abandon(tps, exc)
            self._host.records_lost(tps)

    def _top_level_error(self, outcome: SessionOutcome, message: str | None) -> None:
        exc = error_for_code(outcome.error_code, message)
        if outcome.reset:
            # SHARE_SESSION_NOT_FOUND / INVALID_SHARE_SESSION_EPOCH / LIMIT_REACHED: reopen.
            log.info("node %s: %s; reopening the share session", self.node_id, exc)
            self._session_lost(exc)
            if outcome.error_code == ErrorCode.SHARE_SESSION_LIMIT_REACHED:
                self._retry_at = self._clock() + self._backoff.next_delay()
            return
        if not exc.retriable:
            self._fatal(exc)
            return
        log.info("node %s: %s; retrying", self.node_id, exc)
        self._retry_at = self._clock() + self._backoff.next_delay()

    def _partition_error(self, tp: TopicIdPartition, code: int, message: str | None) -> None:
        if code in _MOVED:
            self._host.misplaced(tp)
        elif code in _FATAL_PARTITION:
            if code == ErrorCode.TOPIC_AUTHORIZATION_FAILED:
                # Kafka sends no ErrorMessage with it: name the topic, as Java's client does.
                topic = self._cluster.topic(tp.topic_id)
                name = topic.name if topic is not None else str(tp.topic_id)
                message = topics_not_authorized([name], message)
            self._fatal(error_for_code(code, message))
        else:
            exc: BrokerError = error_for_code(code, message)
            log.warning("node %s, %s: %s", self.node_id, tp, exc)
