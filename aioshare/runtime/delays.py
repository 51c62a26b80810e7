"""One timer for the whole app, and the bound on records held on retry delays.

``Scheduler``: a heap of deadlines on the runtime's ``Clock`` and one task that sleeps until
the first.  The runtime's per-record deadlines (lock renewals, retry delays) are kept by
each consumer's keep-alive (``msg.keep_alive()``), not here; what is left are the app's own
few timers (the record log's rate-limit windows), which follow the runtime's clock so tests
can drive them with a ``ManualClock``.  Cancelled entries stay in the heap (cancelling is
O(1)) and are dropped when they reach the top, or all at once when they outnumber the live
ones.

Callbacks are plain functions and must not block.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Callable

from aioshare.runtime.clock import Clock

__all__ = ["DelayBudget", "Scheduler", "TimerHandle"]

log = logging.getLogger(__name__)

_COMPACT_MIN = 64  # below this many cancelled entries the heap is left alone


class TimerHandle:
    __slots__ = ("_scheduler", "callback", "when")

    def __init__(self, scheduler: Scheduler, when: float, callback: Callable[[], None]) -> None:
        self._scheduler = scheduler
        self.when = when
        self.callback: Callable[[], None] | None = callback

    @property
    def cancelled(self) -> bool:
        return self.callback is None

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None  # also drops the reference to the record it closes over
            self._scheduler.cancelled_one()


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = 0  # ties broken by insertion order, never by comparing handles
        self._cancelled = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Live (not cancelled) entries."""
        return len(self._heap) - self._cancelled

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(self, when, callback)
        self._seq += 1
        earliest = self._heap[0][0] if self._heap else math.inf
        heapq.heappush(self._heap, (when, self._seq, handle))
        if when < earliest:
            self._changed.set()  # the sleeping task must wake earlier than it planned
        return handle

    def next_deadline(self) -> float | None:
        self._drop_cancelled_top()
        return self._heap[0][0] if self._heap else None

    # -- the task ----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="aioshare-runtime-timer")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def run(self) -> None:
        while True:
            # Cleared before reading the heap, so a call_at() after this point is seen.
            self._changed.clear()
            self.fire_due()
            await self.clock.wait(self._changed, self.next_deadline())

    def fire_due(self) -> int:
        """Run every callback whose time has come; returns how many ran."""
        now = self.clock.time()
        heap = self._heap
        fired = 0
        while heap and heap[0][0] <= now:
            _, _, handle = heapq.heappop(heap)
            callback = handle.callback
            if callback is None:
                self._cancelled -= 1
                continue
            handle.callback = None
            fired += 1
            try:
                callback()
            except Exception:
                # One broken callback must not stop the timer every other record relies on.
                log.exception("runtime timer callback failed")
        return fired

    # -- housekeeping ------------------------------------------------------------------

    def cancelled_one(self) -> None:
        """A handle was cancelled (``TimerHandle.cancel``): compact the heap when it is mostly dead."""
        self._cancelled += 1
        if self._cancelled >= _COMPACT_MIN and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].callback is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _drop_cancelled_top(self) -> None:
        heap = self._heap
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)
            self._cancelled -= 1


class DelayBudget:
    """How many records the whole app may hold on retry delays at once.

    A delayed record keeps its lock (renewed by its consumer's keep-alive) and its place in
    its consumer's in-flight budget; the bound keeps a failing downstream from turning into an ever-growing set of
    held records.  Past it, a retry becomes an immediate RELEASE.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("max_delayed must be >= 0")
        self.limit = limit
        self.used = 0

    def take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def give_back(self) -> None:
        self.used -= 1
