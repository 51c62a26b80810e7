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
  the way is down to half a batch, so at most about one batch waits.  ``fetch_ahead=False``
  turns this off for a caller whose calls already say what it can take (the runtime asks
  for its free handler slots, and asks again while handlers run).
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

__all__ = ["PIPELINE_SHARE", "STALL_SHARE", "Demand"]

# Fractions of the acquisition lock duration.  A record fetched ahead waits at most about one
# cycle, so with cycles under a quarter of the lock it still has most of its lock left when
# handed out, and at most a quarter of it is lost when the application stalls.
PIPELINE_SHARE = 0.25
STALL_SHARE = 0.25
# Until a fetch response says otherwise: Kafka's default group.share.record.lock.duration.ms.
DEFAULT_LOCK_SECONDS = 30.0


class Demand:
    __slots__ = ("_last_took", "ahead", "asked", "fetch_ahead", "last_asked", "lock", "pipelining")

    def __init__(self, lock: float = DEFAULT_LOCK_SECONDS, *, fetch_ahead: bool = True) -> None:
        self.fetch_ahead = fetch_ahead
        self.asked = 0  # records waiting callers want
        self.ahead = 0  # the batch to fetch ahead while the application keeps up
        self.pipelining = True  # cycles so far were short enough to fetch ahead
        self.lock = lock  # the lock duration in seconds, as the brokers report it
        self.last_asked = -math.inf  # when the application last called for records
        self._last_took: float | None = None  # when a call last returned records

    def set_lock(self, seconds: float) -> None:
        if seconds > 0:
            self.lock = seconds

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
        if took:
            self._last_took = now
            self.ahead = batch if self.pipelining and self.fetch_ahead else 0

    def took_one(self, batch: int, now: float) -> None:
        """``begin`` + ``end`` for a call served one buffered record without waiting (the
        iterator's common case, once per record, so it is kept to a few assignments)."""
        if self._last_took is not None:
            self.pipelining = now - self._last_took <= self.lock * PIPELINE_SHARE
        self.last_asked = self._last_took = now
        self.ahead = batch if self.pipelining and self.fetch_ahead else 0

    def target(self, buffered: int, reserved: int) -> int:
        """How many more records to fetch now, before the ``max_in_flight`` ceiling.

        ``buffered``: fetched and not yet handed out; ``reserved``: asked for by fetches
        still on the way.
        """
        pending = buffered + reserved
        want = self.asked - pending
        if self.ahead and pending <= self.ahead // 2:
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
        self.pipelining = False
