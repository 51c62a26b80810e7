"""Acknowledgement bookkeeping for a share consumer (sans-IO).

``AckBook`` collects acknowledgements per partition as sorted runs of (first, last, type),
so recording offsets in order only extends the last run, and encodes them into the wire's
``AcknowledgementBatches``.  ``take()`` moves pending runs into an in-flight snapshot that
the shell sends; the shell then reports the per-partition outcome with ``complete()``,
``fail()`` or ``requeue()``.

The book holds final acks only.  Kafka accepts RENEW (type 4) only in a request flagged
``IsRenewAck`` that carries nothing else, so RENEWs never share a request with these; the
``AckTracker`` batches them itself (``RenewRequest``).
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from aioshare.protocol.errors import ErrorCode, IllegalStateError
from aioshare.protocol.types import AckType, TopicIdPartition

__all__ = [
    "SINGLE_TYPE_RUN",
    "AckBatch",
    "AckBook",
    "AckConflictError",
    "AckOutcome",
    "AckSnapshot",
    "encode_runs",
    "expand_batches",
    "gap_ranges",
]

T = TypeVar("T")

# The Java client (Acknowledgements.MAX_RECORDS_WITH_SAME_ACKNOWLEDGE_TYPE) gives a run of
# identical types its own single-type batch once it is this long; shorter mixed runs share
# one batch with a per-offset type array.
SINGLE_TYPE_RUN = 10


class AckBatch(NamedTuple):
    """Wire ``AcknowledgementBatch``: one type for the whole span, or one type per offset."""

    first_offset: int
    last_offset: int
    acknowledge_types: list[int]


class AckConflictError(IllegalStateError):
    """The offset already has a pending or in-flight acknowledgement of another type."""

    def __init__(self, tp: TopicIdPartition, offset: int, existing: int, requested: int) -> None:
        self.tp = tp
        self.offset = offset
        self.existing = AckType(existing)
        self.requested = AckType(requested)
        super().__init__(
            f"offset {offset} of {tp} is already acknowledged as {self.existing.name}, "
            f"cannot acknowledge it as {self.requested.name}"
        )


class _Run:
    __slots__ = ("first", "last", "type")

    def __init__(self, first: int, last: int, type_: int) -> None:
        self.first = first
        self.last = last
        self.type = type_

    def __repr__(self) -> str:
        return f"_Run({self.first}, {self.last}, {self.type})"


class _Runs:
    """Sorted, non-overlapping runs; adjacent runs of the same type are always merged."""

    __slots__ = ("count", "runs", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.runs: list[_Run] = []
        self.count = 0

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Index range [i, j) of runs overlapping [first, last]."""
        runs = self.runs
        i = bisect_right(self.starts, first) - 1
        if i < 0 or runs[i].last < first:
            i += 1
        j = i
        while j < len(runs) and runs[j].first <= last:
            j += 1
        return i, j

    def check(self, tp: TopicIdPartition, first: int, last: int, type_: int) -> list[tuple[int, int]]:
        """Raise on a conflicting type inside [first, last]; return the overlapped spans."""
        if not self.runs or first > self.runs[-1].last or last < self.runs[0].first:
            return []
        i, j = self.span(first, last)
        covered: list[tuple[int, int]] = []
        for run in self.runs[i:j]:
            if run.type != type_:
                raise AckConflictError(tp, max(first, run.first), run.type, type_)
            covered.append((max(first, run.first), min(last, run.last)))
        return covered

    def add(self, first: int, last: int, type_: int) -> int:
        """Union [first, last] of ``type_`` into the runs (caller checked for conflicts)."""
        runs = self.runs
        if runs:
            tail = runs[-1]
            if first > tail.last:
                # Append fast path: in-order acks extend the last run in O(1).
                if first == tail.last + 1 and tail.type == type_:
                    tail.last = last
                else:
                    runs.append(_Run(first, last, type_))
                    self.starts.append(first)
                self.count += last - first + 1
                return last - first + 1
        else:
            runs.append(_Run(first, last, type_))
            self.starts.append(first)
            self.count += last - first + 1
            return last - first + 1
        i, j = self.span(first, last)
        overlap = sum(min(last, r.last) - max(first, r.first) + 1 for r in runs[i:j])
        lo = min(first, runs[i].first) if j > i else first
        hi = max(last, runs[j - 1].last) if j > i else last
        if i > 0 and runs[i - 1].last == lo - 1 and runs[i - 1].type == type_:
            i -= 1
            lo = runs[i].first
        if j < len(runs) and runs[j].first == hi + 1 and runs[j].type == type_:
            hi = runs[j].last
            j += 1
        runs[i:j] = [_Run(lo, hi, type_)]
        self.starts[i:j] = [lo]
        added = last - first + 1 - overlap
        self.count += added
        return added

    def merge(self, other: _Runs) -> None:
        for run in other.runs:
            self.add(run.first, run.last, run.type)


