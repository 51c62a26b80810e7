"""Handler slots: a counting limit whose waiters are served highest priority first.

Each route has one (its ``concurrency``); an app with ``max_concurrency`` has one more,
shared by every route, where a route's ``priority`` orders the waiters: when a slot frees,
it goes to the waiting job of the highest-priority route (first come, first served within
a priority).  A freed slot is handed straight to the chosen waiter, so a job that arrives
later can never overtake one already queued; ``keep()`` lets a holder go on with its next
job only when no waiter is owed the slot.

``wait_free()`` lets a fetch loop wait for room without taking a slot: a route fetches only
while a process-wide slot is free.
"""

from __future__ import annotations

import asyncio
import heapq

__all__ = ["Limiter"]


class Limiter:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a limit must be >= 1")
        self.limit = limit
        self.used = 0
        self._seq = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # (-priority, seq, future)
        self._watchers: list[asyncio.Future[None]] = []  # wait_free() callers

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    def try_acquire(self) -> bool:
        if self.used < self.limit and not self._waiters:
            self.used += 1
            return True
        return False

    async def acquire(self, priority: int = 0) -> None:
        if self.try_acquire():
            return
        self._seq += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, self._seq, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we were cancelled: pass it on
            else:
                self._forget(fut)
            raise

    def release(self) -> None:
        if self.used <= 0:
            raise RuntimeError("Limiter released more often than acquired")
        self.used -= 1
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                self.used += 1
                fut.set_result(None)
                return
        if self._watchers:
            watchers, self._watchers = self._watchers, []
            for watcher in watchers:
                if not watcher.done():
                    watcher.set_result(None)

    def keep(self, priority: int = 0) -> bool:
        """For a holder about to start another job of ``priority``: keep its slot (True)
        unless a waiter of the same or a higher priority is owed it - then the slot goes to
        that waiter, as ``release()`` would give it (False)."""
        waiters = self._waiters
        while waiters and waiters[0][2].done():
            heapq.heappop(waiters)  # cancelled
        if waiters and -waiters[0][0] >= priority:
            self.release()
            return False
        return True

    async def wait_free(self) -> None:
        """Return once a slot is free (without taking it)."""
        while self.used >= self.limit:
            watcher: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._watchers.append(watcher)
            await watcher

    def _forget(self, fut: asyncio.Future[None]) -> None:
        self._waiters = [w for w in self._waiters if w[2] is not fut]
        heapq.heapify(self._waiters)
