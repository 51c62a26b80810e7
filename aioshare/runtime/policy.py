"""The outcome policy: what the runtime does with a record once its handler has spoken.

A pure function: the handler's word (a ``Decision``: returned, raised, or said per record),
the record's delivery count and the route's configuration give a ``Settlement`` - ACCEPT,
RELEASE now, RETRY (hold ``delay`` seconds, then RELEASE), REJECT, or DEAD_LETTER (copy it
to the dead-letter topic, then REJECT).  It performs nothing, reads no clock and keeps no
state (the one random draw, the backoff's jitter, comes from the ``rand`` it is given), so
every rule is tested as a table (tests/runtime/test_policy.py).

The rules (docs/runtime.md, "Outcomes"):

* return → ACCEPT;
* ``Reject`` / ``msg.reject()`` → DEAD_LETTER (reason "rejected") when asked for
  (``dead_letter=True``, or the route's ``dead_letter_on_reject``) and the route has a
  dead-letter topic, else REJECT (with the handler's reason);
* an undecodable record (``DeserializationError``) is never retried: given up;
* another exception follows ``on_error``: "reject" gives up, "release" RELEASEs now,
  "retry" RETRYs after the route's backoff;
* a RELEASE or RETRY on the last permitted attempt is *exhausted*: given up.  The last
  permitted attempt is ``min(max_attempts, delivery_count_limit)``: the group's
  ``share.delivery.count.limit``, once the runtime has read it, because the broker archives a
  record released on that delivery instead of delivering it again;
* given up = DEAD_LETTER when the route has a dead-letter topic, else REJECT;
* a retry delay is the one asked for, or the backoff's, capped at ``max_retry_delay``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from aioshare.runtime.outcomes import Action, Decision
from aioshare.runtime.retry import Backoff
from aioshare.share.deserialize import DeserializationError

__all__ = ["ACCEPTED", "OutcomePolicy", "Settlement", "Verdict"]


class Verdict(enum.Enum):
    ACCEPT = "accept"
    RELEASE = "release"  # now
    RETRY = "retry"  # hold ``delay`` seconds (renewing the lock), then RELEASE
    REJECT = "reject"
    DEAD_LETTER = "dead_letter"  # a confirmed copy to the dead-letter topic, then REJECT


@dataclass(frozen=True, slots=True)
class Settlement:
    """What to do with one record, and why (``reason`` and ``error`` go to events and logs)."""

    verdict: Verdict
    reason: str = ""
    error: BaseException | None = None
    delay: float = 0.0  # RETRY: seconds until the RELEASE
    capped_from: float | None = None  # RETRY: the delay asked for, when above max_retry_delay


ACCEPTED = Settlement(Verdict.ACCEPT)


@dataclass(frozen=True, slots=True)
class OutcomePolicy:
    """A route's outcome rules (``Route`` fields, and the app's ``max_retry_delay``)."""

    on_error: str = "retry"  # "retry" | "release" | "reject"
    retry: Backoff | None = None
    max_attempts: int | None = None
    dead_letter_topic: str | None = None
    dead_letter_on_reject: bool = False
    max_retry_delay: float = 900.0
    delivery_count_limit: int | None = None  # the group's, when known (read at route start)

    def settle(self, decision: Decision, delivery_count: int, rand: Callable[[], float]) -> Settlement:
        """The settlement of a record delivered ``delivery_count`` times that got ``decision``."""
        action = decision.action
        error = decision.error
        if action is Action.ACCEPT:
            return ACCEPTED
        if action is Action.REJECT:
            wants_copy = (
                decision.dead_letter if decision.dead_letter is not None else self.dead_letter_on_reject
            )
            if wants_copy and self.dead_letter_topic is not None:
                return Settlement(Verdict.DEAD_LETTER, "rejected", error)  # the copy's reason header
            return Settlement(Verdict.REJECT, decision.reason or "rejected", error)
        reason = decision.reason
        delay = decision.delay
        if action is Action.FAIL:
            if isinstance(error, DeserializationError):
                return self._give_up("undecodable", error)  # retrying cannot make bytes decode
            if self.on_error == "reject":
                return self._give_up("error", error)
            action = Action.RELEASE if self.on_error == "release" else Action.RETRY
            reason, delay = "handler", None
        if self.final_attempt(delivery_count):
            return self._give_up("exhausted", error)
        if action is Action.RELEASE:
            return Settlement(Verdict.RELEASE, reason or "release", error)
        if delay is None:
            delay = self.retry.delay(delivery_count, rand) if self.retry is not None else 0.0
        if delay > self.max_retry_delay:
            return Settlement(Verdict.RETRY, "retry", error, self.max_retry_delay, capped_from=delay)
        return Settlement(Verdict.RETRY, "retry", error, delay)

    @property
    def last_attempt(self) -> int | None:
        """The last delivery a record may be released after to be tried again: the lower of
        ``max_attempts`` and the group's delivery-count limit (None: no bound known)."""
        bounds = [b for b in (self.max_attempts, self.delivery_count_limit) if b is not None]
        return min(bounds) if bounds else None

    def final_attempt(self, delivery_count: int) -> bool:
        """Whether a record delivered ``delivery_count`` times is on its last permitted attempt."""
        last = self.last_attempt
        return last is not None and delivery_count >= last

    def gives_up_on_failure(self, error: BaseException, delivery_count: int) -> bool:
        """Whether a handler exception ``error`` gives the record up (dead-letter or REJECT)
        rather than retrying it: its final attempt, for the log."""
        if isinstance(error, DeserializationError) or self.on_error == "reject":
            return True
        return self.final_attempt(delivery_count)

    def _give_up(self, reason: str, error: BaseException | None) -> Settlement:
        verdict = Verdict.DEAD_LETTER if self.dead_letter_topic is not None else Verdict.REJECT
        return Settlement(verdict, reason, error)
