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

__all__ = ["MAX_AHEAD_BATCHES", "PIPELINE_SHARE", "STALL_SHARE", "TOOK_ONE_RESOLUTION", "Demand"]

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
# Until a fetch response says otherwise: Kafka's default group.share.record.lock.duration.ms.
DEFAULT_LOCK_SECONDS = 30.0
# took_one's figures change only when the application pauses or the distance changes, so the
# iterator skips it for records served within this long of the last one it counted (it cost
# 0.15 of the iterator's 1.5 µs per record).  Stall and pipelining times are off by at most
# this much, against windows of a quarter of the lock (at least 250 ms).
TOOK_ONE_RESOLUTION = 0.001


class Demand:
    __slots__ = (
        "_last_took",
        "ahead",
        "ahead_batches",
        "asked",
        "fetch_ahead",
        "fresh_until",
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

    def took_one(self, batch: int, now: float) -> None:
        """``begin`` + ``end`` for a call served one buffered record without waiting (the
        iterator's common case: it skips the call until ``fresh_until``, see
        TOOK_ONE_RESOLUTION)."""
        if self._last_took is not None:
            self.pipelining = now - self._last_took <= self.lock * PIPELINE_SHARE
        self.last_asked = self._last_took = now
        self.ahead = batch * self.ahead_batches if self.pipelining and self.fetch_ahead else 0
        # Not fetching ahead: the next call may turn it on, so it is always counted.
        self.fresh_until = now + TOOK_ONE_RESOLUTION if self.ahead else -math.inf

    def arrived(self, count: int, asked: int, unread: int, limit: int) -> None:
        """A fetch brought ``count`` records of the ``asked``; ``unread`` were still buffered;
        ``limit`` is the ``max_in_flight`` ceiling (no use reaching further ahead than it).

        Sets how far ahead the next fetches reach (see "how far ahead" above); the new
        distance applies from the application's next call.
        """
        if not self.ahead:
            return
        if self.asked and not unread and count >= asked:
            if self.ahead_batches < MAX_AHEAD_BATCHES and self.ahead < limit:
                self.ahead_batches *= 2
                self.fresh_until = -math.inf
        elif unread > self.ahead // 4 and self.ahead_batches > 1:
            self.ahead_batches //= 2
            self.fresh_until = -math.inf

    def caller_waits(self, buffered: int) -> bool:
        """A caller waits and nothing is ``buffered`` for it: what is fetched now is its (so
        the fetch may long-poll).  A waiting caller takes what is buffered and returns: once
        anything is, more is fetched only as fetching ahead (found when the fetch after the
        last records long-polled for a caller about to return, and a commit's acks waited
        behind it)."""
        return self.asked > 0 and not buffered

    def ahead_due(self, pending: int) -> bool:
        """With ``pending`` records buffered or on their way, the next fetch ahead is due:
        they are down to half of what is fetched ahead."""
        return self.ahead > 0 and pending <= self.ahead // 2

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
