"""The records a consumer fetched and has not handed out yet: each Message is built when it is.

A fetch brings up to ``max_in_flight`` records at once.  Built as Messages on arrival, they
were all alive when the collector's young-generation pass that their own allocation triggered
ran, so each fetch's Messages were promoted to the older generations before the application
reached them, and the full collections that followed walked the whole heap: 15% of an
``async for`` client's CPU on Kafka 4.4 (docs/performance.md).  Buffered here, a record stays
the tuple the record reader decoded (the collector stops tracking a tuple of atoms at its
first look), and its Message lives only while the application holds it.

Compiled with mypyc (``aioshare/_compiled.py``): every record handed out passes through
``pop_held`` or ``take_held``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection

from aioshare.protocol.record_reader import RecordFields
from aioshare.protocol.types import TopicIdPartition
from aioshare.share.leases import Lease, LeaseTable
from aioshare.share.message import DeliveryContext, Message

__all__ = ["ReadyBuffer"]


class _Range:
    """Records of one acquired range, delivered together: their Messages share all but the
    record (``next`` is the first not yet handed out)."""

    def __init__(
        self,
        ctx: DeliveryContext,
        records: list[RecordFields],
        delivery_count: int,
        deadline: float,
        lease: Lease | None,
    ) -> None:
        self.ctx = ctx
        self.records = records
        self.next = 0
        self.delivery_count = delivery_count
        self.deadline = deadline
        self.lease = lease  # the lease the records were acquired under: a lookup hint


class ReadyBuffer:
    """Fetched records in delivery order, handed out as Messages while their lock holds."""

    def __init__(self) -> None:
        self._ranges: deque[_Range] = deque()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def add(
        self,
        ctx: DeliveryContext,
        records: list[RecordFields],
        delivery_count: int,
        deadline: float,
        lease: Lease | None,
    ) -> None:
        """Buffer one acquired range's records (offset order), delivered ``delivery_count``
        times, locked until ``deadline``.  ``records`` is kept, not copied."""
        if records:
            self._ranges.append(_Range(ctx, records, delivery_count, deadline, lease))
            self._count += len(records)

    def move_from(self, other: ReadyBuffer) -> None:
        """Append everything ``other`` buffers, in its order, and empty it."""
        self._ranges.extend(other._ranges)
        self._count += other._count
        other._ranges.clear()
        other._count = 0

    def pop_held(self, leases: LeaseTable, now: float) -> Message | None:
        """The next record still held, as a Message, or None when none is left.

        Records whose delivery ended while they waited (the lock ran out - already reported -
        or replaced) are dropped.  Buffered records are not acknowledged, so no settlement
        pending in the lease table is theirs: ``holding_unacked`` leaves those pending
        (``holding`` would apply them: a flush per record when the application acknowledges
        each one before taking the next).
        """
        ranges = self._ranges
        while ranges:
            run = ranges[0]
            records = run.records
            index = run.next
            rec = records[index]
            index += 1
            if index == len(records):
                ranges.popleft()
            else:
                run.next = index
            self._count -= 1
            lease = leases.holding_unacked(run.ctx.tp, rec[0], run.delivery_count, now, run.lease)
            if lease is not None:
                return Message(run.ctx, rec, run.delivery_count, run.deadline, run.lease)
        return None

    def take_held(self, out: list[Message], limit: int, leases: LeaseTable, now: float) -> None:
        """Append records still held to ``out`` as Messages until it has ``limit``
        (``pop_held`` for many)."""
        n = len(out)
        ranges = self._ranges
        while ranges and n < limit:
            run = ranges[0]
            records = run.records
            index = run.next
            end = min(len(records), index + limit - n)
            ctx, tp, count, deadline, hint = run.ctx, run.ctx.tp, run.delivery_count, run.deadline, run.lease
            while index < end:
                rec = records[index]
                index += 1
                if leases.holding_unacked(tp, rec[0], count, now, hint) is not None:
                    out.append(Message(ctx, rec, count, deadline, hint))
                    n += 1
            self._count -= index - run.next
            if index == len(records):
                ranges.popleft()
            else:
                run.next = index

    def drop_partitions(self, tps: Collection[TopicIdPartition]) -> None:
        """Forget the records of ``tps`` (no longer ours)."""
        kept = [run for run in self._ranges if run.ctx.tp not in tps]
        self._ranges.clear()
        self._ranges.extend(kept)
        self._count = sum(len(run.records) - run.next for run in kept)

    def clear(self) -> None:
        self._ranges.clear()
        self._count = 0
