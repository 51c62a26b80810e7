"""What a handler decided about a record, before the route's policy turns it into an ack.

A ``Decision`` is the handler's word (returned, raised, or said per record with
``msg.accept()`` and friends); ``Route`` policy then decides what is sent: a retry on the
last permitted attempt becomes a dead-letter copy or a REJECT, an undecodable record is
never retried, and so on (see ``RouteRunner._apply``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ACCEPT", "Action", "Decision", "State"]


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


class State(enum.IntEnum):
    """Where a held record is; every state but DONE keeps its lock renewed."""

    QUEUED = 0  # received, waiting for a handler slot (or its key's turn)
    RUNNING = 1  # its handler is running
    DEAD_LETTERING = 2  # its copy is being produced to the dead-letter topic
    DELAYED = 3  # waiting out a retry delay, then RELEASE
    DONE = 4  # settled (or its lock was lost): the runtime no longer holds it
