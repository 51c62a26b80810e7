"""The share-partition state machine (semantics doc, section 4): sans-IO, per-range state.

One ``SharePartition`` exists per (group, topic-partition) on the partition leader. It knows
nothing about record bytes: the caller reads the log from ``next_fetch_offset()`` and hands
over the log batches it read as ``(base_offset, last_offset)`` pairs; the partition answers
which offsets were acquired (``AcquiredRecords``) and which log range to send back.

In-flight state is a sorted list of ``_Run`` entries, each a contiguous offset range with one
state, delivery count, holder and acquisition lock. Runs are split only where these differ
and merged back when they agree, so a 500-record batch that is acquired and accepted as a
unit costs one entry. Every run also remembers the in-flight batch it belongs to (Kafka's
``InFlightBatch``): acquisition reports and throttles per in-flight batch like Kafka does.

Acquisition locks live in one heap per partition, ``(deadline, lock id)``, invalidated
lazily: a lock whose records were all acknowledged simply has no live entry any more.
The shell calls ``next_deadline()`` and ``expire_locks(now_ms)``; time is always passed in.

Deliberate differences from Kafka's SharePartition are marked "Deviation:" with the reason.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import msgspec

from aioshare.broker import _codes
from aioshare.broker.config import AutoOffsetReset
from aioshare.protocol.errors import OffsetNotAvailableError
from aioshare.protocol.types import AckType, AcquireMode, RecordState

_TERMINAL = (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)
_NO_MEMBER = ""
_NO_LOCK = 0
# Kafka never throttles below this many deliveries (SharePartition.MINIMUM_THROTTLE_RECORDS_DELIVERY_LIMIT).
_MIN_THROTTLE_DELIVERY_LIMIT = 2


# --------------------------------------------------------------------------------------
# Public value types


class AckBatch(NamedTuple):
    """One AcknowledgementBatch: either one type for the whole range or one type per offset."""

    first_offset: int
    last_offset: int
    ack_types: Sequence[int]


class AcquiredRange(NamedTuple):
    """One ShareFetch ``AcquiredRecords`` entry."""

    first_offset: int
    last_offset: int
    delivery_count: int


class InFlightRange(NamedTuple):
    """Read-only view of one in-flight run (for DescribeShareGroupOffsets-style tooling and tests)."""

    first_offset: int
    last_offset: int
    state: RecordState
    delivery_count: int
    member_id: str | None
    lock_deadline_ms: int | None


@dataclasses.dataclass(slots=True)
class AcquireResult:
    acquired: list[AcquiredRange]
    # Number of offsets acquired, as Kafka counts them against the request's MaxRecords.
    count: int
    # Log offsets the response must carry: whole log batches overlapping this range.
    read_range: tuple[int, int] | None
    # Something the share coordinator should persist changed (archived stale/aborted records).
    state_changed: bool


class DeadLetter(NamedTuple):
    """Records ARCHIVED for a reason KIP-1191 dead-letters (a group with a DLQ topic, Kafka 4.4):
    REJECTed by the client, or out of deliveries. Kafka moves them through ARCHIVING while its
    DLQ manager writes them; the embedded broker writes them before it persists the state."""

    first_offset: int
    last_offset: int
    delivery_count: int
    # ShareGroupDLQManager's causes; the DLQ record's __dlq.errors.message header.
    cause: str


CLIENT_REJECT = "Offset rejected by client."
DELIVERY_COUNT_EXCEEDED = "Offset delivery count exceeded the threshold."


@dataclasses.dataclass(slots=True)
class AckResult:
    error_code: int = _codes.NONE
    error_message: str | None = None
    # A non-RENEW transition or a start-offset move happened: persist a snapshot.
    state_changed: bool = False
    # Records became AVAILABLE again (RELEASE): waiting fetches may now succeed.
    records_released: bool = False


@dataclasses.dataclass(slots=True)
class ChangeResult:
    """Outcome of lock expiry, member release or a log-start move."""

    offsets_changed: int = 0
    records_released: bool = False
    state_changed: bool = False


class PersistedBatch(msgspec.Struct, frozen=True, array_like=True):
    """A ShareSnapshot ``StateBatch``: delivery_state is AVAILABLE, ACKNOWLEDGED or ARCHIVED."""

    first_offset: int
    last_offset: int
    delivery_state: int
    delivery_count: int


class PersistedState(msgspec.Struct, frozen=True):
    """The durable part of a share-partition (ShareSnapshotValue, section 6)."""

    state_epoch: int
    start_offset: int
    batches: list[PersistedBatch] = msgspec.field(default_factory=list)
    delivery_complete_count: int = 0
    leader_epoch: int = 0


class InvalidPersistedStateError(ValueError):
    """Persisted state contradicts itself (Kafka marks the share-partition FAILED)."""


# --------------------------------------------------------------------------------------
# Internal structures


class _Run:
    """A contiguous offset range with uniform state inside one in-flight batch."""

    __slots__ = ("batch_first", "batch_last", "delivery_count", "first", "last", "lock", "member", "state")

    def __init__(
        self,
        first: int,
        last: int,
        state: RecordState,
        delivery_count: int,
        batch_first: int,
        batch_last: int,
        member: str = _NO_MEMBER,
        lock: int = _NO_LOCK,
    ) -> None:
        self.first = first
        self.last = last
        self.state = state
        self.delivery_count = delivery_count
        self.member = member
        self.lock = lock
        self.batch_first = batch_first
        self.batch_last = batch_last

    def size(self) -> int:
        return self.last - self.first + 1

    def tail_from(self, offset: int) -> _Run:
        tail = _Run(offset, self.last, self.state, self.delivery_count, self.batch_first, self.batch_last)
        tail.member, tail.lock = self.member, self.lock
        return tail

    def mergeable_with(self, following: _Run) -> bool:
        return (
            self.last + 1 == following.first
            and self.batch_first == following.batch_first
            and self.state == following.state
            and self.delivery_count == following.delivery_count
            and self.member == following.member
            and self.lock == following.lock
        )

    def __repr__(self) -> str:
        return f"_Run({self.first}-{self.last} {self.state.name} dc={self.delivery_count} {self.member!r})"


def _run_first(run: _Run) -> int:
    return run.first


class _Lock:
    """One acquisition lock: the records acquired (or renewed) together, with one deadline."""

    __slots__ = ("deadline", "first", "held", "last")

    def __init__(self, deadline: int, first: int, last: int) -> None:
        self.deadline = deadline
        # Span containing every run that carries this lock; expiry scans only this span.
        self.first = first
        self.last = last
        # Offsets still ACQUIRED under this lock; 0 means the lock is dead.
        self.held = 0


@dataclasses.dataclass(slots=True)
class _Acquisition:
    """Bookkeeping for one acquire() call."""

    member: str
    deadline: int
    record_limit: bool
    max_records: int
    count: int = 0
    stopped: bool = False
    pieces: list[AcquiredRange] = dataclasses.field(default_factory=list)
    # Lock of the in-flight batch being processed: one lock per batch keeps expiry scans short.
    lock: int = _NO_LOCK

    def report(self, first: int, last: int, delivery_count: int, same_batch: bool) -> None:
        if self.pieces and same_batch:
            previous = self.pieces[-1]
            if previous.last_offset + 1 == first and previous.delivery_count == delivery_count:
                self.pieces[-1] = AcquiredRange(previous.first_offset, last, delivery_count)
                return
        self.pieces.append(AcquiredRange(first, last, delivery_count))


# --------------------------------------------------------------------------------------
# Request-level acknowledgement validation (KafkaApis, section 3.5 step 5)


def validate_ack_batches(batches: Sequence[AckBatch], *, version: int, is_renew_ack: bool) -> str | None:
    """Check a partition's AcknowledgementBatches; returns an INVALID_REQUEST message or None."""
    highest_type = AckType.RENEW if version >= 2 else AckType.REJECT
    previous_last: int | None = None
    for batch in batches:
        if batch.first_offset > batch.last_offset:
            return "First offset of an acknowledgement batch is greater than its last offset."
        # Kafka's validateAcknowledgementBatches: `firstOffset < prevEndOffset`. Batches that
        # share an offset ((0, 5), (5, 6)) pass here and fail in the share-partition with
        # INVALID_RECORD_STATE, as on Kafka 4.2 and 4.4 (tests/differential).
        if previous_last is not None and batch.first_offset < previous_last:
            return "Acknowledgement batches must be in ascending order and must not overlap."
        if not batch.ack_types:
            return "Acknowledgement batch has no acknowledge types."
        if len(batch.ack_types) > 1 and len(batch.ack_types) != batch.last_offset - batch.first_offset + 1:
            return "Number of acknowledge types does not match the number of offsets in the batch."
        for ack_type in batch.ack_types:
            if not 0 <= ack_type <= highest_type:
                return f"Invalid acknowledge type: {ack_type}."
            if ack_type == AckType.RENEW and not is_renew_ack:
                return "Acknowledge type RENEW is only allowed when IsRenewAck is set."
        previous_last = batch.last_offset
    return None