def _subtract(first: int, last: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[first, last] minus sorted, disjoint ``covered`` spans (all inside it)."""
    out: list[tuple[int, int]] = []
    pos = first
    for lo, hi in sorted(covered):
        if lo > pos:
            out.append((pos, lo - 1))
        pos = max(pos, hi + 1)
    if pos <= last:
        out.append((pos, last))
    return out


def encode_runs(runs: Iterable[tuple[int, int, int]]) -> list[AckBatch]:
    """Encode sorted, disjoint, coalesced (first, last, type) runs as AcknowledgementBatches.

    Each maximal span of consecutive offsets is cut so that runs of >= SINGLE_TYPE_RUN
    offsets (or a lone run) become single-type batches and neighbouring short runs of
    differing types share one batch with per-offset types.
    """
    batches: list[AckBatch] = []
    group: list[tuple[int, int, int]] = []

    def flush() -> None:
        if len(group) == 1:
            lo, hi, t = group[0]
            batches.append(AckBatch(lo, hi, [t]))
        elif group:
            types: list[int] = []
            for lo, hi, t in group:
                types.extend([t] * (hi - lo + 1))
            batches.append(AckBatch(group[0][0], group[-1][1], types))
        group.clear()

    prev_last: int | None = None
    for lo, hi, t in runs:
        if prev_last is not None and lo != prev_last + 1:
            flush()
        if hi - lo + 1 >= SINGLE_TYPE_RUN:
            flush()
            batches.append(AckBatch(lo, hi, [t]))
        else:
            group.append((lo, hi, t))
        prev_last = hi
    flush()
    return batches


def expand_batches(batches: Iterable[AckBatch]) -> dict[int, int]:
    """offset -> type for a batch list (the broker's reading of the wire format)."""
    out: dict[int, int] = {}
    for first, last, types in batches:
        if len(types) == 1:
            for offset in range(first, last + 1):
                out[offset] = types[0]
        else:
            if len(types) != last - first + 1:
                raise ValueError(f"batch {first}..{last} has {len(types)} types")
            for offset, t in zip(range(first, last + 1), types, strict=True):
                out[offset] = t
    return out


def gap_ranges(first: int, last: int, present: Iterable[int]) -> list[tuple[int, int]]:
    """Offsets of an acquired range [first, last] with no deliverable record (to ack as GAP).

    ``present`` are the offsets of records actually delivered, ascending.
    """
    out: list[tuple[int, int]] = []
    pos = first
    for offset in present:
        if offset < pos:
            continue
        if offset > last:
            break
        if offset > pos:
            out.append((pos, offset - 1))
        pos = offset + 1
    if pos <= last:
        out.append((pos, last))
    return out


@dataclass(eq=False)
class _Pending(Generic[T]):
    runs: _Runs = field(default_factory=_Runs)
    tokens: list[T] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class AckOutcome(Generic[T]):
    """The result of one partition's acknowledgements from one request."""

    tp: TopicIdPartition
    error_code: int
    error_message: str | None
    runs: tuple[tuple[int, int, int], ...]
    tokens: tuple[T, ...]

    @property
    def ok(self) -> bool:
        return self.error_code == 0

    def offsets(self) -> set[int]:
        """The acknowledged offsets (what the ack-commit callback reports)."""
        return {o for lo, hi, _ in self.runs for o in range(lo, hi + 1)}


class AckSnapshot(Generic[T]):
    """Acknowledgements taken for one request; immutable once taken."""

    __slots__ = ("_parts", "batches", "id")

    def __init__(self, snapshot_id: int, parts: dict[TopicIdPartition, _Pending[T]]) -> None:
        self.id = snapshot_id
        self._parts = parts
        self.batches: dict[TopicIdPartition, list[AckBatch]] = {
            tp: encode_runs((r.first, r.last, r.type) for r in p.runs.runs) for tp, p in parts.items()
        }

    @property
    def partitions(self) -> list[TopicIdPartition]:
        return list(self._parts)

    @property
    def count(self) -> int:
        return sum(p.runs.count for p in self._parts.values())

    def offsets(self, tp: TopicIdPartition) -> set[int]:
        part = self._parts.get(tp)
        if part is None:
            return set()
        return {o for r in part.runs.runs for o in range(r.first, r.last + 1)}

    def tokens(self, tp: TopicIdPartition) -> list[T]:
        part = self._parts.get(tp)
        return [] if part is None else list(part.tokens)

    def __repr__(self) -> str:
        return f"AckSnapshot(id={self.id}, batches={self.batches!r})"


class AckBook(Generic[T]):
    """Pending and in-flight acknowledgements of one consumer.

    ``T`` is whatever the shell wants handed back per recorded ack (a future, a message
    id); tokens are optional and cost nothing when unused.
    """

    def __init__(self) -> None:
        self._pending: dict[TopicIdPartition, _Pending[T]] = {}
        self._in_flight: dict[int, AckSnapshot[T]] = {}
        # tp -> snapshots carrying it, for conflict checks on new records.
        self._flying: dict[TopicIdPartition, list[AckSnapshot[T]]] = {}
        self._ids = itertools.count(1)

    # -- recording -------------------------------------------------------------------

    def record(self, tp: TopicIdPartition, offset: int, type_: AckType | int, token: T | None = None) -> bool:
        """Record one acknowledgement; False when the same ack was already recorded."""
        return self.record_range(tp, offset, offset, type_, token) > 0

    def record_range(
        self,
        tp: TopicIdPartition,
        first: int,
        last: int,
        type_: AckType | int,
        token: T | None = None,
    ) -> int:
        """Record ``type_`` for every offset in [first, last]; returns how many were new.

        Offsets already pending or in flight with the same type are not recorded twice
        (the token then rides with the request that carries them).  A different type for
        any of them raises AckConflictError and records nothing.  RENEW is not a final ack:
        it goes through ``AckTracker.renew``.
        """
        t = int(AckType(type_))
        if t == AckType.RENEW:
            raise ValueError("RENEW is not recorded in the AckBook (see AckTracker.renew)")
        if first > last or first < 0:
            raise ValueError(f"invalid offset range {first}..{last}")
        book = self._pending
        pending = book.get(tp)
        flying = self._flying.get(tp)
        if pending is not None and pending.runs.runs:
            tail = pending.runs.runs[-1]
            if first > tail.last and not flying:
                # Fast path for the common in-order case.
                pending.runs.add(first, last, t)
                if token is not None:
                    pending.tokens.append(token)
                return last - first + 1
        in_flight: list[tuple[int, int]] = []
        owner: AckSnapshot[T] | None = None
        for snap in flying or ():
            covered = snap._parts[tp].runs.check(tp, first, last, t)
            if covered and owner is None:
                owner = snap
            in_flight.extend(covered)
        if pending is not None:
            pending.runs.check(tp, first, last, t)
        pieces = _subtract(first, last, in_flight) if in_flight else [(first, last)]
        added = 0
        if pieces:
            if pending is None:
                pending = book[tp] = _Pending()
            for lo, hi in pieces:
                added += pending.runs.add(lo, hi, t)
        if token is not None:
            if added or owner is None:
                assert pending is not None
                pending.tokens.append(token)
            else:
                owner._parts[tp].tokens.append(token)
        return added

    # -- introspection ---------------------------------------------------------------

    @property
    def pending_count(self) -> int:
        """Offsets with an ack waiting to be sent."""
        return sum(p.runs.count for p in self._pending.values())

    @property
    def in_flight_count(self) -> int:
        return sum(s.count for s in self._in_flight.values())

    def pending_partitions(self) -> list[TopicIdPartition]:
        return [tp for tp, p in self._pending.items() if p.runs.count]

    def has_pending(self, tp: TopicIdPartition) -> bool:
        part = self._pending.get(tp)
        return part is not None and part.runs.count > 0

    def in_flight(self) -> list[AckSnapshot[T]]:
        return list(self._in_flight.values())

    def recorded_spans(self, tp: TopicIdPartition, first: int, last: int) -> list[tuple[int, int]]:
        """Spans within [first, last] that have an ack pending or in flight."""
        parts = [self._pending.get(tp)]
        parts.extend(snapshot._parts.get(tp) for snapshot in self._in_flight.values())
        spans: list[tuple[int, int]] = []
        for part in parts:
            if part is None:
                continue
            runs = part.runs
            i, j = runs.span(first, last)
            spans.extend((run.first, run.last) for run in runs.runs[i:j])
        return spans

    # -- sending and results ---------------------------------------------------------

    def take(self, partitions: Iterable[TopicIdPartition] | None = None) -> AckSnapshot[T] | None:
        """Move pending acks of ``partitions`` (all when None) into an in-flight snapshot.

        Returns None when there is nothing to send.  Every snapshot must later be passed
        to ``complete``, ``fail`` or ``requeue``.
        """
        book = self._pending
        keys = list(book) if partitions is None else [tp for tp in partitions if tp in book]
        taken = {tp: book.pop(tp) for tp in keys}
        taken = {tp: p for tp, p in taken.items() if p.runs.count}
        if not taken:
            return None
        snap = AckSnapshot(next(self._ids), taken)
        self._in_flight[snap.id] = snap
        for tp in taken:
            self._flying.setdefault(tp, []).append(snap)
        return snap

    def complete(
        self,
        snapshot: AckSnapshot[T],
        results: Mapping[TopicIdPartition, int],
        messages: Mapping[TopicIdPartition, str | None] | None = None,
    ) -> list[AckOutcome[T]]:
        """Finish a snapshot with per-partition error codes (0 = success).

        A partition missing from ``results`` is reported as UNKNOWN_SERVER_ERROR (-1): the
        broker always answers for partitions that carried acks, so its absence means the
        outcome is unknown, and an unknown outcome must not look like success.
        """
        msgs = messages or {}
        return self._finish(
            snapshot,
            {tp: (results.get(tp, ErrorCode.UNKNOWN_SERVER_ERROR), msgs.get(tp)) for tp in snapshot._parts},
        )

    def fail(
        self, snapshot: AckSnapshot[T], error_code: int, message: str | None = None
    ) -> list[AckOutcome[T]]:
        """Finish a snapshot whose request failed as a whole (session lost, top-level error)."""
        return self._finish(snapshot, {tp: (error_code, message) for tp in snapshot._parts})

    def requeue(self, snapshot: AckSnapshot[T], partitions: Iterable[TopicIdPartition] | None = None) -> None:
        """Return acks to the pending book (they were never sent, or must go elsewhere).

        With ``partitions`` only those leave the snapshot; the rest stay in flight.
        """
        self._check_live(snapshot)
        keys = (
            list(snapshot._parts)
            if partitions is None
            else [tp for tp in partitions if tp in snapshot._parts]
        )
        book = self._pending
        for tp in keys:
            part = snapshot._parts.pop(tp)
            snapshot.batches.pop(tp, None)
            self._unfly(tp, snapshot)
            target = book.get(tp)
            if target is None:
                book[tp] = part
            else:
                target.runs.merge(part.runs)
                target.tokens[:0] = part.tokens
        if not snapshot._parts:
            del self._in_flight[snapshot.id]

    # -- internals -------------------------------------------------------------------

    def _check_live(self, snapshot: AckSnapshot[T]) -> None:
        if self._in_flight.get(snapshot.id) is not snapshot:
            raise ValueError(f"snapshot {snapshot.id} is not in flight")

    def _unfly(self, tp: TopicIdPartition, snapshot: AckSnapshot[T]) -> None:
        lst = self._flying[tp]
        lst.remove(snapshot)
        if not lst:
            del self._flying[tp]

    def _finish(
        self, snapshot: AckSnapshot[T], codes: Mapping[TopicIdPartition, tuple[int, str | None]]
    ) -> list[AckOutcome[T]]:
        self._check_live(snapshot)
        del self._in_flight[snapshot.id]
        out: list[AckOutcome[T]] = []
        for tp, part in snapshot._parts.items():
            self._unfly(tp, snapshot)
            code, msg = codes[tp]
            out.append(
                AckOutcome(
                    tp,
                    code,
                    msg,
                    tuple((r.first, r.last, r.type) for r in part.runs.runs),
                    tuple(part.tokens),
                )
            )
        return out
