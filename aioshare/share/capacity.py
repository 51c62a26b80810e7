"""How many more records the application can take (capacity-driven fetching).

``held`` counts records acquired for this consumer and not yet settled (delivered or
buffered, not acknowledged, not expired): the lease table already knows it.  A fetch
first *reserves* the records it may bring back, so leaders fetching concurrently cannot
together ask for more than is free; the reservation is returned when the response has
been turned into leases (which then count as held).

A long-polling fetch keeps its reservation for up to ``MaxWaitMs``, so one leader must not
reserve everything: each leader that has partitions to fetch gets at most an equal share
of the limit per fetch, and the others still find capacity while it waits.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Capacity"]


class Capacity:
    __slots__ = ("_fetchers", "_held", "_on_release", "limit", "reserved")

    def __init__(
        self, limit: int, held: Callable[[], int], on_release: Callable[[], None] = lambda: None
    ) -> None:
        if limit < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.limit = limit
        self._held = held
        self._on_release = on_release
        self._fetchers: set[int] = set()
        self.reserved = 0

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
