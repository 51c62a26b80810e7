"""One leader's share session as a state machine (sans-IO): what to send next, what an answer means.

A ``LeaderSession`` owns the ``ShareSessionState`` for one broker; the broker checks every
request's session epoch against the one it expects, so one request at a time, in this
order of precedence (``next_request``):

1. pending RENEWs → a renew-only request (promptly: someone awaits it; a RENEW recorded
   while a long-polling ShareFetch is out goes right after it, so within ``MaxWaitMs``);
2. acks for partitions this session no longer fetches → a standalone ShareAcknowledge;
3. free capacity → a ShareFetch asking for at most that many records, carrying the
   pending acks of the fetched partitions (except a long poll to a leader whose last fetch
   brought nothing: its acks go first, in a ShareAcknowledge);
4. acks older than the linger (capacity full, so no fetch is due) → ShareAcknowledge;
5. otherwise: a delay, or None (nothing until an input changes).

It reads no clock and does no I/O: the shell (``fetcher.LeaderFetcher``) passes the time in,
connects, sends what ``build`` returns and reports the answer (``answered``) or its absence
(``unanswered``), a failed connection (``connection_failed``) or a new one
(``connection_replaced``).  What the consumer must act on comes out as events
(``take_events``): records delivered, partitions misplaced, records lost with the session,
the lock duration the broker reported, locks that ended, a fatal error, a metadata refresh.
The acks, leases and capacity it works on are sans-IO objects too (AckTracker, LeaseTable,
Capacity).
"""

from __future__ import annotations

import enum
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aioshare.client.backoff import Backoff
from aioshare.client.connection import RequestNotSentError
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
from aioshare.protocol.record_reader import RecordFields
from aioshare.protocol.types import AckType, AcquireMode, TopicIdPartition
from aioshare.share.ack_tracker import AckInDoubtError, AckTracker, RenewRequest
from aioshare.share.acks import AckSnapshot
from aioshare.share.buffer import ReadyBuffer
from aioshare.share.capacity import Capacity
from aioshare.share.delivery import Acquired, unpack_partition
from aioshare.share.leases import ExpiredRange
from aioshare.share.membership import topics_not_authorized
from aioshare.share.session import FetchParams, SessionOutcome, ShareSessionState
from aioshare.share.wire import acknowledge_request, fetch_request

__all__ = [
    "NETWORK_ERRORS",
    "Delivered",
    "FetchConfig",
    "FetchEvent",
    "Kind",
    "LeaderSession",
    "LockDuration",
    "LocksEnded",
    "Misplaced",
    "Outgoing",
    "RecordsLost",
    "RefreshMetadata",
    "RenewUnsupportedError",
    "SessionFailed",
    "Turn",
    "unanswered_error",
]

log = logging.getLogger(__name__)

_RENEW_MIN_VERSION = 2  # ShareAcknowledge/ShareFetch v2 (Kafka 4.2, KIP-1222)
_RECORD_LIMIT_MIN_VERSION = 2  # ShareFetch v2 ShareAcquireMode (KIP-1206)
NETWORK_ERRORS = (KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable)
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
VersionOf = Callable[[int], int]  # API key -> the version the connection negotiated
# Buffers a partition's acquired runs of records, locked until the deadline (the consumer's
# _make_messages: the ranges carry its DeliveryContext and lease hints).
MessageFactory = Callable[
    [TopicIdPartition, list[tuple[Acquired, list[RecordFields]]], float, ReadyBuffer], None
]


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
    # acquire_mode="auto": RECORD_LIMIT where the leader serves ShareFetch v2, batch-optimized
    # elsewhere (instead of failing).
    record_limit_if_served: bool = False


