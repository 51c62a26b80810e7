"""Keeping the locks of held records: RENEW before they run out, on the app's one timer.

Every record the runtime holds - waiting for a slot, in a handler, being dead-lettered,
waiting out a retry delay - is renewed at ``now + fraction * (lock_expires_at - now)``
(fraction 0.7 by default: a record fetched with a 30 s lock is renewed after 21 s, leaving
9 s for the RENEW round trip) on the app's ``Scheduler``.  Most records are settled long
before that and never renewed at all, so a newly received record costs no timer entry of
its own: it joins the open ``Intake`` (one entry, due at the earliest renewal time of its
records); when that is due, records still held get their own entries at their exact
times.  Settling a record removes it from its intake or cancels its entry.

Entries that fall due in the same tick are renewed together: their ``renew()`` calls are
started at once, so the consumer sends them in one RENEW request per leader.  The answer
decides what happens next:

* success - the next renewal is scheduled from the new deadline;
* ``InvalidRecordStateError`` - the lock is already gone: the record is reported lost;
* ``RenewUnsupportedError`` (broker before Kafka 4.2) - renewal is off for that consumer;
  delayed records are released before their lock runs out instead;
* anything else (timeout, connection) - tried again soon, while the lock lasts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from typing import Any, Protocol

from aioshare.protocol.errors import IllegalStateError, InvalidRecordStateError
from aioshare.runtime.delays import Scheduler, TimerHandle
from aioshare.runtime.message import Message
from aioshare.runtime.outcomes import State
from aioshare.share.fetcher import RenewUnsupportedError

__all__ = ["Intake", "LockKeeper", "RenewalOwner"]

log = logging.getLogger(__name__)


class RenewalOwner(Protocol):
    """The route runner a held record belongs to."""

    renew_fraction: float

    def can_renew(self, msg: Message[Any]) -> bool: ...

    def renewed(self, msg: Message[Any]) -> None: ...

    def lock_lost(self, msg: Message[Any], exc: BaseException | None) -> None: ...

    def renew_unsupported(self, msg: Message[Any], exc: BaseException) -> None: ...

    def renew_failed(self, msg: Message[Any], exc: BaseException) -> None: ...


class Intake:
    """Records tracked since the keeper's last first-renewal tick, under one timer entry.

    A timer entry per received record would mostly be pushed and cancelled again (most
    records are settled long before their renewal is due); instead newly tracked records
    join the open intake - one dict entry - and the intake's single entry is due at the
    earliest of their renewal times.  Then the records that are due are renewed and the
    others get entries of their own, at their exact times.
    """

    __slots__ = ("entries", "handle", "when")

    def __init__(self, when: float) -> None:
        self.entries: dict[Message[Any], tuple[RenewalOwner, float]] = {}
        self.when = when
        self.handle: TimerHandle | None = None


class LockKeeper:
    def __init__(self, scheduler: Scheduler, *, retry_interval: float = 1.0) -> None:
        self._scheduler = scheduler
        self._retry_interval = retry_interval
        self._due: list[tuple[Message[Any], RenewalOwner]] = []
        self._flush_pending = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._intake: Intake | None = None

    @property
    def renewing(self) -> int:
        """Renewal batches in flight (tests wait for this to reach 0)."""
        return len(self._tasks)

    # -- scheduling --------------------------------------------------------------------

    def track(self, msg: Message[Any], owner: RenewalOwner, since: float | None = None) -> None:
        """Start keeping ``msg``'s lock; ``since`` is when it was received (default: now)."""
        base = self._scheduler.clock.time() if since is None else since
        if msg._renew_handle is not None or msg._renew_intake is not None:
            self.untrack(msg)
        if self._closed or msg._state == State.DONE or not owner.can_renew(msg):
            return
        expires = msg._inner.lock_expires_at
        if not math.isfinite(expires) or expires <= base:
            return  # no lock to keep, or already gone (the consumer reports that)
        when = base + owner.renew_fraction * (expires - base)
        intake = self._intake
        if intake is None:
            intake = self._intake = Intake(when)
            intake.handle = self._scheduler.call_at(when, functools.partial(self._intake_due, intake))
        elif when < intake.when:
            if intake.handle is not None:
                intake.handle.cancel()
            intake.when = when
            intake.handle = self._scheduler.call_at(when, functools.partial(self._intake_due, intake))
        intake.entries[msg] = (owner, when)
        msg._renew_intake = intake

    def untrack(self, msg: Message[Any]) -> None:
        handle, msg._renew_handle = msg._renew_handle, None
        if handle is not None:
            handle.cancel()
        intake = msg._renew_intake
        if intake is not None:
            msg._renew_intake = None
            entries = intake.entries
            entries.pop(msg, None)
            if not entries and intake is self._intake:
                # Everything it held was settled first: drop its timer entry too.
                self._intake = None
                if intake.handle is not None:
                    intake.handle.cancel()
                    intake.handle = None

    def _intake_due(self, intake: Intake) -> None:
        intake.handle = None
        if self._intake is intake:
            self._intake = None
        entries, intake.entries = intake.entries, {}
        now = self._scheduler.clock.time()
        due: list[tuple[float, Message[Any], RenewalOwner]] = []
        for msg, (owner, when) in entries.items():
            msg._renew_intake = None
            if when <= now:
                due.append((when, msg, owner))
            else:
                msg._renew_handle = self._scheduler.call_at(when, functools.partial(self._fire, msg, owner))
        due.sort(key=_first)
        for _, msg, owner in due:
            self._fire(msg, owner)

    def _schedule(self, msg: Message[Any], owner: RenewalOwner, base: float) -> None:
        self.untrack(msg)
        self._schedule_new(msg, owner, base)

    def _schedule_new(self, msg: Message[Any], owner: RenewalOwner, base: float) -> None:
        if self._closed or msg._state == State.DONE or not owner.can_renew(msg):
            return
        expires = msg._inner.lock_expires_at
        if not math.isfinite(expires) or expires <= base:
            return  # no lock to keep, or already gone (the consumer reports that)
        when = base + owner.renew_fraction * (expires - base)
        msg._renew_handle = self._scheduler.call_at(when, functools.partial(self._fire, msg, owner))

    def _retry_soon(self, msg: Message[Any], owner: RenewalOwner) -> None:
        now = self._scheduler.clock.time()
        remaining = msg.lock_expires_at - now
        if remaining <= 0 or self._closed or msg._state == State.DONE:
            return
        self.untrack(msg)
        when = now + min(self._retry_interval, remaining / 2)
        msg._renew_handle = self._scheduler.call_at(when, lambda: self._fire(msg, owner))

    def _fire(self, msg: Message[Any], owner: RenewalOwner) -> None:
        msg._renew_handle = None
        self._due.append((msg, owner))
        if not self._flush_pending:
            # Everything due in this timer tick joins one batch: one RENEW request.
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        batch, self._due = self._due, []
        if not batch or self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._renew_batch(batch), name="aioshare-runtime-renew")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- renewing ----------------------------------------------------------------------

    async def _renew_batch(self, batch: list[tuple[Message[Any], RenewalOwner]]) -> None:
        await asyncio.gather(*(self._renew_one(msg, owner) for msg, owner in batch))

    async def _renew_one(self, msg: Message[Any], owner: RenewalOwner) -> None:
        if msg._state == State.DONE or not owner.can_renew(msg):
            return
        try:
            await msg._inner.renew()
        except InvalidRecordStateError as exc:
            owner.lock_lost(msg, exc)
        except RenewUnsupportedError as exc:
            owner.renew_unsupported(msg, exc)
        except IllegalStateError:
            pass  # settled while the renewal was being set up, or the consumer is closing
        except Exception as exc:
            owner.renew_failed(msg, exc)
            self._retry_soon(msg, owner)
        else:
            if not _settled(msg):  # it may have been settled while the RENEW was in flight
                owner.renewed(msg)
                self._schedule(msg, owner, self._scheduler.clock.time())

    async def renew_now(self, msg: Message[Any], owner: RenewalOwner) -> float:
        """``msg.extend_lock()``: RENEW at once, report like a scheduled renewal, and raise."""
        try:
            deadline = await msg._inner.renew()
        except InvalidRecordStateError as exc:
            owner.lock_lost(msg, exc)
            raise
        except RenewUnsupportedError as exc:
            owner.renew_unsupported(msg, exc)
            raise
        if not _settled(msg):
            owner.renewed(msg)
            self._schedule(msg, owner, self._scheduler.clock.time())
        return deadline

    async def close(self) -> None:
        self._closed = True
        self._due.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _first(entry: tuple[float, Message[Any], RenewalOwner]) -> float:
    return entry[0]


def _settled(msg: Message[Any]) -> bool:
    # A function, not an inline comparison: the state changes across awaits, which type
    # narrowing of an attribute does not know.
    return msg._state == State.DONE
