"""Acquisition-lock bookkeeping for every record a share consumer holds (sans-IO).

Records are tracked as acquired *ranges* (one ``AcquiredRecords`` entry of a ShareFetch
response), not one object per record: a 500-record range costs one small object and one
heap entry.  Settling single offsets punches holes into a per-range bitmap instead of
splitting, so out-of-order completion by a worker pool does not fragment the table.
Ranges are split physically only where deadlines or delivery counts really differ
(renewals, re-acquisition of an overlapping span).

All deadlines share one heap with lazy invalidation, so the shell needs exactly one timer:
sleep until ``next_deadline()``, then call ``expire(now)`` and ``take_fired()``.  Besides
lock deadlines the heap holds ``Timer`` entries ("act for this record at T": keep-alive
renewals and timed acknowledgements, see ack_tracker.py); a record without one costs
nothing here, one with one costs one timer object and one heap entry.  Most such timers are
cancelled long before they are due (a record kept alive, then acknowledged), so a timer
enters the heap only when the table is next swept for a time at or past the earliest timer
scheduled since the last sweep; until then it waits in a plain list, where scheduling and
cancelling cost a few attribute writes.

Costs (r = ranges in one partition, h = heap entries): lookups, in-order settles and
appends O(log r + log h).  Splits and removals add an O(r) ``list`` memmove; that is a
deliberate trade against a tree: r counts ranges, not records, and the broker caps one
partition's in-flight window at ``share.partition.max.record.locks`` (2000 by default,
10000 at most), so even a fully fragmented partition moves at most ~80 KB of pointers.
``expire`` drops many ranges of one partition in a single pass.

Acknowledged records are settled per run, not per record: the AckTracker checks a record is
still held when it is acknowledged, extends its run of acks, and settles whole runs
(``settle_run``) later.  Until then it sets ``pending``, and every method that reads or
changes lease state applies the pending settlements first (``apply_pending``), so nobody
sees a record that was acknowledged as held: not the held count, not the expiry sweep (an
acknowledged record is never reported lost), not a lookup.  Timer methods skip that: timers
do not depend on which records are held.
"""

from __future__ import annotations

import heapq
import itertools
import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Final, NamedTuple

from aioshare.protocol.types import TopicIdPartition

__all__ = ["ExpiredRange", "HeldRange", "Lease", "LeaseInfo", "LeaseTable", "Timer"]


class HeldRange(NamedTuple):
    tp: TopicIdPartition
    first: int
    last: int
    delivery_count: int
    deadline: float


class ExpiredRange(NamedTuple):
    tp: TopicIdPartition
    first: int
    last: int
    error: BaseException | None = None  # why, when the broker said so (a refused RENEW)


class LeaseInfo(NamedTuple):
    deadline: float
    delivery_count: int