# -- events: what the consumer must act on ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    """Records acquired for the application, in offset order per partition, by a fetch
    that asked for ``asked`` records and was answered ``round_trip`` seconds after it was sent."""

    records: ReadyBuffer  # handed out as Messages one by one (buffer.py)
    asked: int
    round_trip: float


@dataclass(frozen=True, slots=True)
class Misplaced:
    """This leader does not (or no longer) lead ``tp``: find its leader again."""

    tp: TopicIdPartition


@dataclass(frozen=True, slots=True)
class RecordsLost:
    """The session holding these partitions' records ended: the records are not ours any more."""

    tps: list[TopicIdPartition]


@dataclass(frozen=True, slots=True)
class LockDuration:
    """Records were acquired (or renewed) under locks of this many milliseconds."""

    lock_ms: int


@dataclass(frozen=True, slots=True)
class LocksEnded:
    """Deliveries whose locks ended before they were settled (a newer delivery replaced them)."""

    ranges: list[ExpiredRange]


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """An error retrying cannot fix: this session fetches no more."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class RefreshMetadata:
    """The broker may be gone or partitions may have moved: look the cluster up again."""


FetchEvent = Delivered | Misplaced | RecordsLost | LockDuration | LocksEnded | SessionFailed | RefreshMetadata


# -- what to send ----------------------------------------------------------------------


class Kind(enum.Enum):
    FETCH = "ShareFetch"
    ACKNOWLEDGE = "ShareAcknowledge"
    RENEW = "ShareAcknowledge (renew)"
    CLOSE = "ShareAcknowledge (final epoch)"


@dataclass(slots=True)
class Turn:
    """A request ``next_request`` chose; ``reserved`` records of capacity are held for a fetch
    until its answer (or its absence) comes back (``speculative``: to a leader whose last
    fetch brought nothing, see ``Capacity.free``; ``long_poll``: a caller waits for it, so
    it may wait ``MaxWaitMs`` for records)."""

    kind: Kind
    reserved: int = 0
    speculative: bool = False
    long_poll: bool = True


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request ready to send, and what its answer settles."""

    turn: Turn
    request: ApiMessage
    version: int
    timeout: float
    acks: _Snapshot | RenewRequest | None
    sent_at: float


def unanswered_error(what: str, node_id: int, exc: BaseException) -> BaseException:
    """What the acks of a request that got no answer failed with.

    Not written at all (the connection was already dead): the broker never saw them, a
    plain failure.  Written and then the connection died, the request timed out or was
    abandoned: the broker may have applied them - AckInDoubtError.  An answer that could
    not be read is reported as it is.
    """
    if isinstance(exc, RequestNotSentError):
        return exc
    if isinstance(exc, KafkaError) and not isinstance(exc, NETWORK_ERRORS):
        return exc
    doubt = AckInDoubtError(
        f"{what} to node {node_id} was sent but not answered ({exc!r}): "
        "the broker may or may not have applied these acknowledgements"
    )
    doubt.__cause__ = exc
    return doubt


