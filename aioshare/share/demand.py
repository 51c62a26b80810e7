"""What the application is about to process: the input that sizes every fetch (sans-IO).

A broker starts a record's acquisition lock when it hands the record out, not when the
application sees it, so a record fetched before anyone wants it spends its lock waiting in
a buffer - and when the application stops asking, a consumer that keeps fetching re-acquires
the group's records each time their locks run out, burning delivery attempts until Kafka
archives records no application ever saw.  So the consumer fetches for demand only:

* **asked** - records that callers blocked in ``getmany()`` / ``__anext__`` want now;
* **ahead** - while the application keeps up, the next batch is fetched while it works on
  the current one, so the round trip overlaps the work instead of a buffer hiding it.  It
  keeps up when it comes back for more within ``PIPELINE_SHARE`` of the lock duration after
  it took records (its *cycle*); the next batch is asked for once what is buffered and on
  the way is down to half of what is fetched ahead.  ``fetch_ahead=False`` turns this off
  for a caller whose calls already say what it can take (the runtime asks for its free
  handler slots, and asks again while handlers run).
* **how far ahead** - one batch, unless the application outpaces the round trip: a full
  fetch that finds a caller already waiting for it (nothing left of the previous one) shows
  the application had finished what was fetched ahead before more could arrive, so the next
  fetches ask for twice as much (up to ``MAX_AHEAD_BATCHES`` batches; the ``max_in_flight``
  ceiling still caps what is held).  Records fetched this way wait for nobody: the
  application drained the buffer before they came.  When a fetch arrives to find more than a
  quarter of what is fetched ahead still unread, the application is the slower side again
  and the distance halves - so a record waits at most about one round trip's worth of the
  application's work, and a slow phase after a fast one shrinks the buffer within a fetch.
  Java's client has no such distance: it fetches ``max.poll.records`` once its buffer is
  empty, so a fast loop waits a whole round trip per batch (docs/consumer.md).
* **when, at the ceiling** - once the distance cannot grow (``max_in_flight``), a fetch ahead
  sent at half the distance brings half of it.  Where a request costs more than the
  application's work on half the distance (measured on Kafka 4.4: about 2 ms per ShareFetch
  with its acks, whatever its size, against under 1 ms to handle 500 records), the caller
  waits for every fetch anyway and records per request set the pace.  So every ``WINDOW``
  fetches that arrive to find the caller waiting, the consumer compares, from their round
  trips and how long the application took over each, half the distance per request
  (overlapped with the work) with the whole distance per request sent once nothing is left
  (*drain first*), and the next fetches take the faster way.  Draining first ends when the
  application is not waiting as a fetch arrives, after a stall, and when a window of it
  measures fewer records per second than the last window at half the distance (a round trip
  that grows with the records: 1 KiB values on the embedded broker) - then it is tried again
  only after ``FIRST_HOLD_OFF`` fetches, twice as many each time it loses again.  Windows,
  not single fetches: Kafka's round trips vary from 2 to 10 ms between requests, and
  choosing by single fetches kept switching back (``async for`` drained first for a third of
  its fetches on Kafka 4.4).
* A buffer nobody has asked from for ``STALL_SHARE`` of the lock is *stalled*: the consumer
  gives its records back (one delivery attempt each, once per stall) and fetches nothing
  more until the application asks again.

Kafka's Java ``KafkaShareConsumer`` fetches only while ``poll()`` finds its buffer empty
and never ahead; pipelining one batch is what lets a loop that accepts each record run at
the broker's speed rather than one round trip per batch (docs/consumer.md).

Every method takes the time; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import math

__all__ = [
    "FIRST_HOLD_OFF",
    "MAX_AHEAD_BATCHES",
    "MAX_HOLD_OFF",
    "PIPELINE_SHARE",
    "STALL_SHARE",
    "TOOK_ONE_RESOLUTION",
    "WINDOW",
    "Demand",
]

# Fractions of the acquisition lock duration.  A record fetched ahead waits at most about one
# cycle, so with cycles under a quarter of the lock it still has most of its lock left when
# handed out, and at most a quarter of it is lost when the application stalls.
PIPELINE_SHARE = 0.25
STALL_SHARE = 0.25
# How many batches a fetch ahead may ask for when the application outpaces the round trip
# (the max_in_flight ceiling usually binds first).  Four of Kafka's default max.poll.records
# (500) fill a partition's default in-flight window on the broker
# (group.share.partition.max.record.locks, 2000); a member holding most of it gets short or
# empty fetches (docs/consumer.md, measured on Kafka 4.4).
MAX_AHEAD_BATCHES = 4
# Draining first that measured slower than half the distance is tried again only after this
# many fetches, twice as many each time it loses again (up to MAX_HOLD_OFF).
FIRST_HOLD_OFF = 8
MAX_HOLD_OFF = 1024
# Fetches at the ceiling measured together before the way fetches go out may change.
WINDOW = 8
# Until a fetch response says otherwise: Kafka's default group.share.record.lock.duration.ms.
DEFAULT_LOCK_SECONDS = 30.0
# took_one's figures change only when the application pauses or the distance changes, so the
# iterator skips it for records served within this long of the last one it counted (it cost
# 0.15 of the iterator's 1.5 µs per record).  Stall and pipelining times are off by at most
# this much, against windows of a quarter of the lock (at least 250 ms).
TOOK_ONE_RESOLUTION = 0.001


class Demand:
    __slots__ = (
        "_half_rate",
        "_hold_off",
        "_last_took",
        "_next_hold_off",
        "_settling",
        "_window_drained",
        "_window_n",
        "_window_records",
        "_window_rt",
        "_window_time",
        "ahead",
        "ahead_batches",
        "asked",
        "drain_first",
        "due_at",
        "fetch_ahead",
        "fresh_until",
        "last_arrival",
        "last_asked",
        "lock",
        "pipelining",
    )

    def __init__(self, lock: float = DEFAULT_LOCK_SECONDS, *, fetch_ahead: bool = True) -> None:
        self.fetch_ahead = fetch_ahead
        self.asked = 0  # records waiting callers want
        self.ahead = 0  # the records to fetch ahead while the application keeps up
        self.ahead_batches = 1  # ... in batches: more while the application outpaces fetches
        self.pipelining = True  # cycles so far were short enough to fetch ahead
        self.lock = lock  # the lock duration in seconds, as the brokers report it
        self.last_asked = -math.inf  # when the application last called for records
        self._last_took: float | None = None  # when a call last returned records
        # Until then took_one would change nothing: the iterator need not call it.
        self.fresh_until = -math.inf
        self.drain_first = False  # at the ceiling: fetch ahead once nothing is left ("when")
        self.due_at = 0  # the fetch ahead is due with this many records buffered or on the way
        self.last_arrival: float | None = None  # when the last fetch's records arrived
        self._half_rate = 0.0  # records/s measured over the last window at half the distance
        self._hold_off = 0  # fetches before draining first may be tried again
        self._next_hold_off = FIRST_HOLD_OFF
        # The measuring window (WINDOW fetches at the ceiling): one fetch's figures vary too
        # much to choose by (Kafka's round trips vary 2-10 ms from request to request).
        self._settling = False
        self._window_n = self._window_records = 0
        self._window_time = self._window_rt = self._window_drained = 0.0

    def set_lock(self, seconds: float) -> None:
        if seconds > 0:
            self.lock = seconds
            self.fresh_until = -math.inf

    def begin(self, now: float) -> None:
        """The application calls for records (served from the buffer or not)."""
        self.last_asked = now
        if self._last_took is not None:
            self.pipelining = now - self._last_took <= self.lock * PIPELINE_SHARE

    def wait(self, n: int) -> None:
        """A caller found nothing buffered and now waits for up to ``n`` records."""
        self.asked += n

    def end(self, waited: int, took: int, batch: int, now: float) -> None:
        """A call returns ``took`` records; it had waited for ``waited`` (0: it did not wait).

        ``batch`` is what one call takes at most (``max_records``, or ``max_poll_records``
        for the iterator): the size of the next batch fetched ahead.
        """
        self.asked = max(0, self.asked - waited)
        self.last_asked = now
        self.fresh_until = -math.inf  # ``batch`` may differ from the iterator's
        if took:
            self._last_took = now
            self.ahead = batch * self.ahead_batches if self.pipelining and self.fetch_ahead else 0
            self._retarget()

    def took_one(self, batch: int, now: float) -> None:
        """``begin`` + ``end`` for a call served one buffered record without waiting (the
        iterator's common case: it skips the call until ``fresh_until``, see
        TOOK_ONE_RESOLUTION)."""
        if self._last_took is not None:
            self.pipelining = now - self._last_took <= self.lock * PIPELINE_SHARE
        self.last_asked = self._last_took = now
        self.ahead = batch * self.ahead_batches if self.pipelining and self.fetch_ahead else 0
        self._retarget()
        # Not fetching ahead: the next call may turn it on, so it is always counted.
        self.fresh_until = now + TOOK_ONE_RESOLUTION if self.ahead else -math.inf

    def arrived(
        self,
        count: int,
        asked: int,
        unread: int,
        limit: int,
        now: float | None = None,
        round_trip: float = 0.0,
    ) -> None:
        """A fetch brought ``count`` records of the ``asked``; ``unread`` were still buffered;
        ``limit`` is the ``max_in_flight`` ceiling (no use reaching further ahead than it);
        it arrived at ``now``, ``round_trip`` seconds after it was sent (None, 0: not timed,
        the way fetches ahead go out stays as it is).

        Sets how far ahead the next fetches reach and when they go out (see "how far ahead"
        and "when, at the ceiling" above); the new distance applies from the application's
        next call.
        """
        previous, self.last_arrival = self.last_arrival, now
        if not self.ahead:
            return
        waiting = self.asked > 0 and not unread
        outpaced = waiting and count >= asked  # a full fetch found the caller waiting
        if outpaced:
            if self.ahead_batches < MAX_AHEAD_BATCHES and self.ahead < limit:
                self.ahead_batches *= 2
                self.fresh_until = -math.inf
                return
        elif unread > self.ahead // 4 and self.ahead_batches > 1:
            self.ahead_batches //= 2
            self.fresh_until = -math.inf
        if now is None or round_trip <= 0 or previous is None:
            return
        # The caller began waiting at its call (``begin``: last_asked), so it worked through
        # the previous fetch's records in ``drained``; one request costs about ``round_trip``
        # whatever its size (the fixed cost is what makes draining first pay).
        cycle, drained = now - previous, self.last_asked - previous
        if self.drain_first:
            if not waiting:
                self._half_distance()  # the application is the slower side again
            elif self._sample(count, cycle, round_trip, drained):
                if (
                    # Half the records per request, overlapped with the work: two requests
                    # per cycle, each taking the longer of the round trip and half the work.
                    2 * max(self._window_rt, self._window_drained / 2) < self._window_time
                    # Measured slower than half the distance was (a round trip that grows
                    # with the records, e.g. 1 KiB values on the embedded broker).
                    or self._window_rate() < self._half_rate
                ):
                    self._half_distance()
                else:
                    self._next_hold_off = FIRST_HOLD_OFF
                    self._restart_window()
            return
        if not outpaced:
            self._restart_window()  # the application kept up: these are not at the ceiling
            return
        if self._hold_off:
            self._hold_off -= 1
        if self._sample(count, cycle, round_trip, drained):
            self._half_rate = self._window_rate()
            # Twice the records per request, without the overlap: a cycle of one request and
            # twice the work, for two of these cycles.
            if not self._hold_off and self._window_rt + 2 * self._window_drained < 2 * self._window_time:
                self.drain_first = True
                self._retarget()
                self._settling = True
            self._restart_window()

    def _sample(self, count: int, cycle: float, round_trip: float, drained: float) -> bool:
        """One fetch's figures into the measuring window; True once it holds ``WINDOW``
        fetches.  The first fetch after a change of way is left out: it was sent the other way.
        The window keeps sums: the rules compare them as they would the averages."""
        if self._settling:
            self._settling = False
            return False
        self._window_n += 1
        self._window_records += count
        self._window_time += cycle
        self._window_rt += round_trip
        self._window_drained += drained
        return self._window_n >= WINDOW

    def _window_rate(self) -> float:
        return self._window_records / self._window_time if self._window_time > 0 else math.inf

    def _restart_window(self) -> None:
        self._window_n = self._window_records = 0
        self._window_time = self._window_rt = self._window_drained = 0.0

    def _half_distance(self) -> None:
        """Back to half the distance; draining first is tried again later, later each time it
        loses."""
        self.drain_first = False
        self._retarget()
        self._restart_window()
        self._settling = True
        self._hold_off = self._next_hold_off
        self._next_hold_off = min(2 * self._next_hold_off, MAX_HOLD_OFF)

    def _retarget(self) -> None:
        self.due_at = 0 if self.drain_first else self.ahead // 2

    def caller_waits(self, buffered: int) -> bool:
        """A caller waits and nothing is ``buffered`` for it: what is fetched now is its (so
        the fetch may long-poll).  A waiting caller takes what is buffered and returns: once
        anything is, more is fetched only as fetching ahead (found when the fetch after the
        last records long-polled for a caller about to return, and a commit's acks waited
        behind it)."""
        return self.asked > 0 and not buffered

    def ahead_due(self, pending: int) -> bool:
        """With ``pending`` records buffered or on their way, the next fetch ahead is due:
        they are down to half of what is fetched ahead (``due_at``; none left when draining
        first)."""
        return self.ahead > 0 and pending <= self.due_at

    def target(self, buffered: int, reserved: int) -> int:
        """How many more records to fetch now, before the ``max_in_flight`` ceiling.

        ``buffered``: fetched and not yet handed out; ``reserved``: asked for by fetches
        still on the way.
        """
        pending = buffered + reserved
        want = self.asked - reserved if self.caller_waits(buffered) else 0
        if self.ahead_due(pending):
            want = max(want, self.ahead - pending)
        return max(0, want)

    def stall_deadline(self) -> float:
        """When records still buffered count as stalled (nobody asked for them)."""
        if self.asked:
            return math.inf  # a caller waits: what arrives is its
        return self.last_asked + self.lock * STALL_SHARE

    def stalled(self) -> None:
        """The buffer was given back: fetch only for callers that wait, until cycles are short again."""
        self.ahead = 0
        self.ahead_batches = 1
        self.pipelining = False
        self.fresh_until = -math.inf
        self.drain_first = False
        self._half_rate = 0.0
        self._hold_off = 0
        self._next_hold_off = FIRST_HOLD_OFF
        self._settling = False
        self._restart_window()
        self._retarget()
