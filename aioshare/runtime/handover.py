"""Handing held records to their consumer's keep-alive, a moment after they arrive.

Most records are settled within a moment of their arrival, and a keep-alive costs the
consumer a timer entry (~2.5 us a record) that an immediate ACCEPT would only cancel again.
So a record is handed over (``msg.keep_alive()``: the consumer RENEWs its lock until it is
acknowledged) only if it is still held ``wait`` seconds after it arrived - 1 s, or 5 % of its
lock if that is less.

One timer per route at a time, not one per batch: a timer that held its batch would keep
every record of it alive (and in the garbage collector's way) for that second, settled or
not.  When it fires, the route's held records - in the order they arrived - are handed over
up to those that arrived less than ``wait`` ago; the timer is then set for the oldest of
those.  Delayed records are kept already (``keep_alive(until=...)``), and records the
consumer keeps already are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aioshare.protocol.errors import IllegalStateError, InvalidRecordStateError
from aioshare.runtime.held import HeldRecords, State
from aioshare.runtime.message import Message
from aioshare.runtime.settle import Settler

__all__ = ["HandOver"]

HAND_OVER_AFTER = 1.0  # seconds
HAND_OVER_SHARE = 0.05  # of the lock left when the record arrived

_DELAYED = State.DELAYED


class HandOver:
    def __init__(
        self,
        records: HeldRecords[Message[Any]],
        settler: Settler,
        time: Callable[[], float],
        call_at: Callable[[float, Callable[[], None]], object],
    ) -> None:
        self._records = records
        self._settler = settler
        self._time = time
        self._call_at = call_at
        self._wait = HAND_OVER_AFTER
        self._due: float | None = None  # when the timer fires, if it is set

    def received(self, now: float, lock_expires_at: float) -> None:
        """A batch arrived at ``now``; its locks run out at ``lock_expires_at``."""
        if self._due is not None or not self._settler.renew_supported:
            return
        self._wait = min(HAND_OVER_AFTER, HAND_OVER_SHARE * (lock_expires_at - now))
        self._set(now + self._wait)

    def _set(self, when: float) -> None:
        self._due = when
        self._call_at(when, self._fire)

    def _fire(self) -> None:
        self._due = None
        settler = self._settler
        cutoff = self._time() - self._wait
        for msg in self._records.all():  # in the order they arrived
            if not settler.renew_supported:
                return
            if msg.received_at > cutoff:
                self._set(msg.received_at + self._wait)
                return
            inner = msg.share_message
            if msg.state is _DELAYED or inner.kept_alive:
                continue
            try:
                inner.keep_alive(on_end=settler.keep_alive_ended)
            except InvalidRecordStateError as exc:
                settler.lock_lost(msg, exc)  # its lock ran out before anything could keep it
            except IllegalStateError:
                pass  # the consumer is closing: the final-epoch close releases the record