class LeaderSession:
    def __init__(
        self,
        node_id: int,
        *,
        config: FetchConfig,
        tracker: AckTracker,
        capacity: Capacity,
        make_messages: MessageFactory,
        topic_name: Callable[[uuid.UUID], str | None],
    ) -> None:
        self.node_id = node_id
        self.session = ShareSessionState(config.group_id, config.member_id, node_id)
        self._config = config
        self._tracker = tracker
        self._capacity = capacity
        self._make_messages = make_messages
        self._topic_name = topic_name
        self._backoff = Backoff()
        self._retry_at = 0.0
        self._dead = False  # a fatal error was reported: fetch no more
        self._fetched_nothing = False  # the last fetch answered acquired no records
        self._events: list[FetchEvent] = []

    def __repr__(self) -> str:
        return f"LeaderSession(node={self.node_id}, epoch={self.session.epoch})"

    def take_events(self) -> list[FetchEvent]:
        events, self._events = self._events, []
        return events

    # -- partitions --------------------------------------------------------------------

    def set_partitions(self, tps: set[TopicIdPartition]) -> bool:
        """Fetch ``tps`` from now on; True if that changed anything."""
        if set(self.session.partitions) == tps:
            return False
        self.session.set_partitions(sorted(tps))
        self._capacity.set_fetching(self.node_id, bool(tps))
        return True

    def remove(self, tp: TopicIdPartition) -> None:
        self.session.remove(tp)
        self._capacity.set_fetching(self.node_id, bool(self.session.partitions))

    def stop_fetching(self) -> None:
        self._capacity.set_fetching(self.node_id, False)

    # -- choosing ----------------------------------------------------------------------

    def next_request(self, now: float) -> Turn | float | None:
        """The request to send now, or how long until one may be due (None: until an input)."""
        if self._dead:
            return None
        if now < self._retry_at:
            return self._retry_at - now
        tracker, node, capacity = self._tracker, self.node_id, self._capacity
        capacity.done_waiting(node)
        if tracker.has_renewals(node):
            return Turn(Kind.RENEW)
        fetched = self.session.partitions
        due = tracker.due_at(node)
        # Acks for partitions we no longer fetch cannot ride a ShareFetch.
        if due is not None and due <= now and tracker.has_pending_outside(node, fetched):
            return Turn(Kind.ACKNOWLEDGE)
        if due is not None and tracker.flushing and self.session.is_open:
            return Turn(Kind.ACKNOWLEDGE)
        free = capacity.free()
        waiting = capacity.callers_waiting()
        # A fetch ahead (nobody waits for it) does not long-poll: a request on a connection
        # holds back the next, so the acks a commit() waits for - and on real Kafka the acks
        # that would open a full partition window - would wait out its MaxWaitMs behind it.
        # After one came back empty, fetching ahead waits for a caller (no spinning).
        if fetched and free > 0 and (waiting or not self._fetched_nothing):
            full = min(self._config.max_poll_records, capacity.share())
            # A sliver of capacity freed by a few acks waits for the linger, so one fetch
            # collects what several acks freed instead of many fetches of one record.
            if free >= full or due is None or due <= now:
                # As much as the demand wants (more than a batch while the application
                # outpaces round trips: demand.py), within the ceiling and this leader's share.
                idle = self._fetched_nothing
                if idle and waiting and due is not None and self.session.is_open:
                    # This long poll will likely wait out MaxWaitMs (the leader had nothing):
                    # acks riding it would wait as long, and a commit() with them.  They go
                    # first, on their own.
                    return Turn(Kind.ACKNOWLEDGE)
                return Turn(Kind.FETCH, capacity.reserve(free, speculative=idle), idle, waiting)
            capacity.wait_for(node, full)  # ... unless acks free a whole fetch sooner
        if due is not None:
            if due <= now and self.session.is_open:
                return Turn(Kind.ACKNOWLEDGE)
            if due <= now:
                # No session to carry them (it was lost before they were sent).
                snapshot = tracker.take(node)
                if snapshot is not None:
                    tracker.fail(snapshot, KafkaConnectionError("no share session with the leader"))
                return 0.0
            return due - now
        return None

    def closing(self) -> Turn | None:
        """Stop: the final-epoch request to send (last acks; the broker releases the rest),
        or None when there is no session to close."""
        self.stop_fetching()
        self._tracker.fail_renewals(self.node_id, IllegalStateError("the consumer is closing"))
        return Turn(Kind.CLOSE) if self.session.is_open else None

    def release(self, turn: Turn) -> None:
        """The turn is over (answered, failed or abandoned): return its capacity reservation."""
        if turn.reserved:
            reserved, turn.reserved = turn.reserved, 0
            self._capacity.unreserve(reserved, speculative=turn.speculative)

    # -- connections -------------------------------------------------------------------

    def connection_failed(self, exc: BaseException, now: float) -> None:
        """The leader could not be reached."""
        log.debug("node %s unreachable: %s", self.node_id, exc)
        if self.session.is_open:
            self.session.reset()
        self._session_lost(KafkaConnectionError(f"node {self.node_id} unreachable: {exc}"))
        self._retry_later(now, refresh=True)
        # The leader may be gone for good (a killed broker is fenced and its partitions get
        # new leaders): placement looks them up again instead of this session retrying a
        # dead node forever.  Found on a real 3-broker Kafka with one broker SIGKILLed.
        self._events.extend(Misplaced(tp) for tp in self.session.partitions)

    def connection_replaced(self) -> None:
        """A new connection: the old one closed, and the broker dropped our session with it
        (releasing our records); the session restarts at epoch 0."""
        if self.session.is_open:
            self.session.reset()
            self._session_lost(KafkaConnectionError(f"connection to node {self.node_id} was lost"))

    # -- building ----------------------------------------------------------------------

    def build(self, turn: Turn, version_of: VersionOf | None, now: float) -> Outgoing | None:
        """The request for ``turn`` on a connection that speaks ``version_of`` (None: no
        connection); None when there is nothing to send (what it would have carried failed)."""
        if turn.kind is Kind.FETCH:
            return self._build_fetch(turn, version_of, now)
        if turn.kind is Kind.RENEW:
            return self._build_renew(turn, version_of, now)
        tracker, node = self._tracker, self.node_id
        snapshot = tracker.take(node)
        if turn.kind is Kind.ACKNOWLEDGE and snapshot is None:
            return None
        data = None
        if version_of is not None:  # (a session is only open on a live connection)
            if turn.kind is Kind.CLOSE:
                data = self.session.build_close(snapshot.batches if snapshot is not None else None)
            elif snapshot is not None and self.session.is_open:
                data = self.session.build_acknowledge(snapshot.batches)
        if version_of is None or data is None:
            if snapshot is not None:
                tracker.fail(snapshot, KafkaConnectionError(f"no share session with node {node}"))
            return None
        version = version_of(ShareAcknowledgeRequest.API_KEY)
        timeout = self._config.request_timeout
        return Outgoing(turn, acknowledge_request(data), version, timeout, snapshot, now)

    def _build_fetch(self, turn: Turn, version_of: VersionOf | None, now: float) -> Outgoing | None:
        cfg = self._config
        if version_of is None:
            return None
        acquire_mode = cfg.acquire_mode
        try:
            version = version_of(ShareFetchRequest.API_KEY)  # raises if the leader has no ShareFetch
            if acquire_mode is AcquireMode.RECORD_LIMIT and version < _RECORD_LIMIT_MIN_VERSION:
                if cfg.record_limit_if_served:
                    acquire_mode = AcquireMode.BATCH_OPTIMIZED
                else:
                    raise UnsupportedVersionError(
                        f"acquire_mode='record_limit' needs ShareFetch v2 (Kafka 4.2); node "
                        f"{self.node_id} offers v{version}"
                    )
        except UnsupportedVersionError as exc:
            self._fatal(exc)
            return None
        acks = self._tracker.take(self.node_id, self.session.partitions) if self.session.is_open else None
        params = FetchParams(
            max_wait_ms=cfg.max_wait_ms if turn.long_poll else 0,
            min_bytes=cfg.min_bytes,
            max_bytes=cfg.max_bytes,
            max_records=turn.reserved,
            batch_size=turn.reserved,
            acquire_mode=acquire_mode,
        )
        data = self.session.build_fetch(params, acks.batches if acks is not None else None)
        timeout = cfg.request_timeout + cfg.max_wait_ms / 1000
        return Outgoing(turn, fetch_request(data), version, timeout, acks, now)

    def _build_renew(self, turn: Turn, version_of: VersionOf | None, now: float) -> Outgoing | None:
        tracker, node = self._tracker, self.node_id
        if version_of is None or not self.session.is_open:
            tracker.fail_renewals(node, KafkaConnectionError(f"no share session with node {node}"))
            return None
        version = version_of(ShareAcknowledgeRequest.API_KEY)
        if version < _RENEW_MIN_VERSION:
            tracker.fail_renewals(
                node,
                RenewUnsupportedError(
                    f"RENEW needs ShareAcknowledge v2 (Kafka 4.2+); node {node} offers v{version}"
                ),
            )
            return None
        # Checked against the leases now, as it is sent: see AckTracker.take_renewals.
        request = tracker.take_renewals(node)
        if request is None:
            return None
        data = self.session.build_acknowledge(request.batches, renew=True)
        return Outgoing(turn, acknowledge_request(data), version, self._config.request_timeout, request, now)

    # -- answers -----------------------------------------------------------------------

    def answered(self, out: Outgoing, response: ApiMessage, now: float) -> None:
        asked = out.turn.reserved
        self.release(out.turn)
        kind = out.turn.kind
        if kind is Kind.FETCH:
            assert isinstance(response, ShareFetchResponse)
            acks = out.acks
            assert acks is None or isinstance(acks, AckSnapshot)
            self._fetch_answered(response, acks, asked, out.sent_at, now)
            return
        assert isinstance(response, ShareAcknowledgeResponse)
        if kind is Kind.RENEW:
            assert isinstance(out.acks, RenewRequest)
            self._renew_answered(response, out.acks, out.sent_at, now)
        elif kind is Kind.CLOSE:
            assert out.acks is None or isinstance(out.acks, AckSnapshot)
            self._close_answered(response, out.acks)
        else:
            assert isinstance(out.acks, AckSnapshot)
            self._acknowledge_answered(response, out.acks, now)

    def unanswered(self, out: Outgoing, exc: BaseException, now: float) -> bool:
        """The request got no answer: the broker dropped our session with the connection.
        True when it is a network failure handled here (retried later); False when the
        shell must re-raise ``exc`` (a bug, or a cancellation)."""
        self.release(out.turn)
        self.session.on_failure()
        if out.acks is not None:
            self._tracker.fail(out.acks, unanswered_error(type(out.request).__name__, self.node_id, exc))
        self._session_lost(KafkaConnectionError(f"share session with node {self.node_id} lost: {exc}"))
        if not isinstance(exc, NETWORK_ERRORS):
            return False
        log.debug("%s to node %s failed: %s", type(out.request).__name__, self.node_id, exc)
        self._retry_later(now, refresh=isinstance(exc, KafkaConnectionError))
        return True

    def _fetch_answered(
        self, response: ShareFetchResponse, acks: _Snapshot | None, asked: int, sent_at: float, now: float
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
            self._top_level_error(outcome, response.error_message, now)
            return
        self._backoff.reset()
        lock_ms = response.acquisition_lock_timeout_ms
        deadline = sent_at + lock_ms / 1000 - _LOCK_CLOCK_SLACK if lock_ms > 0 else math.inf
        fetched = set(self.session.partitions)
        delivered = ReadyBuffer()
        added = False
        for topic in response.responses:
            for pd in topic.partitions:
                tp = TopicIdPartition(topic.topic_id, pd.partition_index)
                if pd.error_code:
                    self._partition_error(tp, pd.error_code, pd.error_message)
                if pd.acquired_records:
                    added = True
                    self._take_acquired(tp, pd, deadline, now, tp in fetched, delivered)
        self._fetched_nothing = not added
        if added:
            self._events.append(LockDuration(lock_ms))
        if delivered:
            self._events.append(Delivered(delivered, asked, now - sent_at))

    def _take_acquired(
        self,
        tp: TopicIdPartition,
        pd: ShareFetchResponse.PartitionData,
        deadline: float,
        now: float,
        wanted: bool,
        out: ReadyBuffer,
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
            self._events.append(LocksEnded(superseded))
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
            self._make_messages(tp, unpacked.runs, deadline, out)

    def _renew_answered(
        self, response: ShareAcknowledgeResponse, request: RenewRequest, sent_at: float, now: float
    ) -> None:
        tracker = self._tracker
        outcome = self.session.on_response(response.error_code)
        if outcome.acks_failed:
            tracker.fail(request, error_for_code(response.error_code, response.error_message))
        else:
            codes, messages = self._partition_results(response)
            lock_ms = response.acquisition_lock_timeout_ms
            deadline = sent_at + lock_ms / 1000 - _LOCK_CLOCK_SLACK if lock_ms > 0 else None
            tracker.complete_renewals(request, codes, messages, deadline)
            if deadline is not None:
                self._events.append(LockDuration(lock_ms))
        if outcome.error_code:
            self._top_level_error(outcome, response.error_message, now)

    def _acknowledge_answered(
        self, response: ShareAcknowledgeResponse, snapshot: _Snapshot, now: float
    ) -> None:
        outcome = self.session.on_response(response.error_code)
        if outcome.acks_failed:
            self._tracker.fail(snapshot, error_for_code(response.error_code, response.error_message))
        else:
            codes, messages = self._partition_results(response)
            self._tracker.complete(snapshot, codes, messages)
        if outcome.error_code:
            self._top_level_error(outcome, response.error_message, now)

    def _close_answered(self, response: ShareAcknowledgeResponse, snapshot: _Snapshot | None) -> None:
        self.session.on_response(response.error_code)
        if snapshot is None:
            return
        if response.error_code:
            self._tracker.fail(snapshot, error_for_code(response.error_code, response.error_message))
            return
        codes: dict[TopicIdPartition, int] = {}
        messages: dict[TopicIdPartition, str | None] = {}
        for topic in response.responses:
            for pd in topic.partitions:
                tp = TopicIdPartition(topic.topic_id, pd.partition_index)
                codes[tp] = pd.error_code
                messages[tp] = pd.error_message
        self._tracker.complete(snapshot, codes, messages)

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
                    self._events.append(Misplaced(tp))
        return codes, messages

    # -- failures ----------------------------------------------------------------------

    def _name(self, tp: TopicIdPartition) -> str:
        """``topic-partition`` for logs and errors, by name when metadata has it."""
        name = self._topic_name(tp.topic_id)
        return f"{name if name is not None else tp.topic_id}-{tp.partition}"

    def _fatal(self, exc: BaseException) -> None:
        self._dead = True
        self._events.append(SessionFailed(exc))

    def _retry_later(self, now: float, *, refresh: bool) -> None:
        self._retry_at = now + self._backoff.next_delay()
        if refresh:
            # The broker may be gone for good; the partitions may have moved.
            self._events.append(RefreshMetadata())

    def _session_lost(self, exc: BaseException) -> None:
        tps = self._tracker.partitions_of(self.node_id)
        if tps:
            self._tracker.abandon(tps, exc)
            self._events.append(RecordsLost(tps))

    def _top_level_error(self, outcome: SessionOutcome, message: str | None, now: float) -> None:
        exc = error_for_code(outcome.error_code, message)
        if outcome.reset:
            # SHARE_SESSION_NOT_FOUND / INVALID_SHARE_SESSION_EPOCH / LIMIT_REACHED: reopen.
            log.info("node %s: %s; reopening the share session", self.node_id, exc)
            self._session_lost(exc)
            if outcome.error_code == ErrorCode.SHARE_SESSION_LIMIT_REACHED:
                self._retry_at = now + self._backoff.next_delay()
            return
        if not exc.retriable:
            self._fatal(exc)
            return
        log.info("node %s: %s; retrying", self.node_id, exc)
        self._retry_at = now + self._backoff.next_delay()

    def _partition_error(self, tp: TopicIdPartition, code: int, message: str | None) -> None:
        if code in _MOVED:
            self._events.append(Misplaced(tp))
        elif code in _FATAL_PARTITION:
            if code == ErrorCode.TOPIC_AUTHORIZATION_FAILED:
                # Kafka sends no ErrorMessage with it: name the topic, as Java's client does.
                name = self._topic_name(tp.topic_id)
                message = topics_not_authorized([name if name is not None else str(tp.topic_id)], message)
            self._fatal(error_for_code(code, message))
        else:
            exc: BrokerError = error_for_code(code, message)
            log.warning("node %s, %s: %s", self.node_id, tp, exc)
