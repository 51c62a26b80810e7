"""What a handler decided about a record, before the route's policy turns it into an ack.

A ``Decision`` is the handler's word (returned, raised, or said per record with
``msg.accept()`` and friends); the route's ``OutcomePolicy`` (aioshare.runtime.policy) then
decides what is done: a retry on the last permitted attempt becomes a dead-letter copy or a
REJECT, an undecodable record is never retried, and so on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ACCEPT", "Action", "Decision"]


class Action(enum.Enum):
    ACCEPT = "accept"
    RELEASE = "release"  # now, no delay
    RETRY = "retry"  # delayed release (delay None: the route's backoff)
    REJECT = "reject"
    FAIL = "fail"  # an unexpected exception: the route's on_error policy decides


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay: float | None = None
    error: BaseException | None = None
    reason: str = ""
    dead_letter: bool | None = None


ACCEPT = Decision(Action.ACCEPT)
