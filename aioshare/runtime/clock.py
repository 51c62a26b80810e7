"""The clock the runtime's timers read: the event loop's, or a hand-driven one for tests.

Every deadline the runtime keeps (retry delays, lock renewals) is compared against
``Clock.time()``, and the one timer task sleeps through ``Clock.wait()``.  In production that
is the event loop's monotonic clock, the same one ``Message.lock_expires_at`` is expressed
in.  Tests swap in ``ManualClock`` so a 15-minute retry delay passes in one ``advance()``
call instead of a sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "LoopClock", "ManualClock", "time_source"]


class Clock(Protocol):
    def time(self) -> float:
        """Now, in seconds, on the same scale as ``lock_expires_at``."""
        ...

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        """Return when ``event`` is set or ``deadline`` (None: never) has passed."""
        ...


class LoopClock:
    """The running event loop's clock (``loop.time()``, monotonic)."""

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        if deadline is None:
            await event.wait()
            return
        try:
            async with asyncio.timeout_at(deadline):
                await event.wait()
        except TimeoutError:
            pass


def time_source(clock: Clock) -> Callable[[], float]:
    """``clock.time`` as cheap as it gets: for a ``LoopClock``, the running loop's own ``time``
    (call it in the loop that will use it)."""
    if isinstance(clock, LoopClock):
        return asyncio.get_running_loop().time
    return clock.time


class ManualClock:
    """A clock that moves only when told to (``advance``): deterministic timer tests.

    A waiter whose deadline is reached by ``advance`` gets its event set; the waiting code
    re-reads its own state after any wake-up, so setting the event is all it needs.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._waiters: list[tuple[float, asyncio.Event]] = []

    def time(self) -> float:
        return self.now

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        if deadline is not None and deadline <= self.now:
            return
        entry = None
        if deadline is not None:
            entry = (deadline, event)
            self._waiters.append(entry)
        try:
            await event.wait()
        finally:
            if entry is not None and entry in self._waiters:
                self._waiters.remove(entry)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self.now += seconds
        for deadline, event in list(self._waiters):
            if deadline <= self.now:
                event.set()

    @property
    def waiting(self) -> int:
        """How many waits with a deadline are pending (tests wait for the timer to sleep)."""
        return len(self._waiters)
