"""The held-record state machine: every state change of a record the runtime holds.

A record is *held* from the moment its consumer hands it to the runtime until the runtime
settles it (or loses its lock).  Its states::

    QUEUED ──start──▶ RUNNING ──delay──▶ DELAYED ─────────┐
      │                  │ └──dead_letter──▶ DEAD_LETTERING ┤
      │                  │                                  ▼
      └──────────────────┴────────────── finish ────────▶ DONE

* QUEUED: received, waiting for a handler slot (or its key's turn);
* RUNNING: its handler is running;
* DELAYED: waiting out a retry delay (its consumer keeps the lock, then RELEASEs it);
* DEAD_LETTERING: its copy is being produced to the dead-letter topic;
* DONE: settled, or its lock was lost; the runtime no longer holds it.

``HeldRecords`` is the only code that changes a record's ``state`` (h11's rule: every
transition in one place).  Any other move raises ``IllegalTransitionError``; so does leaving
DONE, which is final.  It also keeps what follows from the states: the index of held records
(consumer message → runtime message, for the consumer's callbacks), the held and delayed
counts, and the app-wide budget of delayed records (taken by ``delay``, given back when a
delayed record finishes).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Generic, TypeVar

from aioshare.protocol.errors import IllegalStateError
from aioshare.runtime.delays import DelayBudget

if TYPE_CHECKING:
    from aioshare.share.consumer import LockExpiry
    from aioshare.share.message import Message as ShareMessage

__all__ = ["HeldRecord", "HeldRecords", "IllegalTransitionError", "State"]


class State(enum.IntEnum):
    """Where a held record is; every state but DONE keeps its lock renewed."""

    QUEUED = 0
    RUNNING = 1
    DEAD_LETTERING = 2
    DELAYED = 3
    DONE = 4


class IllegalTransitionError(IllegalStateError):
    """A state change the held-record state machine does not allow (a runtime bug)."""

    def __init__(self, record: object, current: State, wanted: State) -> None:
        super().__init__(f"{record!r}: no transition from {current.name} to {wanted.name}")
        self.current = current
        self.wanted = wanted


class HeldRecord:
    """The runtime's bookkeeping of one delivery (``Message`` is one, and sets it up: a new
    record is QUEUED): read it anywhere, change it only through ``HeldRecords``.

    * ``share_message``: the consumer's own message (acknowledging it directly bypasses the
      runtime);
    * ``state``: where the record is;
    * ``received_at``: when the runtime got it (the runtime's clock);
    * ``lock_seen``: the lock deadline last reported - a later one at settle time means the
      consumer's keep-alive renewed it (it reports no event per RENEW).
    """

    __slots__ = ("lock_seen", "received_at", "share_message", "state")

    share_message: ShareMessage
    state: State
    received_at: float
    lock_seen: float


R = TypeVar("R", bound=HeldRecord)

_QUEUED, _RUNNING, _DEAD_LETTERING, _DELAYED, _DONE = State


class HeldRecords(Generic[R]):
    """The records one route holds, and every change of their state."""

    __slots__ = ("_budget", "_index", "delayed_count")

    def __init__(self, delay_budget: DelayBudget) -> None:
        self._budget = delay_budget
        # The consumer's message -> the runtime's record, for every held record.  No
        # per-offset index: the consumer reports a kept record's end per message, and
        # ranges (lock expiries) are rare enough to be matched by a scan.
        self._index: dict[ShareMessage, R] = {}
        self.delayed_count = 0

    # -- transitions ---------------------------------------------------------------------

    def receive(self, records: Iterable[R], now: float) -> None:
        """New deliveries (a fetched batch): held, QUEUED."""
        index = self._index
        for record in records:
            inner = record.share_message
            if record.state is not _QUEUED or inner in index:
                raise IllegalTransitionError(record, record.state, _QUEUED)
            record.received_at = now
            index[inner] = record

    def start(self, record: R) -> None:
        """QUEUED → RUNNING: its handler starts."""
        if record.state is not _QUEUED:
            raise IllegalTransitionError(record, record.state, _RUNNING)
        record.state = _RUNNING

    def delay(self, record: R) -> bool:
        """RUNNING → DELAYED if the app may hold one more delayed record; False (no change)
        when its budget is used up."""
        if record.state is not _RUNNING:
            raise IllegalTransitionError(record, record.state, _DELAYED)
        if not self._budget.take():
            return False
        record.state = _DELAYED
        self.delayed_count += 1
        return True

    def dead_letter(self, record: R) -> None:
        """RUNNING → DEAD_LETTERING: its dead-letter copy is being produced."""
        if record.state is not _RUNNING:
            raise IllegalTransitionError(record, record.state, _DEAD_LETTERING)
        record.state = _DEAD_LETTERING

    def finish(self, record: R) -> State:
        """Any state but DONE → DONE: no longer held.  Returns the state it left."""
        state = record.state
        if state is _DONE:
            raise IllegalTransitionError(record, state, _DONE)
        if state is _DELAYED:
            self.delayed_count -= 1
            self._budget.give_back()
        record.state = _DONE
        del self._index[record.share_message]
        return state

    def saw_lock(self, record: R, deadline: float) -> None:
        """The lock deadline ``deadline`` has been reported (an ``extend_lock()``)."""
        record.lock_seen = deadline

    # -- reading -------------------------------------------------------------------------

    @property
    def held_count(self) -> int:
        return len(self._index)

    def get(self, share_message: ShareMessage) -> R | None:
        return self._index.get(share_message)

    def all(self) -> list[R]:
        return list(self._index.values())

    def in_ranges(self, expiries: Iterable[LockExpiry]) -> list[R]:
        """The held records inside the offset ranges of ``expiries``."""
        found: list[R] = []
        for expiry in expiries:
            topic, partition = expiry.topic_partition
            first, last = expiry.first_offset, expiry.last_offset
            found += [
                record
                for inner, record in self._index.items()
                if first <= inner.offset <= last and inner.partition == partition and inner.topic == topic
            ]
        return found

    def count_by_partition(self) -> dict[tuple[str, int], int]:
        """Held records per (topic, partition) (built when asked: process reports)."""
        out: dict[tuple[str, int], int] = {}
        for inner in self._index:
            key = (inner.topic, inner.partition)
            out[key] = out.get(key, 0) + 1
        return out
