"""How many more records the application can take (capacity-driven fetching).

``held`` counts records acquired for this consumer and not yet settled (delivered or
buffered, not acknowledged, not expired): the lease table already knows it.  A fetch
first *reserves* the records it may bring back, so leaders fetching concurrently cannot
together ask for more than is free; the reservation is returned when the response has
been turned into leases (which then count as held).

A long-polling fetch keeps its reservation for up to ``MaxWaitMs``, so one leader must not
reserve everything: each leader that has partitions to fetch gets at most an equal share
of the limit per fetch, and the others still find capacity while it waits.

Acks free capacity one record at a time, and waking every fetcher for each would cost a
fetcher turn per record.  A fetcher that waits for more free capacity says how much
(``wait_for``); ``wake_below`` is the held count at which some waiting fetcher would fetch,
and only an ack that brings ``held`` down to it wakes the fetchers.

``limit`` is ``max_in_flight``; ``stop()`` makes it 0 for good (no more fetching), and
``set_limit`` changes it at run time.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Capacity"]


class Capacity:
    __slots__ = ("_fetchers", "_held", "_on_release", "_waits", "limit", "reserved", "stopped", "wake_below")

    def __init__(
        self, limit: int, held: Callable[[], int], on_release: Callable[[], None] = lambda: None
    ) -> None:
        if limit < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.limit = limit
        self._held = held
        self._on_release = on_release
        self._fetchers: set[int] = set()
        self._waits: dict[int, int] = {}
        self.reserved = 0
        self.stopped = False
        self.wake_below = -1

    def set_limit(self, limit: int) -> None:
        """A new ``max_in_flight``; a stopped capacity stays at 0."""
        if limit < 1:
            raise ValueError("max_in_flight must be >= 1")
        if not self.stopped:
            self.limit = limit
        self._waits.clear()
        self.wake_below = -1
        self._on_release()

    def stop(self) -> None:
        """No more records: every fetch from now on finds no free capacity."""
        self.stopped = True
        self.limit = 0
        self._waits.clear()
        self.wake_below = -1

    @property
    def held(self) -> int:
        return self._held()

    def free(self) -> int:
        return max(0, self.limit - self._held() - self.reserved)

    def share(self) -> int:
        """The most one fetch may reserve: an equal part of the limit per fetching leader."""
        n = max(1, len(self._fetchers))
        return max(1, -(-self.limit // n))

    def set_fetching(self, fetcher: int, fetching: bool) -> None:
        """Whether ``fetcher`` has partitions to fetch (and so wants a share)."""
        if fetching:
            self._fetchers.add(fetcher)
        else:
            self._fetchers.discard(fetcher)

    def wait_for(self, fetcher: int, free: int) -> None:
        """``fetcher`` would fetch once ``free`` records are free: wake it then."""
        self._waits[fetcher] = self.limit - self.reserved - free
        self.wake_below = max(self._waits.values())

    def done_waiting(self, fetcher: int) -> None:
        if self._waits.pop(fetcher, None) is not None:
            self.wake_below = max(self._waits.values(), default=-1)

    def reserve(self, want: int) -> int:
        """Reserve up to ``want`` records (capped by the share); returns how many, 0 when full."""
        n = min(want, self.free(), self.share())
        self.reserved += n
        return n

    def unreserve(self, n: int) -> None:
        self.reserved -= n
        if self.reserved < 0:
            raise AssertionError("capacity reservation went negative")
        if n:
            self._on_release()
