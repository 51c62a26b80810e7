"""Exponential backoff with jitter, shaped like Kafka's ExponentialBackoff.

Pure arithmetic: the caller owns the clock and the sleeping.  Defaults match the Java
client's ``retry.backoff.ms=100`` / ``retry.backoff.max.ms=1000`` / multiplier 2 / jitter 0.2.
"""

from __future__ import annotations

import math
import random

__all__ = ["Backoff"]


class Backoff:
    """Delay schedule ``initial * multiplier**attempt``, jittered by ±``jitter``, capped at ``maximum``.

    ``next_delay()`` returns the delay for the current attempt and counts it; ``reset()``
    after a success.  Pass a seeded ``random.Random`` to make the jitter reproducible.
    """

    __slots__ = ("_exp_cap", "_rng", "attempts", "initial", "jitter", "maximum", "multiplier")

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 1.0,
        multiplier: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if initial < 0 or maximum < 0:
            raise ValueError("backoff delays must be >= 0")
        if multiplier < 1:
            raise ValueError("backoff multiplier must be >= 1")
        if not 0 <= jitter < 1:
            raise ValueError("backoff jitter must be in [0, 1)")
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.multiplier = multiplier
        self.jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        # Beyond this exponent the un-jittered term already exceeds the cap, so larger
        # exponents only risk float overflow (Kafka computes the same bound).
        if multiplier > 1 and initial > 0 and self.maximum > initial:
            self._exp_cap = math.ceil(math.log(self.maximum / initial, multiplier)) + 1
        else:
            self._exp_cap = 0
        self.attempts = 0

    def delay(self, attempt: int) -> float:
        """The jittered delay for a given 0-based attempt number, without counting it."""
        exp = min(max(attempt, 0), self._exp_cap)
        term = self.initial * self.multiplier**exp
        if self.jitter > 0:
            term *= self._rng.uniform(1 - self.jitter, 1 + self.jitter)
        return min(term, self.maximum)

    def next_delay(self) -> float:
        value = self.delay(self.attempts)
        self.attempts += 1
        return value

    def reset(self) -> None:
        self.attempts = 0