# --------------------------------------------------------------------------------------


class SharePartition:
    """Leader-side state of one share-partition. All methods are synchronous and O(runs touched)."""

    def __init__(
        self,
        *,
        start_offset: int,
        max_in_flight_records: int,
        max_delivery_count: int,
        state_epoch: int = 0,
        leader_epoch: int = 0,
    ) -> None:
        self._max_in_flight = self._max_delivery = self._throttle_limit = 0
        self._renew_enabled = True
        self._dead_letter_queue = False
        self._dead_letters: list[DeadLetter] = []
        self.set_group_limits(
            max_in_flight_records=max_in_flight_records, max_delivery_count=max_delivery_count
        )
        self.state_epoch = state_epoch
        self.leader_epoch = leader_epoch
        self._start = start_offset
        # Kafka's endOffset: the last cached offset, or the next offset to fetch when the cache is empty.
        self._end = start_offset
        self._runs: list[_Run] = []
        self._available = 0
        self._locks: dict[int, _Lock] = {}
        self._deadlines: list[tuple[int, int]] = []
        self._lock_ids = itertools.count(1)

    # ---------------------------------------------------------------- construction / persistence

    @classmethod
    def initialize(
        cls,
        persisted: PersistedState | None,
        *,
        reset: AutoOffsetReset,
        log_start_offset: int,
        high_watermark: int,
        now_ms: int,
        max_in_flight_records: int,
        max_delivery_count: int,
        offset_for_timestamp: Callable[[int], int | None] | None = None,
        state_epoch: int = 0,
    ) -> SharePartition:
        """First load on the leader (section 4.9): restore persisted state or apply auto offset reset.

        ``persisted`` is None or has start offset -1 when the share-partition was never started;
        the reset strategy is evaluated now. ``latest`` uses the high watermark even under
        read_committed: Kafka's leader asks for LATEST_TIMESTAMP with READ_UNCOMMITTED.
        ``offset_for_timestamp(ts)`` returns the first offset whose timestamp is >= ts, or None.
        """
        if persisted is not None and persisted.start_offset >= 0:
            partition = cls.restore(
                persisted, max_in_flight_records=max_in_flight_records, max_delivery_count=max_delivery_count
            )
        else:
            start = _reset_offset(reset, log_start_offset, high_watermark, now_ms, offset_for_timestamp)
            epoch = persisted.state_epoch if persisted is not None else state_epoch
            partition = cls(
                start_offset=start,
                max_in_flight_records=max_in_flight_records,
                max_delivery_count=max_delivery_count,
                state_epoch=epoch,
            )
        # Kafka finds this out through OFFSET_OUT_OF_RANGE on the first fetch; the effect is the same.
        partition.update_log_start_offset(log_start_offset)
        return partition

    @classmethod
    def restore(
        cls, persisted: PersistedState, *, max_in_flight_records: int, max_delivery_count: int
    ) -> SharePartition:
        """Rebuild from a snapshot. Offsets between SPSO and the last batch without an entry are
        AVAILABLE with delivery count 0: Kafka re-fetches such gaps (GapWindow)."""
        start = persisted.start_offset
        if start < 0:
            raise InvalidPersistedStateError("persisted state has no start offset")
        partition = cls(
            start_offset=start,
            max_in_flight_records=max_in_flight_records,
            max_delivery_count=max_delivery_count,
            state_epoch=persisted.state_epoch,
            leader_epoch=persisted.leader_epoch,
        )
        next_offset = start
        for batch in sorted(persisted.batches, key=lambda b: b.first_offset):
            if batch.first_offset < next_offset or batch.last_offset < batch.first_offset:
                raise InvalidPersistedStateError(f"invalid or overlapping state batch {batch}")
            if batch.first_offset > next_offset:
                partition._append_run(next_offset, batch.first_offset - 1, RecordState.AVAILABLE, 0)
            state = RecordState(batch.delivery_state)
            # ACQUIRED is never persisted by Kafka; treat a stray one as AVAILABLE.
            if state is RecordState.ACQUIRED:
                state = RecordState.AVAILABLE
            partition._append_run(batch.first_offset, batch.last_offset, state, batch.delivery_count)
            next_offset = batch.last_offset + 1
        if partition._runs:
            partition._end = partition._runs[-1].last
            partition._advance_start()
        return partition

    def _append_run(self, first: int, last: int, state: RecordState, delivery_count: int) -> None:
        self._runs.append(_Run(first, last, state, delivery_count, first, last))
        if state is RecordState.AVAILABLE:
            self._available += last - first + 1

    def snapshot(self) -> PersistedState:
        """The persistable state. ACQUIRED records are written as AVAILABLE with the delivery count
        they had before this acquisition: Kafka persists no state change on acquisition (6.3)."""
        batches: list[PersistedBatch] = []
        for run in self._runs:
            state, count = run.state, run.delivery_count
            if state is RecordState.ACQUIRED:
                state, count = RecordState.AVAILABLE, count - 1
            if batches:
                previous = batches[-1]
                if (
                    previous.last_offset + 1 == run.first
                    and previous.delivery_state == state
                    and previous.delivery_count == count
                ):
                    batches[-1] = PersistedBatch(previous.first_offset, run.last, int(state), count)
                    continue
            batches.append(PersistedBatch(run.first, run.last, int(state), count))
        return PersistedState(
            state_epoch=self.state_epoch,
            start_offset=self._start,
            batches=batches,
            delivery_complete_count=self.delivery_complete_count,
            leader_epoch=self.leader_epoch,
        )

    def reset_start_offset(self, start_offset: int, state_epoch: int | None = None) -> None:
        """AlterShareGroupOffsets: new state with this SPSO; all in-flight state is dropped."""
        self._runs.clear()
        self._locks.clear()
        self._deadlines.clear()
        self._available = 0
        self._start = self._end = start_offset
        if state_epoch is not None:
            self.state_epoch = state_epoch

    # ---------------------------------------------------------------- read-only views

    @property
    def start_offset(self) -> int:
        """SPSO: every offset below it is finished."""
        return self._start

    @property
    def end_offset(self) -> int:
        """Kafka's endOffset: the last in-flight offset, or the next offset to fetch if none."""
        return self._end

    @property
    def max_in_flight_records(self) -> int:
        return self._max_in_flight

    @property
    def max_delivery_count(self) -> int:
        return self._max_delivery

    @property
    def in_flight_count(self) -> int:
        """The window Kafka limits with max record locks: SPEO - SPSO + 1, 0 when nothing is cached."""
        return self._end - self._start + 1 if self._runs else 0

    @property
    def delivery_complete_count(self) -> int:
        """In-flight offsets that are ACKNOWLEDGED or ARCHIVED (KIP-1226)."""
        return sum(run.size() for run in self._runs if run.state in _TERMINAL)

    def lag(self, partition_end_offset: int) -> int:
        """DescribeShareGroupOffsets v1 Lag: records not yet delivered and completed.

        [unconfirmed] formula: end - SPSO - completed in-flight records, never negative.
        """
        return max(0, partition_end_offset - self._start - self.delivery_complete_count)

    def in_flight(self) -> list[InFlightRange]:
        ranges = []
        for run in self._runs:
            lock = self._locks.get(run.lock)
            ranges.append(
                InFlightRange(
                    run.first,
                    run.last,
                    run.state,
                    run.delivery_count,
                    run.member or None,
                    lock.deadline if lock is not None and run.state is RecordState.ACQUIRED else None,
                )
            )
        return ranges

    def state_of(self, offset: int) -> RecordState | None:
        """State of one offset: None when it is not tracked (below SPSO, a hole, or not yet fetched)."""
        index = self._find(offset)
        if index < len(self._runs) and self._runs[index].first <= offset:
            return self._runs[index].state
        return None

    def next_fetch_offset(self) -> int:
        """Where the next log read must start: the first AVAILABLE offset, else past the window."""
        if not self._runs:
            return self._end
        if self._available:
            for run in self._runs:
                if run.state is RecordState.AVAILABLE:
                    return run.first
        return self._end + 1

    def can_acquire_records(self) -> bool:
        """Kafka's canAcquireRecords: re-deliverable records exist, or the window has room."""
        if self.next_fetch_offset() != self._end + 1:
            return True
        return self.in_flight_count < self._max_in_flight

    def has_acquirable(self, log_end_offset: int) -> bool:
        """Whether a fetch could acquire something now (long polls use this to decide to wake)."""
        return self.can_acquire_records() and self.next_fetch_offset() < log_end_offset

    # ---------------------------------------------------------------- run-list primitives

    def _find(self, offset: int) -> int:
        """Index of the first run whose last offset is >= offset."""
        index = bisect_right(self._runs, offset, key=_run_first) - 1
        if index >= 0 and self._runs[index].last >= offset:
            return index
        return index + 1

    def _split(self, offset: int) -> int:
        """Make a run start at ``offset`` if one covers it; returns the index of the first run >= offset."""
        index = self._find(offset)
        if index < len(self._runs):
            run = self._runs[index]
            if run.first < offset <= run.last:
                self._runs.insert(index + 1, run.tail_from(offset))
                run.last = offset - 1
                return index + 1
        return index

    def _isolate(self, first: int, last: int) -> tuple[int, int]:
        """Split so that runs[i:j] cover exactly the tracked offsets of [first, last]."""
        start_index = self._split(first)
        return start_index, self._split(last + 1)

    def _coalesce(self, lo_index: int, hi_index: int) -> None:
        """Merge agreeing neighbours among runs[lo_index - 1 : hi_index + 1]."""
        runs = self._runs
        index = min(hi_index, len(runs) - 1)
        stop = max(lo_index, 1)
        while index >= stop:
            previous, current = runs[index - 1], runs[index]
            if previous.mergeable_with(current):
                previous.last = current.last
                del runs[index]
            index -= 1

    def _set(
        self,
        run: _Run,
        state: RecordState,
        delivery_count: int,
        member: str = _NO_MEMBER,
        lock: int = _NO_LOCK,
    ) -> None:
        """Change one run, keeping the AVAILABLE count and per-lock held counts exact."""
        size = run.size()
        if run.state is RecordState.AVAILABLE:
            self._available -= size
        elif run.state is RecordState.ACQUIRED:
            self._drop_lock_share(run.lock, size)
        run.state, run.delivery_count, run.member, run.lock = state, delivery_count, member, lock
        if state is RecordState.AVAILABLE:
            self._available += size
        elif state is RecordState.ACQUIRED:
            self._locks[lock].held += size

    def _drop_lock_share(self, lock_id: int, size: int) -> None:
        lock = self._locks.get(lock_id)
        if lock is not None:
            lock.held -= size
            if lock.held <= 0:
                del self._locks[lock_id]

    def _new_lock(self, deadline: int, first: int, last: int) -> int:
        lock_id = next(self._lock_ids)
        self._locks[lock_id] = _Lock(deadline, first, last)
        heapq.heappush(self._deadlines, (deadline, lock_id))
        return lock_id

    def _extend_lock(self, lock_id: int, first: int, last: int) -> None:
        lock = self._locks[lock_id]
        lock.first, lock.last = min(lock.first, first), max(lock.last, last)

    def _advance_start(self) -> bool:
        """Section 4.7: move SPSO past the terminal prefix and drop those runs."""
        runs = self._runs
        count = 0
        while count < len(runs) and runs[count].state in _TERMINAL:
            count += 1
        if count == 0:
            return False
        if count == len(runs):
            self._start = self._end = runs[-1].last + 1
            runs.clear()
        else:
            del runs[:count]
            self._start = runs[0].first
        return True

    # ---------------------------------------------------------------- acquisition

    def acquire(
        self,
        member_id: str,
        batches: Sequence[tuple[int, int]],
        *,
        max_records: int,
        batch_size: int,
        now_ms: int,
        lock_duration_ms: int,
        mode: AcquireMode = AcquireMode.BATCH_OPTIMIZED,
        fetch_offset: int | None = None,
        aborted: Sequence[tuple[int, int]] = (),
        isolation_bound: int | None = None,
    ) -> AcquireResult:
        """Acquire records for ``member_id`` from the log batches read at ``fetch_offset``.

        ``batches`` are whole log batches in order, starting with the one containing
        ``fetch_offset`` (default ``next_fetch_offset()``), cut by the caller's byte budget.
        ``isolation_bound`` (the LSO under read_committed) drops batches at or beyond it;
        ``aborted`` lists data batches of aborted transactions: what this call acquires in them
        is archived at once and not reported (read_committed, section 4.10).
        """
        if not member_id:
            raise ValueError("member_id must not be empty")
        if isolation_bound is not None:
            batches = [batch for batch in batches if batch[1] < isolation_bound]
        if max_records <= 0 or not batches:
            return AcquireResult([], 0, None, False)
        if fetch_offset is None:
            fetch_offset = self.next_fetch_offset()
        max_to_acquire, last_to_acquire = self._acquire_limits(fetch_offset, max_records, batches[-1][1])
        if max_to_acquire <= 0:
            return AcquireResult([], 0, None, False)
        first_base = batches[0][0]
        state_changed = self._archive_stale(fetch_offset, first_base)
        work = _Acquisition(
            member=member_id,
            deadline=now_ms + lock_duration_ms,
            record_limit=mode is AcquireMode.RECORD_LIMIT,
            max_records=max_to_acquire,
        )
        self._acquire_cached(work, first_base, last_to_acquire)
        if not work.stopped and work.count < work.max_records:
            self._acquire_new(work, batches, first_base, last_to_acquire, batch_size)
        pieces = work.pieces
        if aborted and pieces:
            pieces = self._archive_aborted(pieces, aborted)
            state_changed = True
        count = sum(piece.last_offset - piece.first_offset + 1 for piece in pieces)
        read_range = (pieces[0].first_offset, pieces[-1].last_offset) if pieces else None
        if self._advance_start():
            state_changed = True
        return AcquireResult(pieces, count, read_range, state_changed)

    def _acquire_limits(self, fetch_offset: int, max_records: int, last_fetched: int) -> tuple[int, int]:
        """Kafka's lastOffsetAndMaxRecordsToAcquire: cap by the window, or re-acquire inside it."""
        max_to_acquire = min(max_records, self._max_in_flight - self.in_flight_count)
        last_to_acquire = last_fetched
        if max_to_acquire <= 0 and fetch_offset <= self._end:
            # Window full, but released/expired records inside it may still be handed out.
            max_to_acquire = min(max_records, self._end - fetch_offset + 1)
            last_to_acquire = min(last_fetched, self._end)
        return max_to_acquire, last_to_acquire

    def _archive_stale(self, fetch_offset: int, first_base: int) -> bool:
        """AVAILABLE records between the fetch offset and the first batch read no longer exist in the
        log (compaction); archive them so SPSO can move (Kafka's maybeArchiveStaleBatches)."""
        if not self._runs or fetch_offset >= first_base:
            return False
        lo, hi = self._isolate(fetch_offset, first_base - 1)
        changed = False
        for run in self._runs[lo:hi]:
            if run.state is RecordState.AVAILABLE:
                self._set(run, RecordState.ARCHIVED, run.delivery_count)
                changed = True
        self._coalesce(lo, hi)
        return changed

    def _batches_overlapping(self, first: int, last: int) -> list[tuple[int, int]]:
        bounds: list[tuple[int, int]] = []
        for run in itertools.islice(self._runs, self._find(first), None):
            if run.first > last:
                break
            if not bounds or bounds[-1][0] != run.batch_first:
                bounds.append((run.batch_first, run.batch_last))
        return bounds

    def _runs_within(self, first: int, last: int) -> Iterator[_Run]:
        for run in itertools.islice(self._runs, self._find(first), None):
            if run.first > last:
                return
            yield run

    def _acquire_cached(self, work: _Acquisition, first_base: int, last_to_acquire: int) -> None:
        """Re-acquire AVAILABLE records already in the cache, in-flight batch by in-flight batch."""
        base = max(first_base, self._start)
        for batch_first, batch_last in self._batches_overlapping(base, last_to_acquire):
            if work.count >= work.max_records:
                return
            work.lock = _NO_LOCK
            lo, hi = max(batch_first, base), min(batch_last, last_to_acquire)
            runs = list(self._runs_within(batch_first, batch_last))
            available = [
                run
                for run in runs
                if run.state is RecordState.AVAILABLE and run.last >= lo and run.first <= hi
            ]
            highest = max((run.delivery_count for run in available), default=0)
            # Deviation: Kafka also throttles on a whole-batch record that is not AVAILABLE; only
            # records that can be handed out matter here.
            throttle = highest >= self._throttle_limit
            if throttle and work.count > 0:
                # A throttled batch is delivered on its own in a later fetch.
                work.stopped = True
                return
            full_match = batch_first >= first_base and batch_last <= last_to_acquire
            size = batch_last - batch_first + 1
            record_limit_subset = work.record_limit and size > work.max_records - work.count
            # One run spanning the whole batch is Kafka's batch-tracked state: taken as a unit.
            whole = len(runs) == 1 and runs[0].first == batch_first and runs[0].last == batch_last
            if full_match and whole and not record_limit_subset and not throttle:
                run = runs[0]
                if run.state is RecordState.AVAILABLE:
                    self._acquire_run(work, run, run.first, run.last)
                    work.count += size
                continue
            acquired = self._acquire_subset(work, batch_first, batch_last, lo, hi)
            work.count += acquired
            if throttle and acquired > 0:
                work.stopped = True
                return

    def _acquire_subset(self, work: _Acquisition, batch_first: int, batch_last: int, lo: int, hi: int) -> int:
        """Kafka's acquireSubsetBatchRecords over ranges instead of single offsets."""
        remaining = work.max_records - work.count
        acquired = 0
        cap: int | None = None
        cap_decided = False
        offset = lo
        while offset <= hi:
            index = self._find(offset)
            if index >= len(self._runs) or self._runs[index].first > hi:
                break
            run = self._runs[index]
            if run.state is not RecordState.AVAILABLE:
                offset = run.last + 1
                continue
            first, last = max(run.first, offset), min(run.last, hi)
            delivery_count = run.delivery_count
            take = last - first + 1
            alone = self._max_delivery > 2 and delivery_count == self._max_delivery - 1
            if alone:
                # The final permitted delivery goes out alone, so a poison record cannot drag
                # others to ARCHIVED with it.
                if acquired > 0:
                    break
                take = 1
            if delivery_count >= self._throttle_limit and not cap_decided:
                cap_decided = True
                shift = delivery_count - self._throttle_limit + 1
                limit = max(1, (batch_last - batch_first + 1) >> shift)
                # Kafka compares the running count with == ; a cap already passed never applies.
                cap = limit if acquired < limit else None
            if work.record_limit:
                take = min(take, remaining - acquired)
            if cap is not None:
                take = min(take, cap - acquired)
            if take <= 0:
                break
            self._acquire_run(work, run, first, first + take - 1)
            acquired += take
            if (
                alone
                or (work.record_limit and acquired >= remaining)
                or (cap is not None and acquired >= cap)
            ):
                break
            offset = first + take
        return acquired

    def _acquire_run(self, work: _Acquisition, run: _Run, first: int, last: int) -> None:
        """Move [first, last] (inside one AVAILABLE run) to ACQUIRED by work.member."""
        same_batch = work.lock != _NO_LOCK
        if same_batch:
            self._extend_lock(work.lock, first, last)
        else:
            work.lock = self._new_lock(work.deadline, first, last)
        lo, hi = self._isolate(first, last)
        delivery_count = run.delivery_count + 1
        for piece in self._runs[lo:hi]:
            self._set(piece, RecordState.ACQUIRED, delivery_count, work.member, work.lock)
        self._coalesce(lo, hi)
        work.report(first, last, delivery_count, same_batch)

    def _acquire_new(
        self,
        work: _Acquisition,
        batches: Sequence[tuple[int, int]],
        first_base: int,
        last_to_acquire: int,
        batch_size: int,
    ) -> None:
        """Acquire offsets beyond the cache (Kafka's acquireNewBatchRecords + createBatches)."""
        was_empty = not self._runs
        first = max(first_base, self._end if was_empty else self._end + 1)
        if first > last_to_acquire:
            return
        remaining = work.max_records - work.count
        last = last_to_acquire
        if remaining < last - first + 1:
            # Whole log batches only: MaxRecords is a soft limit, the batch is completed.
            last = _last_offset_of_batch_containing(batches, first + remaining - 1)
        if work.record_limit:
            # One in-flight batch; only `remaining` offsets are acquired, the rest stay AVAILABLE.
            acquired_last = min(last, first + remaining - 1)
            self._append_new_run(work, first, acquired_last, first, last)
            if acquired_last < last:
                self._runs.append(_Run(acquired_last + 1, last, RecordState.AVAILABLE, 0, first, last))
                self._available += last - acquired_last
            work.count += acquired_last - first + 1
        else:
            for chunk_first, chunk_last in _chunks(batches, first, last, batch_size):
                self._append_new_run(work, chunk_first, chunk_last, chunk_first, chunk_last)
            work.count += last - first + 1
        if was_empty:
            self._start = first
        self._end = max(self._end, last)

    def _append_new_run(
        self, work: _Acquisition, first: int, last: int, batch_first: int, batch_last: int
    ) -> None:
        lock = self._new_lock(work.deadline, first, last)
        self._runs.append(
            _Run(first, last, RecordState.ACQUIRED, 1, batch_first, batch_last, work.member, lock)
        )
        self._locks[lock].held += last - first + 1
        work.pieces.append(AcquiredRange(first, last, 1))

    def _archive_aborted(
        self, pieces: list[AcquiredRange], aborted: Sequence[tuple[int, int]]
    ) -> list[AcquiredRange]:
        """Archive just-acquired offsets inside aborted transactions and cut them from the reply."""
        kept: list[AcquiredRange] = []
        spans = sorted(aborted)
        for piece in pieces:
            cursor = piece.first_offset
            for abort_first, abort_last in spans:
                if abort_last < cursor or abort_first > piece.last_offset:
                    continue
                cut_first, cut_last = max(abort_first, cursor), min(abort_last, piece.last_offset)
                if cut_first > cursor:
                    kept.append(AcquiredRange(cursor, cut_first - 1, piece.delivery_count))
                lo, hi = self._isolate(cut_first, cut_last)
                for run in self._runs[lo:hi]:
                    if run.state is RecordState.ACQUIRED:
                        self._set(run, RecordState.ARCHIVED, run.delivery_count)
                self._coalesce(lo, hi)
                cursor = cut_last + 1
            if cursor <= piece.last_offset:
                kept.append(AcquiredRange(cursor, piece.last_offset, piece.delivery_count))
        return kept

    def set_group_limits(
        self,
        *,
        max_in_flight_records: int,
        max_delivery_count: int,
        renew_enabled: bool = True,
        dead_letter_queue: bool = False,
    ) -> None:
        """The group's share.partition.max.record.locks, share.delivery.count.limit and
        share.renew.acknowledge.enable (Kafka 4.3+ reads them on every operation, so a change
        applies to records already in flight), and whether it dead-letters (KIP-1191)."""
        if max_delivery_count < 1 or max_in_flight_records < 1:
            raise ValueError("max_delivery_count and max_in_flight_records must be positive")
        self._max_in_flight = max_in_flight_records
        self._max_delivery = max_delivery_count
        # Kafka: records delivered this often are handed out in shrinking groups (section 4.3).
        self._throttle_limit = max(_MIN_THROTTLE_DELIVERY_LIMIT, -(-max_delivery_count // 2))
        self._renew_enabled = renew_enabled
        self._dead_letter_queue = dead_letter_queue

    def take_dead_letters(self) -> list[DeadLetter]:
        """The records dead-lettered since the last call, in the order they were archived."""
        letters, self._dead_letters = self._dead_letters, []
        return letters

    def _archive(self, run: _Run, cause: str | None) -> None:
        """ARCHIVED; with a DLQ, REJECTs and exhausted deliveries (`cause`) are dead-lettered."""
        if cause is not None and self._dead_letter_queue:
            self._dead_letters.append(DeadLetter(run.first, run.last, run.delivery_count, cause))
        self._set(run, RecordState.ARCHIVED, run.delivery_count)

    # ---------------------------------------------------------------- acknowledgement

    def check_acks(self, member_id: str, batches: Sequence[AckBatch]) -> AckResult | None:
        """Validate acknowledgements without applying them; returns the error, or None if allowed."""
        plan = self._plan_acks(member_id, batches)
        return plan if isinstance(plan, AckResult) else None

    def acknowledge(
        self,
        member_id: str,
        batches: Sequence[AckBatch],
        *,
        now_ms: int,
        lock_duration_ms: int,
    ) -> AckResult:
        """Apply a partition's acknowledgements atomically (section 4.5).

        Every offset must be ACQUIRED by ``member_id`` (else INVALID_RECORD_STATE); offsets past
        the cached window give INVALID_REQUEST. If any batch fails nothing changes. Offsets below
        SPSO are skipped silently, as in Kafka (they were archived by a log-start move).
        """
        plan = self._plan_acks(member_id, batches)
        if isinstance(plan, AckResult):
            return plan
        result = AckResult()
        renew_lock = self._renew_lock(plan, now_ms + lock_duration_ms)
        for first, last, ack_type in plan:
            lo, hi = self._isolate(first, last)
            for run in self._runs[lo:hi]:
                if ack_type == AckType.RENEW:
                    self._set(run, RecordState.ACQUIRED, run.delivery_count, run.member, renew_lock)
                elif ack_type == AckType.ACCEPT:
                    self._set(run, RecordState.ACKNOWLEDGED, run.delivery_count)
                elif ack_type == AckType.RELEASE:
                    result.records_released |= self._release_run(run)
                else:  # GAP and REJECT both archive; only a REJECT is dead-lettered
                    self._archive(run, CLIENT_REJECT if ack_type == AckType.REJECT else None)
            self._coalesce(lo, hi)
            # RENEW only restarts a timer; Kafka persists nothing for it.
            result.state_changed |= ack_type != AckType.RENEW
        if self._advance_start():
            result.state_changed = True
        return result

    def _renew_lock(self, plan: list[tuple[int, int, int]], deadline: int) -> int:
        """One new lock for all RENEW segments of a request, so renewed neighbours can merge."""
        renewed = [(first, last) for first, last, ack_type in plan if ack_type == AckType.RENEW]
        if not renewed:
            return _NO_LOCK
        return self._new_lock(deadline, renewed[0][0], renewed[-1][1])

    def _release_run(self, run: _Run) -> bool:
        """ACQUIRED -> AVAILABLE with the delivery count kept, or ARCHIVED once the delivery
        limit is used up; True when the records became AVAILABLE.

        The same rule for a RELEASE ack, lock expiry and a session end (4.2+, KAFKA-19972:
        SharePartition.releaseAcquiredRecords uses DeliveryCountOps.NO_OP; Kafka 4.1 decremented).
        """
        if run.delivery_count >= self._max_delivery:
            self._archive(run, DELIVERY_COUNT_EXCEEDED)
            return False
        self._set(run, RecordState.AVAILABLE, run.delivery_count)
        return True

    def _plan_acks(
        self, member_id: str, batches: Sequence[AckBatch]
    ) -> AckResult | list[tuple[int, int, int]]:
        """Validate every batch against the current state; returns (first, last, type) segments."""
        plan: list[tuple[int, int, int]] = []
        previous_last: int | None = None
        for batch in batches:
            first, last, types = batch.first_offset, batch.last_offset, list(batch.ack_types)
            problem = _batch_shape_problem(first, last, types)
            if problem is not None:
                return AckResult(_codes.INVALID_REQUEST, problem)
            if previous_last is not None and first <= previous_last:
                # Kafka: the offsets already have a transition in progress from the earlier batch.
                return _invalid_state(
                    "The record state is invalid. The acknowledgement of delivery could not be completed."
                )
            previous_last = last
            if last < self._start:
                continue
            error = self._check_window(first, last)
            if error is not None:
                return error
            error = self._check_holder(member_id, first, last, single_type=len(types) == 1)
            if error is not None:
                return error
            if AckType.RENEW in types and not self._renew_enabled:
                return _invalid_state("Renewing acquisition locks is not enabled for the group.")
            lo = max(first, self._start)
            if len(types) == 1:
                plan.append((lo, last, types[0]))
                continue
            offset = first
            for ack_type, group in itertools.groupby(types):
                length = sum(1 for _ in group)
                segment_first, segment_last = max(offset, lo), offset + length - 1
                if segment_last >= segment_first:
                    plan.append((segment_first, segment_last, ack_type))
                offset += length
        return plan

    def _check_window(self, first: int, last: int) -> AckResult | None:
        """Kafka's fetchSubMapForAcknowledgementBatch checks, in its order."""
        runs = self._runs
        covers_start = first < self._start <= last
        if not runs or (first < runs[0].first and not (covers_start and runs[0].first <= self._start)):
            return _invalid_state(
                "Batch record not found. The request batch offsets are not found in the cache."
            )
        index = self._find(last)
        if index < len(runs) and runs[index].first <= last:
            return None
        # `last` is in a hole or past SPEO; Kafka words it by where `first` falls.
        before = runs[index - 1] if index > 0 else None
        if before is None or before.last < first:
            return AckResult(
                _codes.INVALID_REQUEST,
                "Batch record not found. The first offset in request is past acquired records.",
            )
        return AckResult(
            _codes.INVALID_REQUEST,
            "Batch record not found. The last offset in request is past acquired records.",
        )

    def _check_holder(self, member_id: str, first: int, last: int, *, single_type: bool) -> AckResult | None:
        for run in self._runs_within(max(first, self._start), last):
            # A whole in-flight batch acknowledged with one type is Kafka's "batch" path; its messages differ.
            whole_batch = single_type and run.batch_first >= first and run.batch_last <= last
            if run.state is not RecordState.ACQUIRED:
                if whole_batch:
                    return _invalid_state(
                        "The batch cannot be acknowledged. The batch is not in the acquired state."
                    )
                return _invalid_state("The offset cannot be acknowledged. The offset is not acquired.")
            if run.member != member_id:
                return _invalid_state(
                    "Member is not the owner of batch record"
                    if whole_batch
                    else "Member is not the owner of offset"
                )
        return None

    # ---------------------------------------------------------------- releases, expiry, log moves

    def release_member(self, member_id: str) -> ChangeResult:
        """Share session closed (final epoch or disconnect): give back everything the member holds
        (section 4.8). The delivery count is kept, so records that used up the delivery limit are
        ARCHIVED (Kafka 4.2+, KAFKA-19972): a consumer that keeps dying on a poison record ends
        its redelivery. `records_released` is set only when some records became AVAILABLE.
        """
        result = ChangeResult()
        for run in self._runs:
            if run.state is RecordState.ACQUIRED and run.member == member_id:
                result.offsets_changed += run.size()
                result.records_released |= self._release_run(run)
        if result.offsets_changed:
            result.state_changed = True
            self._coalesce(0, len(self._runs))
            # Archived records at the start move SPSO, as after an ack or a lock expiry.
            self._advance_start()
        return result

    def next_deadline(self) -> int | None:
        """Earliest live acquisition-lock deadline, or None."""
        heap = self._deadlines
        while heap and heap[0][1] not in self._locks:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire_locks(self, now_ms: int) -> ChangeResult:
        """Expire every lock with deadline <= now_ms: AVAILABLE again, or ARCHIVED at the limit."""
        result = ChangeResult()
        heap = self._deadlines
        while heap and heap[0][0] <= now_ms:
            _deadline, lock_id = heapq.heappop(heap)
            lock = self._locks.get(lock_id)
            if lock is None:
                continue
            lo, hi = self._find(lock.first), self._find(lock.last + 1)
            for run in self._runs[lo:hi]:
                if run.lock == lock_id and run.state is RecordState.ACQUIRED:
                    result.offsets_changed += run.size()
                    result.records_released |= self._release_run(run)
            self._locks.pop(lock_id, None)
            self._coalesce(lo, hi)
        if result.offsets_changed:
            result.state_changed = True
            self._advance_start()
        return result

    def update_log_start_offset(self, log_start_offset: int) -> ChangeResult:
        """Retention or DeleteRecords moved the log start past SPSO: archive what lies below it.

        Call it when the log start moves, and on a fetch that got OFFSET_OUT_OF_RANGE.

        Deviation: Kafka leaves ACQUIRED records below the new start until their lock expires or
        the session closes, and then archives them; acks for them are skipped either way. We
        archive them at once, which is indistinguishable to clients and keeps "everything below
        SPSO is terminal" true.
        """
        result = ChangeResult()
        if log_start_offset <= self._start:
            return result
        result.state_changed = True
        if self._runs:
            _lo, hi = self._isolate(self._start, log_start_offset - 1)
            for run in self._runs[:hi]:
                if run.state in (RecordState.AVAILABLE, RecordState.ACQUIRED):
                    result.offsets_changed += run.size()
                    self._set(run, RecordState.ARCHIVED, run.delivery_count)
            del self._runs[:hi]
        self._start = log_start_offset
        if not self._runs or self._end < self._start:
            self._end = self._start
        # Kafka moves past terminal records at the new start only on the next ack or expiry;
        # doing it now keeps SPSO at the first unfinished offset at all times.
        self._advance_start()
        return result


# --------------------------------------------------------------------------------------
# Helpers


def _invalid_state(message: str) -> AckResult:
    return AckResult(_codes.INVALID_RECORD_STATE, message)


def _batch_shape_problem(first: int, last: int, types: list[int]) -> str | None:
    if first > last:
        return "Invalid acknowledgement batch: first offset is greater than last offset."
    if not types or (len(types) > 1 and len(types) != last - first + 1):
        return f"Invalid acknowledge type: {types}"
    if any(not AckType.GAP <= ack_type <= AckType.RENEW for ack_type in types):
        return f"Invalid acknowledge type: {types}"
    return None


def _last_offset_of_batch_containing(batches: Sequence[tuple[int, int]], offset: int) -> int:
    """The last offset of the log batch holding ``offset``; the offset itself if none does."""
    index = bisect_right(batches, offset, key=lambda batch: batch[0]) - 1
    if index >= 0 and batches[index][1] >= offset:
        return batches[index][1]
    return offset


def _chunks(
    batches: Sequence[tuple[int, int]], first: int, last: int, batch_size: int
) -> Iterator[tuple[int, int]]:
    """Cut [first, last] into ~batch_size pieces at log-batch boundaries (Kafka's createBatches)."""
    batch_size = max(batch_size, 1)
    current = first
    if last - first + 1 > batch_size:
        for base, _batch_last in batches:
            if base > last:
                break
            if base - current >= batch_size:
                yield current, base - 1
                current = base
    yield current, last


def _reset_offset(
    reset: AutoOffsetReset,
    log_start_offset: int,
    high_watermark: int,
    now_ms: int,
    offset_for_timestamp: Callable[[int], int | None] | None,
) -> int:
    if reset.kind == "earliest":
        return log_start_offset
    if reset.kind == "latest":
        return high_watermark
    timestamp = reset.timestamp_ms(now_ms)
    offset = offset_for_timestamp(timestamp) if offset_for_timestamp is not None else None
    if offset is None:
        # Kafka's leader throws OffsetNotAvailableException: the fetch reports OFFSET_NOT_AVAILABLE
        # for the partition and the next fetch retries the load.
        raise OffsetNotAvailableError(f"Offset for timestamp {timestamp} not found")
    return offset
