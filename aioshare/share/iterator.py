"""What ``async for msg in consumer`` iterates: runs of buffered records served at C speed.

``ShareConsumer.__anext__`` does the bookkeeping a record served to the application needs:
Demand counts it, and a fetch ahead goes out when one is due.  Within a run it has nothing
to do: the consumer found that no fetch ahead can be due before ``run`` more records are
served, and Demand's ``took_one`` would change nothing before ``fresh_until``.  Those records
only need the lease check (``ReadyBuffer.pop_held``).  This class serves them; it is compiled with mypyc
(``aioshare/_compiled.py``), where the coroutine an ``async for`` step creates, the clock
read and the pop cost less than half what the same lines cost as a Python method of the
consumer (docs/performance.md).

The consumer owns the iterator and drives ``run``: it starts a run after a record it served
with the bookkeeping, and ends it whenever a waiting caller must see something (records, a
failure, ``close()``).  Everything outside a run goes to the consumer's ``__anext__``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aioshare.share.buffer import ReadyBuffer
from aioshare.share.demand import Demand
from aioshare.share.leases import LeaseTable
from aioshare.share.message import Message

__all__ = ["ConsumerIterator"]


class ConsumerIterator:
    """The async iterator ``ShareConsumer.__aiter__`` returns (one per consumer)."""

    def __init__(
        self,
        ready: ReadyBuffer,
        leases: LeaseTable,
        demand: Demand,
        next_message: Callable[[], Awaitable[Message]],
    ) -> None:
        self._ready = ready  # the consumer's buffer: records fetched, not yet handed out
        self._leases = leases
        self._demand = demand
        self._next_message = next_message  # the consumer's __anext__: everything but runs
        self.clock: Callable[[], float] = time.monotonic  # the consumer's lock clock
        self.run = 0  # records it may still serve without the consumer's bookkeeping

    def __aiter__(self) -> ConsumerIterator:
        return self

    async def __anext__(self) -> Message:
        if self.run:
            now = self.clock()
            if now <= self._demand.fresh_until:
                served = self._ready.pop_held(self._leases, now)
                if served is not None:
                    self.run -= 1
                    return served
            self.run = 0
        return await self._next_message()
