"""Retry policy and the exceptions a handler raises to choose a record's outcome.

``Backoff`` turns the broker's delivery count into a delay: delivery 1 failed → ``initial``,
each later delivery multiplies by ``multiplier``, capped at ``max``.  With ``jitter`` the
delay is drawn uniformly from [d/2, d] ("equal jitter"): records that failed together do
not all come back in the same instant, and no delay exceeds ``max`` or drops below half of
the schedule (a full-jitter draw near 0 would turn a backoff into a hot retry loop).

Handler-facing exceptions:

* ``Retry(delay=5)`` - hold the record for 5 s (renewing its lock), then RELEASE it;
  ``Retry()`` uses the route's backoff.
* ``Reject("why")`` - REJECT it (archived, never redelivered); ``Reject(dead_letter=True)``
  copies it to the route's dead-letter topic first.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from aioshare.protocol.errors import ConfigError

__all__ = ["Backoff", "Reject", "Retry"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between deliveries of a failed record (seconds)."""

    initial: float = 1.0
    max: float = 60.0
    multiplier: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not (self.initial >= 0 and math.isfinite(self.initial)):
            raise ConfigError(f"Backoff.initial must be a finite number >= 0, not {self.initial!r}")
        if not (self.max >= self.initial and math.isfinite(self.max)):
            raise ConfigError(f"Backoff.max ({self.max!r}) must be finite and >= initial ({self.initial!r})")
        if not (self.multiplier >= 1 and math.isfinite(self.multiplier)):
            raise ConfigError(f"Backoff.multiplier must be >= 1, not {self.multiplier!r}")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The delay after failed delivery number ``attempt`` (1 = the first delivery)."""
        n = max(0, attempt - 1)
        if self.initial == 0:
            base = 0.0
        elif self.multiplier == 1 or n * math.log(self.multiplier) < math.log(self.max / self.initial):
            # Only reached while the product stays below max, so ** cannot overflow.
            base = min(self.max, self.initial * self.multiplier**n)
        else:
            base = self.max
        if self.jitter:
            return base * (0.5 + 0.5 * rand())
        return base


class Retry(Exception):
    """Raise from a handler: release the record after ``delay`` seconds (None: the backoff).

    The record is held meanwhile - its lock renewed - so no other consumer gets it before
    the delay passes.  Each retry is one more delivery: the broker's delivery count, and
    with it ``max_attempts``, still apply.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        if delay is not None and not (delay >= 0 and math.isfinite(delay)):
            raise ValueError(f"Retry delay must be a finite number >= 0, not {delay!r}")
        super().__init__(reason or (f"retry in {delay}s" if delay is not None else "retry"))
        self.delay = delay
        self.reason = reason


class Reject(Exception):
    """Raise from a handler: REJECT the record (archived; never delivered again).

    ``dead_letter`` - True: copy it to the route's dead-letter topic first; False: never;
    None: the route's ``dead_letter_on_reject`` decides.
    """

    def __init__(self, reason: str = "", *, dead_letter: bool | None = None) -> None:
        super().__init__(reason or "rejected")
        self.reason = reason
        self.dead_letter = dead_letter