class Lease:
    """A contiguous span sharing one deadline and delivery count.

    ``held`` is None while every offset in [first, last] is held; otherwise a bitmap
    (1 = held).  Invariant: ``first`` and ``last`` are always held offsets.

    Outside this module a lease is an opaque *hint*: the consumer keeps the one a message
    was delivered under, so settling that message needs no table lookup (``holding``).
    A lease never changes its deadline or delivery count; it only shrinks, or dies.
    """

    __slots__ = ("alive", "count", "deadline", "delivery_count", "first", "held", "last", "part", "seq", "tp")

    def __init__(
        self,
        tp: TopicIdPartition,
        part: _Partition,
        first: int,
        last: int,
        delivery_count: int,
        deadline: float,
        seq: int,
        held: bytearray | None = None,
        count: int | None = None,
    ) -> None:
        self.tp = tp
        self.part = part
        self.first = first
        self.last = last
        self.delivery_count = delivery_count
        self.deadline = deadline
        self.seq = seq
        self.held = held
        self.count = last - first + 1 if count is None else count
        self.alive = True

    def holds(self, offset: int) -> bool:
        return self.held is None or self.held[offset - self.first] == 1

    def runs(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Maximal runs of held offsets inside [lo, hi] (clipped to the lease)."""
        lo = max(lo, self.first)
        hi = min(hi, self.last)
        if lo > hi:
            return []
        if self.held is None:
            return [(lo, hi)]
        bits, base = self.held, self.first
        out: list[tuple[int, int]] = []
        i, end = lo - base, hi - base + 1
        while i < end:
            start = bits.find(1, i, end)
            if start < 0:
                break
            stop = bits.find(0, start, end)
            if stop < 0:
                stop = end
            out.append((base + start, base + stop - 1))
            i = stop
        return out

    def normalize(self) -> None:
        """Trim unheld edges and drop the bitmap once it is all ones (requires count > 0)."""
        bits = self.held
        if bits is None:
            return
        start = bits.find(1)
        stop = bits.rfind(1)
        if start > 0 or stop < len(bits) - 1:
            bits = bits[start : stop + 1]
            self.first += start
            self.last = self.first + len(bits) - 1
        self.held = None if self.count == len(bits) else bits


_UNPLANNED = -1  # Timer.seq of a timer in the table's list, not in its heap


class Timer:
    """An entry of the lease table's heap that is not a lock: due at ``due``.

    ``alive`` is True while it waits to fire.  ``LeaseTable.schedule`` puts it there,
    ``cancel`` takes it out (lazily), and once due, ``expire`` hands it to ``take_fired``.
    Subclasses add what the owner needs to act on it.  ``seq`` is the table's: the sequence
    number of its heap entry, or ``_UNPLANNED`` while it is in the table's list of timers not
    yet moved to the heap.
    """

    __slots__ = ("alive", "due", "seq")

    def __init__(self) -> None:
        self.alive = False
        self.due = math.inf
        self.seq = 0


class _Partition:
    __slots__ = ("count", "leases", "starts")

    def __init__(self) -> None:
        # Parallel sorted lists: starts[i] == leases[i].first; spans never overlap.
        self.starts: list[int] = []
        self.leases: list[Lease] = []
        self.count = 0

    def find(self, offset: int) -> int:
        i = bisect_right(self.starts, offset) - 1
        if i >= 0 and self.leases[i].last >= offset:
            return i
        return -1


class LeaseTable:
    """Deadlines and delivery counts of held records, keyed by (partition, offset)."""

    # Rebuild the heap when dead entries outnumber live ranges by this factor, so that
    # settling ranges long before their deadline cannot grow the heap without bound.
    _COMPACT_FACTOR: Final = 2
    _COMPACT_MIN: Final = 64

    def __init__(self) -> None:
        self._parts: dict[TopicIdPartition, _Partition] = {}
        self._heap: list[tuple[float, int, Lease | Timer]] = []
        self._seq = itertools.count()
        self._held = 0
        self._live = 0  # live leases in the heap
        self._timers = 0  # live timers, in the heap or not planned yet
        # Timers scheduled since the last sweep (see the module doc), cancelled ones included
        # (``_unplanned_dead`` of them), and a time no live one of them is due before: the
        # earliest due of them unless one was cancelled or moved later since (``_inexact``).
        self._unplanned: list[Timer] = []
        self._unplanned_dead = 0
        self._unplanned_due = math.inf
        self._inexact = False
        self._stale = 0  # dead entries (leases and timers) still in the heap
        self._fired: list[Timer] = []
        # Called when a scheduled timer became the earliest deadline (the shell's timer
        # must wake sooner than it planned); LeaseTimer sets it.
        self.wake: Callable[[], None] | None = None
        # Settlements recorded elsewhere and not applied yet (see the module doc): set by
        # the AckTracker, called (once) before lease state is next read or changed.
        self.pending: Callable[[], None] | None = None

    def apply_pending(self) -> None:
        """Apply the settlements recorded and not applied yet (``pending``)."""
        pending = self.pending
        if pending is not None:
            self.pending = None
            pending()

    # -- queries ---------------------------------------------------------------------

    @property
    def held_count(self) -> int:
        if self.pending is not None:
            self.apply_pending()
        return self._held

    @property
    def held_before_pending(self) -> int:
        """``held_count`` with the pending settlements not applied yet: at least the truth."""
        return self._held

    def held_in(self, tp: TopicIdPartition) -> int:
        if self.pending is not None:
            self.apply_pending()
        part = self._parts.get(tp)
        return 0 if part is None else part.count

    def partitions(self) -> list[TopicIdPartition]:
        if self.pending is not None:
            self.apply_pending()
        return list(self._parts)

    def lease_at(self, tp: TopicIdPartition, offset: int) -> Lease | None:
        """The lease holding ``offset`` (an opaque hint for ``holding``/``settle_delivery``)."""
        if self.pending is not None:
            self.apply_pending()
        return self._lease_at(tp, offset)

    def holding(
        self, tp: TopicIdPartition, offset: int, delivery_count: int, now: float, hint: Lease | None = None
    ) -> Lease | None:
        """The lease holding ``offset`` for the delivery counted ``delivery_count``, if its
        deadline is still ahead of ``now``; else None.

        ``hint`` is the lease the record was delivered under: while it is alive and still
        spans the offset, no lookup is needed (leases never overlap).  A hint that was split
        off or died falls back to the lookup.
        """
        if self.pending is not None:
            self.apply_pending()
        return self.holding_unacked(tp, offset, delivery_count, now, hint)

    def holding_unacked(
        self, tp: TopicIdPartition, offset: int, delivery_count: int, now: float, hint: Lease | None = None
    ) -> Lease | None:
        """``holding`` for a record known not to be acknowledged: pending settlements cannot
        concern it, so they are left pending (a keep-alive after each accept would otherwise
        apply them record by record)."""
        lease = hint
        if lease is None or not lease.alive or offset < lease.first or offset > lease.last:
            lease = self._lease_at(tp, offset)
            if lease is None:
                return None
        elif lease.held is not None and lease.held[offset - lease.first] == 0:
            return None
        if lease.delivery_count != delivery_count or lease.deadline <= now:
            return None
        return lease

    def settle_delivery(
        self, tp: TopicIdPartition, offset: int, delivery_count: int, now: float, hint: Lease | None = None
    ) -> bool:
        """``settle`` for one delivery of ``offset``: False (nothing settled) when that delivery
        no longer holds it - lock run out (swept or not), re-acquired, or dropped."""
        if self.pending is not None:
            self.apply_pending()
        lease = hint
        if (
            lease is None
            or not lease.alive
            or lease.held is not None
            or offset < lease.first
            or offset > lease.last
        ):
            # Not the common case (the hint is a whole, live span holding the offset): look it up.
            lease = self.holding(tp, offset, delivery_count, now, hint)
            if lease is None:
                return False
        elif lease.delivery_count != delivery_count or lease.deadline <= now:
            return False
        self._settle_in(lease, offset)
        return True

    def get(self, tp: TopicIdPartition, offset: int) -> LeaseInfo | None:
        if self.pending is not None:
            self.apply_pending()
        lease = self._lease_at(tp, offset)
        return None if lease is None else LeaseInfo(lease.deadline, lease.delivery_count)

    def deadline_of(self, tp: TopicIdPartition, offset: int) -> float | None:
        if self.pending is not None:
            self.apply_pending()
        lease = self._lease_at(tp, offset)
        return None if lease is None else lease.deadline

    def delivery_count_of(self, tp: TopicIdPartition, offset: int) -> int | None:
        if self.pending is not None:
            self.apply_pending()
        lease = self._lease_at(tp, offset)
        return None if lease is None else lease.delivery_count

    def is_held(self, tp: TopicIdPartition, offset: int, now: float) -> bool:
        """Held and not yet past its deadline (expiry may not have been swept yet)."""
        if self.pending is not None:
            self.apply_pending()
        lease = self._lease_at(tp, offset)
        return lease is not None and lease.deadline > now

    def ranges(self, tp: TopicIdPartition | None = None) -> list[HeldRange]:
        """Held offsets as maximal runs per lease, ascending per partition."""
        if self.pending is not None:
            self.apply_pending()
        tps = list(self._parts) if tp is None else [tp]
        out: list[HeldRange] = []
        for key in tps:
            part = self._parts.get(key)
            if part is None:
                continue
            for lease in part.leases:
                out.extend(
                    HeldRange(key, f, last, lease.delivery_count, lease.deadline)
                    for f, last in lease.runs(lease.first, lease.last)
                )
        return out

    def next_deadline(self) -> float | None:
        if self.pending is not None:
            self.apply_pending()
        earliest = self._earliest()
        if self._unplanned_due < math.inf and (earliest is None or self._unplanned_due < earliest):
            if self._inexact:
                self._drop_cancelled()
            due = self._unplanned_due
            if due < math.inf and (earliest is None or due < earliest):
                return due
        return earliest

    def _earliest(self) -> float | None:
        """The earliest live entry's due time.  Without pending settlements applied it may be
        earlier than ``next_deadline`` (a lease they would end), never later."""
        heap = self._heap
        if heap:
            top = heap[0]
            entry = top[2]
            if entry.alive and entry.seq == top[1]:
                return top[0]  # the usual case: no dead entry on top to pop
        while heap and (not heap[0][2].alive or heap[0][2].seq != heap[0][1]):
            heapq.heappop(heap)
            self._stale -= 1
        return heap[0][0] if heap else None

    # -- mutations -------------------------------------------------------------------

    def add_acquired(
        self, tp: TopicIdPartition, first: int, last: int, delivery_count: int, deadline: float
    ) -> int:
        """Record an acquired range; returns how many already-held offsets it replaced.

        Replacement happens when the broker re-acquired offsets for us whose old lock we
        had not swept yet; the newer lease is the truth.
        """
        if self.pending is not None:
            self.apply_pending()
        if first > last:
            raise ValueError(f"empty range {first}..{last}")
        replaced = 0
        part = self._parts.get(tp)
        if part is not None and part.leases and part.leases[-1].last >= first:
            replaced = sum(hi - lo + 1 for lo, hi, _ in self._cut(tp, first, last))
        self._insert(tp, first, last, delivery_count, deadline)
        return replaced

    def acquire(
        self, tp: TopicIdPartition, first: int, last: int, delivery_count: int, deadline: float, now: float
    ) -> tuple[list[tuple[int, int]], list[ExpiredRange]]:
        """Take an acquisition the broker reported: returns (news, superseded).

        ``news`` are the spans of [first, last] that are new to us; they are now leased
        with ``delivery_count`` and ``deadline``.  ``superseded`` are held runs the
        acquisition replaced, because their delivery is over: their lock ran out here
        (``deadline <= now``, swept or not), or the broker counts a later delivery (a higher
        delivery count: its lock ran out there first).  Held runs with a lock still running
        and a delivery count at least ``delivery_count`` are kept and left out of ``news``:
        Kafka never reports a record its member holds, but librdkafka's mock re-reports
        held records on every fetch without counting a delivery.
        """
        if self.pending is not None:
            self.apply_pending()
        if first > last:
            raise ValueError(f"empty range {first}..{last}")
        part = self._parts.get(tp)
        if part is None or part.leases[-1].last < first or part.leases[0].first > last:
            self._insert(tp, first, last, delivery_count, deadline)
            return [(first, last)], []
        leases = part.leases
        i = bisect_right(part.starts, first) - 1
        if i < 0 or leases[i].last < first:
            i += 1
        kept: list[tuple[int, int]] = []
        superseded: list[ExpiredRange] = []
        for lease in leases[i:]:
            if lease.first > last:
                break
            runs = lease.runs(first, last)
            if lease.deadline > now and lease.delivery_count >= delivery_count:
                kept.extend(runs)
            else:
                superseded.extend(ExpiredRange(tp, lo, hi) for lo, hi in runs)
        news = _subtract(first, last, kept)
        # Cutting the news spans as well splits kept leases around unheld holes, so the
        # new leases never overlap an old lease's span.
        for lo, hi in [(r.first, r.last) for r in superseded] + news:
            self._cut(tp, lo, hi)
        for lo, hi in news:
            self._insert(tp, lo, hi, delivery_count, deadline)
        return news, superseded

    def settle(self, tp: TopicIdPartition, offset: int) -> bool:
        """End the lease of one offset (an ack was recorded); False if it was not held."""
        if self.pending is not None:
            self.apply_pending()
        lease = self._lease_at(tp, offset)
        if lease is None:
            return False
        self._settle_in(lease, offset)
        return True

    def release(self, tp: TopicIdPartition, offset: int) -> bool:
        """``settle``: a RELEASE ends the lease exactly like ACCEPT/REJECT do."""
        return self.settle(tp, offset)

    def settle_range(self, tp: TopicIdPartition, first: int, last: int) -> int:
        """End the leases of every held offset in [first, last]; returns how many."""
        if self.pending is not None:
            self.apply_pending()
        return sum(hi - lo + 1 for lo, hi, _ in self._cut(tp, first, last))

    def settle_run(self, tp: TopicIdPartition, first: int, last: int) -> int:
        """End the leases of every held offset in [first, last] (a run of acknowledgements,
        over any number of leases); returns how many.

        Unlike ``settle_range`` it never splits a lease: a run inside one punches a hole in
        its bitmap, as ``settle`` does, so runs acknowledged out of order (a worker pool) do
        not fragment the table, and the lease hints of the records left keep working.
        """
        if self.pending is not None:
            self.apply_pending()
        part = self._parts.get(tp)
        if part is None or first > last:
            return 0
        leases, starts = part.leases, part.starts
        i = bisect_right(starts, first) - 1
        if i < 0 or leases[i].last < first:
            i += 1
        settled = 0
        died = False
        while i < len(leases):
            lease = leases[i]
            if lease.first > last:
                break
            settled += _settle_span(lease, max(first, lease.first), min(last, lease.last))
            if lease.count == 0:
                del leases[i], starts[i]
                lease.alive = False
                self._live -= 1
                self._stale += 1  # its heap entry stays until popped or compacted
                died = True
                continue
            starts[i] = lease.first
            i += 1
        part.count -= settled
        self._held -= settled
        if not leases:
            del self._parts[tp]
        if died:
            self._maybe_compact()
        return settled

    def renew(self, tp: TopicIdPartition, offset: int, new_deadline: float) -> bool:
        return self.renew_range(tp, offset, offset, new_deadline) > 0

    def renew_range(self, tp: TopicIdPartition, first: int, last: int, new_deadline: float) -> int:
        """Move held offsets in [first, last] to ``new_deadline``; returns how many moved.

        Renewing consecutive offsets to the same deadline coalesces into one range.
        """
        if self.pending is not None:
            self.apply_pending()
        moved = 0
        for lo, hi, dc in self._cut(tp, first, last):
            self._insert(tp, lo, hi, dc, new_deadline)
            moved += hi - lo + 1
        return moved

    def expire(self, now: float) -> list[ExpiredRange]:
        """Remove and return every held run whose deadline is <= now.

        Timers due by ``now`` leave the heap too; ``take_fired()`` returns them.
        """
        if self.pending is not None:
            self.apply_pending()
        if self._unplanned_due <= now:
            self._plan_timers()
        out: list[ExpiredRange] = []
        heap = self._heap
        dead: dict[TopicIdPartition, list[Lease]] = {}
        while heap and heap[0][0] <= now:
            _, seq, entry = heapq.heappop(heap)
            if not entry.alive or entry.seq != seq:  # settled, cut, cancelled or moved
                self._stale -= 1
                continue
            entry.alive = False
            if isinstance(entry, Timer):
                self._timers -= 1
                self._fired.append(entry)
                continue
            lease = entry
            out.extend(ExpiredRange(lease.tp, lo, hi) for lo, hi in lease.runs(lease.first, lease.last))
            dead.setdefault(lease.tp, []).append(lease)
        for tp, leases in dead.items():
            part = self._parts[tp]
            n = sum(lease.count for lease in leases)
            part.count -= n
            self._held -= n
            self._live -= len(leases)
            if len(leases) <= 8:
                for lease in leases:
                    i = part.find(lease.first)
                    del part.leases[i], part.starts[i]
            else:
                # One pass instead of many list.pop memmoves when a whole fetch expires.
                part.leases = [lease for lease in part.leases if lease.alive]
                part.starts = [lease.first for lease in part.leases]
            if not part.leases:
                del self._parts[tp]
        return out

    def take_fired(self) -> list[Timer]:
        """The timers ``expire`` found due since the last call, in due order."""
        fired, self._fired = self._fired, []
        return fired

    # -- timers ----------------------------------------------------------------------

    @property
    def timer_count(self) -> int:
        """Timers waiting to fire."""
        return self._timers

    def schedule(self, timer: Timer, when: float) -> None:
        """Have ``timer`` fire at ``when`` (moving it if it was scheduled already).

        It goes to the list of timers not planned yet, not to the heap (see the module doc);
        a timer still listed there (cancelled or not) is reused in place.
        """
        if timer.seq == _UNPLANNED:
            if not timer.alive:
                timer.alive = True
                self._timers += 1
                self._unplanned_dead -= 1
            if when > timer.due:
                self._inexact = True  # it may have been the earliest
        else:
            if timer.alive:
                self.cancel(timer)  # its heap entry goes stale
            timer.seq = _UNPLANNED
            timer.alive = True
            self._timers += 1
            self._unplanned.append(timer)
        timer.due = when
        if when < self._unplanned_due:
            self._unplanned_due = when
            if self.wake is not None:
                # Unapplied settlements can only make this earlier than the truth: then the
                # shell's timer is due at that earlier time anyway, and re-reads it there.
                earliest = self._earliest()
                if earliest is None or when < earliest:
                    self.wake()

    def cancel(self, timer: Timer) -> None:
        """Take ``timer`` out (its heap or list entry is dropped lazily); no-op if not scheduled."""
        if not timer.alive:
            return
        timer.alive = False
        self._timers -= 1
        if timer.seq == _UNPLANNED:
            self._unplanned_dead += 1
            self._inexact = True
            dead = self._unplanned_dead
            if dead > self._COMPACT_MIN and dead > self._COMPACT_FACTOR * (len(self._unplanned) - dead):
                self._drop_cancelled()  # they hold their owners' objects (a keep-alive its message)
            return
        self._stale += 1
        self._maybe_compact()

    def _drop_cancelled(self) -> None:
        """Drop the cancelled timers from the list and make its earliest due exact."""
        kept: list[Timer] = []
        due = math.inf
        for timer in self._unplanned:
            if timer.alive:
                kept.append(timer)
                if timer.due < due:
                    due = timer.due
            else:
                timer.seq = 0  # no longer listed
        self._unplanned = kept
        self._unplanned_dead = 0
        self._unplanned_due = due
        self._inexact = False

    def _plan_timers(self) -> None:
        """Move the live timers not planned yet into the heap."""
        listed, self._unplanned = self._unplanned, []
        self._unplanned_dead = 0
        self._unplanned_due = math.inf
        self._inexact = False
        heap = self._heap
        for timer in listed:
            if timer.alive:
                timer.seq = next(self._seq)
                heapq.heappush(heap, (timer.due, timer.seq, timer))
            else:
                timer.seq = 0  # no longer listed

    def drop_partition(self, tp: TopicIdPartition) -> int:
        """Forget a partition (revoked, or its leader's session was lost); returns offsets dropped."""
        if self.pending is not None:
            self.apply_pending()
        part = self._parts.pop(tp, None)
        if part is None:
            return 0
        for lease in part.leases:
            lease.alive = False
        self._live -= len(part.leases)
        self._stale += len(part.leases)
        self._held -= part.count
        self._maybe_compact()
        return part.count

    def drop_all(self) -> int:
        """Forget everything, timers included (the consumer's sessions are gone); returns
        offsets dropped."""
        if self.pending is not None:
            self.apply_pending()
        dropped = self._held
        for entry in self._heap:
            entry[2].alive = False
        for timer in self._unplanned:
            timer.alive = False
            timer.seq = 0
        self._unplanned.clear()
        self._unplanned_dead = 0
        self._unplanned_due = math.inf
        self._inexact = False
        self._parts.clear()
        self._heap.clear()
        self._fired.clear()
        self._held = self._live = self._timers = self._stale = 0
        return dropped

    # -- internals -------------------------------------------------------------------

    def _settle_in(self, lease: Lease, offset: int) -> None:
        """Settle ``offset``, which ``lease`` holds."""
        part = lease.part
        lease.count -= 1
        part.count -= 1
        self._held -= 1
        if lease.count == 0:
            self._unlink(lease.tp, part, bisect_right(part.starts, offset) - 1)
            return
        if lease.held is None:
            # Settling in order trims the edge in place: no bitmap, no re-keying cost.
            if offset == lease.first:
                i = bisect_right(part.starts, offset) - 1
                lease.first += 1
                part.starts[i] = lease.first
                return
            if offset == lease.last:
                lease.last -= 1
                return
            lease.held = bytearray(b"\x01") * (lease.last - lease.first + 1)
        lease.held[offset - lease.first] = 0
        if offset == lease.first or offset == lease.last:
            i = bisect_right(part.starts, lease.first) - 1
            lease.normalize()
            part.starts[i] = lease.first

    def _lease_at(self, tp: TopicIdPartition, offset: int) -> Lease | None:
        part = self._parts.get(tp)
        if part is None:
            return None
        i = part.find(offset)
        if i < 0:
            return None
        lease = part.leases[i]
        return lease if lease.holds(offset) else None

    def _new_lease(
        self,
        tp: TopicIdPartition,
        part: _Partition,
        first: int,
        last: int,
        delivery_count: int,
        deadline: float,
        held: bytearray | None = None,
        count: int | None = None,
    ) -> Lease:
        lease = Lease(tp, part, first, last, delivery_count, deadline, next(self._seq), held, count)
        heapq.heappush(self._heap, (deadline, lease.seq, lease))
        self._live += 1
        return lease

    def _insert(
        self, tp: TopicIdPartition, first: int, last: int, delivery_count: int, deadline: float
    ) -> None:
        """Add a fully held span; the caller guarantees no existing lease overlaps it."""
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition()
        n = last - first + 1
        part.count += n
        self._held += n
        i = bisect_right(part.starts, first)
        if i > 0:
            left = part.leases[i - 1]
            if left.last == first - 1 and left.deadline == deadline and left.delivery_count == delivery_count:
                if left.held is not None:
                    left.held.extend(b"\x01" * n)
                left.last = last
                left.count += n
                return
        lease = self._new_lease(tp, part, first, last, delivery_count, deadline)
        if i == len(part.leases):
            part.leases.append(lease)
            part.starts.append(first)
        else:
            part.leases.insert(i, lease)
            part.starts.insert(i, first)

    def _unlink(self, tp: TopicIdPartition, part: _Partition, i: int) -> None:
        lease = part.leases.pop(i)
        del part.starts[i]
        lease.alive = False
        self._live -= 1
        if not part.leases:
            del self._parts[tp]
        self._stale += 1  # its heap entry stays until popped or compacted
        self._maybe_compact()

    def _cut(self, tp: TopicIdPartition, first: int, last: int) -> list[tuple[int, int, int]]:
        """Remove [first, last] from every lease span; return the held runs removed.

        Leases straddling the cut keep their original object (and heap entry) for one
        side; only a lease cut in the middle spawns a new object for its right side.
        """
        part = self._parts.get(tp)
        if part is None or first > last:
            return []
        leases = part.leases
        i = bisect_right(part.starts, first) - 1
        if i < 0 or leases[i].last < first:
            i += 1
        j = i
        while j < len(leases) and leases[j].first <= last:
            j += 1
        if i == j:
            return []
        removed: list[tuple[int, int, int]] = []
        survivors: list[Lease] = []
        removed_count = 0
        for lease in leases[i:j]:
            lo, hi = max(first, lease.first), min(last, lease.last)
            runs = lease.runs(lo, hi)
            removed.extend((a, b, lease.delivery_count) for a, b in runs)
            removed_count += sum(b - a + 1 for a, b in runs)
            pieces = self._split_off(lease, lo, hi)
            if not pieces:
                lease.alive = False
                self._live -= 1
                self._stale += 1
            survivors.extend(pieces)
        leases[i:j] = survivors
        part.starts[i:j] = [s.first for s in survivors]
        part.count -= removed_count
        self._held -= removed_count
        if not leases:
            del self._parts[tp]
        self._maybe_compact()
        return removed

    def _split_off(self, lease: Lease, lo: int, hi: int) -> list[Lease]:
        """What remains of ``lease`` outside [lo, hi]; reuses ``lease`` for the first piece."""
        base, bits = lease.first, lease.held
        sides: list[tuple[int, int, bytearray | None, int]] = []
        if lease.first < lo:
            left_bits = None if bits is None else bits[: lo - base]
            left_count = lo - base if left_bits is None else left_bits.count(1)
            if left_count:
                sides.append((lease.first, lo - 1, left_bits, left_count))
        if hi < lease.last:
            right_bits = None if bits is None else bits[hi + 1 - base :]
            right_count = lease.last - hi if right_bits is None else right_bits.count(1)
            if right_count:
                sides.append((hi + 1, lease.last, right_bits, right_count))
        pieces: list[Lease] = []
        for k, (a, b, piece_bits, count) in enumerate(sides):
            if k == 0:
                piece = lease
                piece.first, piece.last, piece.held, piece.count = a, b, piece_bits, count
            else:
                piece = self._new_lease(
                    lease.tp, lease.part, a, b, lease.delivery_count, lease.deadline, piece_bits, count
                )
            piece.normalize()
            pieces.append(piece)
        return pieces

    def _maybe_compact(self) -> None:
        live = self._live + self._timers
        if self._stale > self._COMPACT_MIN and self._stale > self._COMPACT_FACTOR * live:
            self._heap = [entry for entry in self._heap if entry[2].alive and entry[2].seq == entry[1]]
            heapq.heapify(self._heap)
            self._stale = 0


def _settle_span(lease: Lease, lo: int, hi: int) -> int:
    """Settle the held offsets of [lo, hi], inside ``lease``'s span; returns how many.  The
    caller unlinks the lease once its count is 0 (its span is then meaningless)."""
    base, bits = lease.first, lease.held
    if bits is None:
        n = hi - lo + 1
        if lo == base:
            lease.first = hi + 1  # in order: trim the edge, no bitmap
        elif hi == lease.last:
            lease.last = lo - 1
        else:
            bits = lease.held = bytearray(b"\x01") * (lease.last - base + 1)
            bits[lo - base : hi - base + 1] = bytes(n)
        lease.count -= n
        return n
    n = bits.count(1, lo - base, hi - base + 1)
    if n:
        bits[lo - base : hi - base + 1] = bytes(hi - lo + 1)
        lease.count -= n
        if lease.count and (lo == base or hi == lease.last):
            lease.normalize()  # keep first and last held
    return n


def _subtract(first: int, last: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[first, last] minus ascending, disjoint ``covered`` spans (each inside it)."""
    out: list[tuple[int, int]] = []
    pos = first
    for lo, hi in covered:
        if lo > pos:
            out.append((pos, lo - 1))
        pos = hi + 1
    if pos <= last:
        out.append((pos, last))
    return out
