"""How many more records to fetch: the application's demand, under the ``max_in_flight`` ceiling.

``Demand`` (demand.py) says how many records the application is about to process; the
ceiling says how many it may hold at once.  ``held`` counts records acquired for this consumer and not yet settled (delivered or
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
``set_limit`` changes it at run time.  ``demand`` and ``buffered`` (records fetched and not yet
handed out) come from the consumer; without them (``demand=None``) the ceiling alone sizes
fetches.
"""

from __future__ import annotations

from collections.abc import Callable

from aioshare.share.demand import Demand

__all__ = ["Capacity", "default_max_in_flight"]


def default_max_in_flight(max_poll_records: int, partitions: int) -> int:
    """``max_in_flight`` when the application leaves it to us: twice ``max_poll_records`` (the
    batch being worked on and the fetch ahead) per assigned partition, for at most two.

    With Kafka's default of 500 that is 1000 records on one partition, half of its in-flight
    window on the broker (``group.share.partition.max.record.locks``, 2000): a consumer near a
    whole window gets short or empty fetches.  With several partitions the held records spread
    over their windows, and 2000 halves the requests: a ShareFetch costs a round trip of a few
    ms whatever its size, so where the work on 1000 records takes less, records per request set
    the pace (docs/performance.md).
    """
    return 2 * max_poll_records * min(max(partitions, 1), 2)


class Capacity:
    __slots__ = (
        "_buffered",
        "_fetchers",
        "_held",
        "_on_release",
        "_waits",
        "demand",
        "limit",
        "reserved",
        "speculative",
        "stopped",
        "wake_below",
    )

    def __init__(
        self,
        limit: int,
        held: Callable[[], int],
        on_release: Callable[[], None] = lambda: None,
        *,
        demand: Demand | None = None,
        buffered: Callable[[], int] = lambda: 0,
    ) -> None:
        if limit < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.limit = limit
        self._held = held
        self._on_release = on_release
        self.demand = demand
        self._buffered = buffered
        self._fetchers: set[int] = set()
        self._waits: dict[int, int] = {}
        self.reserved = 0
        self.speculative = 0  # of ``reserved``: by fetches to leaders whose last fetch brought nothing
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
        room = self.limit - self._held() - self.reserved
        if self.demand is not None and room > 0:
            # A long poll on a leader that had nothing last time is not counted as on its way:
            # it would otherwise keep the demand "met" while another leader that has the
            # records gets no share (an idle leader re-reserves the moment its poll returns).
            room = min(room, self.demand.target(self._buffered(), self.on_the_way))
        return max(0, room)

    @property
    def on_the_way(self) -> int:
        """Records reserved by fetches that are expected to bring them (not speculative)."""
        return self.reserved - self.speculative

    def callers_waiting(self) -> bool:
        """Whether a fetch now would be for a caller that waits (not only fetched ahead):
        ``Demand.caller_waits``; always, without a demand."""
        return self.demand is None or self.demand.caller_waits(self._buffered())

    def share(self) -> int:
        """The most one fetch may reserve: an equal part of the demand (or, without one, of
        the limit) per fetching leader."""
        n = max(1, len(self._fetchers))
        total = self.limit
        if self.demand is not None:
            total = min(total, self.demand.target(self._buffered(), 0))
        return max(1, -(-total // n))

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

    def reserve(self, want: int, *, speculative: bool = False) -> int:
        """Reserve up to ``want`` records (capped by the share); returns how many, 0 when full.

        ``speculative``: for a leader whose last fetch brought nothing (see ``free``)."""
        n = min(want, self.free(), self.share())
        self.reserved += n
        if speculative:
            self.speculative += n
        return n

    def unreserve(self, n: int, *, speculative: bool = False) -> None:
        self.reserved -= n
        if speculative:
            self.speculative -= n
        if self.reserved < 0 or self.speculative < 0:
            raise AssertionError("capacity reservation went negative")
        if n:
            self._on_release()
