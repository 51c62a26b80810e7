"""Carrying out what becomes of held records: acknowledgements, retry delays, dead-letter
copies, and the locks kept meanwhile.

``Settler`` is where a route's ``Settlement``s (aioshare.runtime.policy) turn into I/O:

* ACCEPT / RELEASE / REJECT are recorded with the record's consumer (``AckType``); one the
  consumer cannot take any more (closed, failed) ends as ``released`` with reason
  ``ack-failed`` - the broker gets the record back when the session ends or its lock runs out;
* the terminal event of an acknowledged record waits for the broker's answer
  (``ack_results``): ``accepted`` / ``released`` / ``rejected`` / ``dead_lettered`` only once
  the broker applied it; ``ack_refused`` (the broker's error) or ``ack_in_doubt`` (sent, never
  answered) otherwise, and ``released`` with reason ``ack-not-sent`` when the consumer could not
  send it (its lock ran out first, the session ended);
* RETRY hands the record to its consumer's keep-alive until the delay ends, then RELEASE;
* DEAD_LETTER produces a confirmed copy first, then REJECTs (a failed copy: RELEASE);
* lock keeping: the consumers' keep-alive (aioshare.runtime.handover hands records over)
  reports a lost lock or a finished delay through ``keep_alive_ended``.

A record stops being held (its slot is free, its state DONE) when it is settled: ``_close``,
through the held-record state machine (aioshare.runtime.held), which refuses a second close.
Its one terminal event comes with the close (lock_expired, a failed acknowledgement) or with the
broker's answer to its acknowledgement: ``_unconfirmed`` holds each answer awaited, once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aioshare.protocol.errors import IllegalStateError, InvalidRecordStateError, KafkaError
from aioshare.protocol.types import AckType
from aioshare.runtime.dlq import DeadLetterSink, dead_letter_headers
from aioshare.runtime.emitter import RouteEvents
from aioshare.runtime.events import EventKind
from aioshare.runtime.held import HeldRecords, State
from aioshare.runtime.logs import RecordLog
from aioshare.runtime.message import Message
from aioshare.runtime.outcomes import ACCEPT, Decision
from aioshare.runtime.policy import OutcomePolicy, Settlement, Verdict
from aioshare.runtime.route import HandlerBinding
from aioshare.share.ack_tracker import AckResult, AckStatus
from aioshare.share.consumer import LockExpiry
from aioshare.share.fetcher import RenewUnsupportedError
from aioshare.share.message import Message as ShareMessage

__all__ = ["DeadLetterRequest", "Settler"]

log = logging.getLogger(__name__)

DeadLetterRequest = tuple[Message[Any], Settlement]

_QUEUED, _RUNNING, _DEAD_LETTERING, _DELAYED, _DONE = State
_ACCEPT, _RELEASE, _REJECT = AckType.ACCEPT, AckType.RELEASE, AckType.REJECT
_ACCEPTED = EventKind.ACCEPTED
_RELEASED = EventKind.RELEASED
_APPLIED, _REFUSED, _IN_DOUBT = AckStatus.APPLIED, AckStatus.REFUSED, AckStatus.IN_DOUBT

# The terminal event an acknowledgement earns once the broker applies it:
# (record, kind, reason, error, dead-letter topic).
_Awaited = tuple[Message[Any], EventKind, str | None, BaseException | None, str | None]


class Settler:
    def __init__(
        self,
        name: str,
        *,
        records: HeldRecords[Message[Any]],
        policy: OutcomePolicy,
        events: RouteEvents,
        record_log: RecordLog,
        binding: HandlerBinding,
        implicit: bool,
        rand: Callable[[], float],
        dead_letters: DeadLetterSink | None,
        dead_letter_timeout: float,
        group_id: str,
    ) -> None:
        self.name = name
        self.records = records
        self.policy = policy
        self.events = events
        self.record_log = record_log
        self.binding = binding
        self.implicit = implicit
        self.rand = rand
        self.dead_letters = dead_letters
        self.dead_letter_timeout = dead_letter_timeout
        self.group_id = group_id
        # Whether the brokers RENEW: a keep-alive ending with RenewUnsupportedError turns
        # hand-overs off for the route (the consumer releases delayed records early itself).
        self.renew_supported = True
        self._hook_tasks: set[asyncio.Task[Any]] = set()
        # Acknowledgements sent or about to be, by (topic, partition, offset, ack type): the
        # terminal event each earns, emitted when the consumer reports the broker's answer.
        self._unconfirmed: dict[tuple[str, int, int, AckType], _Awaited] = {}

    # ---------------------------------------------------------------- a handler's outcome

    def decide(self, msg: Message[Any], decision: Decision) -> None:
        """A running handler settles one record (``msg.accept()`` and friends)."""
        if self.implicit:
            raise IllegalStateError(
                f"route {self.name!r} uses ack_mode='implicit': the handler's return or exception "
                "settles its records; per-record outcomes need ack_mode='explicit'"
            )
        if msg.decision is not None:
            if msg.decision == decision:
                return  # the same outcome twice is one outcome
            raise IllegalStateError(f"{msg!r} already has an outcome ({msg.decision.action.value})")
        if msg.state is _DONE:
            return  # its lock was lost (or the app is stopping): nothing left to settle
        if msg.state is not _RUNNING:
            raise IllegalStateError(f"{msg!r} is not being handled; only a running handler settles it")
        msg.decision = decision
        settlement = self.policy.settle(decision, msg.delivery_count, self.rand)
        if settlement.verdict is not Verdict.DEAD_LETTER:
            self.carry_out(msg, settlement)
        # else: the copy is produced when the handler call ends.

    def settle_call(self, messages: Sequence[Message[Any]], decision: Decision) -> list[DeadLetterRequest]:
        """Settle the records of a finished handler call that it did not settle itself with
        the call's ``decision``; returns the dead-letter copies to produce."""
        dead_letters: list[DeadLetterRequest] = []
        for msg in messages:
            if msg.state is not _RUNNING:
                continue  # settled by the handler itself, delayed, or lost its lock
            own = msg.decision
            if own is None:
                msg.decision = own = decision  # so a late msg.accept() from the handler is refused
            if own is ACCEPT:
                self.accept(msg)
                continue
            settlement = self.policy.settle(own, msg.delivery_count, self.rand)
            if settlement.verdict is Verdict.DEAD_LETTER:
                dead_letters.append((msg, settlement))
            else:
                self.carry_out(msg, settlement)
        return dead_letters

    def carry_out(self, msg: Message[Any], settlement: Settlement) -> None:
        """Every settlement but DEAD_LETTER (``dead_letter()``: it needs I/O first)."""
        verdict = settlement.verdict
        if verdict is Verdict.ACCEPT:
            self.accept(msg)
        elif verdict is Verdict.RELEASE:
            self.release(msg, settlement.reason, settlement.error)
        elif verdict is Verdict.RETRY:
            self._retry(msg, settlement)
        elif verdict is Verdict.REJECT:
            self._reject(msg, settlement.reason, settlement.error)
        else:
            raise ValueError(f"{verdict} needs dead_letter()")

    def abandon(self, messages: Sequence[Message[Any]], reason: str) -> None:
        """RELEASE the records of a call that will not finish (cancelled, crashed)."""
        for msg in messages:
            state = msg.state
            if state is _QUEUED or state is _RUNNING or state is _DEAD_LETTERING:
                self.release(msg, reason)

    # ---------------------------------------------------------------- acknowledgements

    def accept(self, msg: Message[Any]) -> None:
        # _ack(msg, ACCEPT, ...), inline: this is the path of nearly every record.
        inner = msg.share_message
        key = (inner.topic, inner.partition, inner.offset, _ACCEPT)
        unconfirmed = self._unconfirmed
        if key in unconfirmed:
            self._superseded(key)
        # Awaited before the ACCEPT is recorded: a lock that already ran out is reported
        # (not sent) from inside accept().
        unconfirmed[key] = (msg, _ACCEPTED, None, None, None)
        try:
            inner.accept()
        except KafkaError as exc:
            del unconfirmed[key]
            log.debug("route %r: ACCEPT of %r not recorded: %r", self.name, msg, exc)
            if msg.state is not _DONE:
                self._finish(msg, _RELEASED, "ack-failed", exc)
            return
        if msg.state is not _DONE:  # (a consumer callback run by the ack may have settled it)
            self._close(msg)

    def release(self, msg: Message[Any], reason: str, error: BaseException | None = None) -> None:
        """RELEASE a held record now (nothing if it is no longer held)."""
        if msg.state is _DONE:
            return
        self._ack(msg, _RELEASE, _RELEASED, reason, error)

    def _reject(self, msg: Message[Any], reason: str, error: BaseException | None) -> None:
        self._ack(msg, _REJECT, EventKind.REJECTED, reason, error)

    def _ack(
        self,
        msg: Message[Any],
        ack_type: AckType,
        kind: EventKind,
        reason: str | None,
        error: BaseException | None,
        dead_letter_topic: str | None = None,
    ) -> None:
        """Record ``ack_type`` and close the record; ``kind`` is emitted when the broker applies
        it.  One the consumer cannot take (closed, failed) ends as ``released`` ("ack-failed"):
        the broker releases what it held when the session ends (or its lock runs out), so the
        record is not lost."""
        if msg.state is _DELAYED:
            self._forget_delayed_release(msg)  # this acknowledgement ends the keep-alive
        inner = msg.share_message
        key = (inner.topic, inner.partition, inner.offset, ack_type)
        if key in self._unconfirmed:
            self._superseded(key)
        self._unconfirmed[key] = (msg, kind, reason, error, dead_letter_topic)
        try:
            if ack_type is _ACCEPT:
                inner.accept()
            elif ack_type is _RELEASE:
                inner.release()
            else:
                inner.reject()
        except KafkaError as exc:
            del self._unconfirmed[key]
            log.debug("route %r: %s of %r not recorded: %r", self.name, ack_type.name, msg, exc)
            if msg.state is not _DONE:
                self._finish(msg, _RELEASED, "ack-failed", exc)
            return
        if msg.state is not _DONE:
            self._close(msg)

    def _superseded(self, key: tuple[str, int, int, AckType]) -> None:
        """The same acknowledgement of the same offset again while the first awaits its answer:
        the broker delivered the offset again, which it does only once the earlier delivery
        ended, so the earlier acknowledgement was applied."""
        msg, kind, reason, error, dead_letter_topic = self._unconfirmed.pop(key)
        self._emit_terminal(msg, kind, reason, error, dead_letter_topic)

    def _close(self, msg: Message[Any]) -> State:
        """The record stops being held (its terminal event may wait for the broker's answer);
        returns the state it was in."""
        renewed = msg.share_message.lock_expires_at != msg.lock_seen  # kept alive meanwhile
        state = self.records.finish(msg)
        if renewed:
            self.events.renewed(msg)  # the consumer's keep-alive renewed its lock meanwhile
        return state

    def _finish(
        self,
        msg: Message[Any],
        kind: EventKind,
        reason: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        """The record stops being held and gets its terminal event now (nothing to confirm)."""
        state = self._close(msg)
        if kind is EventKind.LOCK_EXPIRED:
            self.record_log.lock_lost(msg, state.name.lower(), reason, error)
        self._emit_terminal(msg, kind, reason, error, None)

    def _emit_terminal(
        self,
        msg: Message[Any],
        kind: EventKind,
        reason: str | None,
        error: BaseException | None,
        dead_letter_topic: str | None,
    ) -> None:
        events = self.events
        events.settled(kind, msg, reason, error, dead_letter_topic, events.now())
        if kind is _ACCEPTED or kind is _RELEASED:
            return
        if kind is EventKind.DEAD_LETTERED:
            self.record_log.dead_lettered(msg, reason, error, dead_letter_topic)
        elif kind is EventKind.REJECTED:
            self.record_log.rejected(msg, reason, error)

    # ---------------------------------------------------------------- retry delays

    def _retry(self, msg: Message[Any], settlement: Settlement) -> None:
        error = settlement.error
        if settlement.capped_from is not None:
            log.warning(
                "route %r: retry delay %.1fs capped at max_retry_delay=%.1fs",
                self.name,
                settlement.capped_from,
                settlement.delay,
            )
        delay = settlement.delay
        if delay <= 0:
            self.events.retried(msg, 0.0, error)
            self.release(msg, "retry", error)
            return
        if not self.records.delay(msg):
            # Holding more delayed records would hold their locks without bound: let go now.
            self.events.error(msg, "delay-queue-full", error)
            self.release(msg, "delay-queue-full", error)
            return
        # The consumer keeps the lock until the delay is over, then RELEASEs the record and
        # calls on_end(msg, None) (without RENEW on the broker: at its renewal time, before
        # the lock runs out).  The runtime's clock is the consumer's (loop.time()).  The
        # RELEASE's answer is awaited from now: the consumer may report it from inside its timer.
        inner = msg.share_message
        key = (inner.topic, inner.partition, inner.offset, _RELEASE)
        if key in self._unconfirmed:
            self._superseded(key)
        self._unconfirmed[key] = (msg, _RELEASED, "retry", error, None)
        try:
            inner.keep_alive(
                until=self.events.now() + delay, then=AckType.RELEASE, on_end=self.keep_alive_ended
            )
        except InvalidRecordStateError as exc:
            self._forget_delayed_release(msg)
            self.lock_lost(msg, exc)  # nothing left to hold back
            return
        except IllegalStateError:
            self._forget_delayed_release(msg)
            self.events.retried(msg, 0.0, error)  # the consumer is closing: no delay to wait out
            self.release(msg, "retry", error)
            return
        self.events.retried(msg, delay, error)

    def _forget_delayed_release(self, msg: Message[Any]) -> None:
        """A delayed record is settled otherwise (released now, its lock lost): the keep-alive's
        RELEASE will not come."""
        inner = msg.share_message
        key = (inner.topic, inner.partition, inner.offset, _RELEASE)
        awaited = self._unconfirmed.get(key)
        if awaited is not None and awaited[0] is msg:
            del self._unconfirmed[key]

    # ---------------------------------------------------------------- dead letters

    async def dead_letter(self, requests: list[DeadLetterRequest], topic: str | None) -> None:
        """Produce the copies, then REJECT each record whose copy the broker confirmed
        (RELEASE the others)."""
        sink = self.dead_letters
        if sink is None or topic is None:
            raise RuntimeError(f"route {self.name!r} has no dead-letter producer")
        for msg, _ in requests:
            self.records.dead_letter(msg)

        async def produce(msg: Message[Any], settlement: Settlement) -> None:
            headers = dead_letter_headers(
                msg, group_id=self.group_id, reason=settlement.reason, error=settlement.error
            )
            await sink.send(
                topic, key=msg.raw_key, value=msg.raw_value, headers=headers, timeout=self.dead_letter_timeout
            )

        try:
            results = await asyncio.gather(*(produce(m, s) for m, s in requests), return_exceptions=True)
        except asyncio.CancelledError:
            for msg, _ in requests:
                if msg.state is _DEAD_LETTERING:
                    self.release(msg, "shutdown")
            raise
        for (msg, settlement), result in zip(requests, results, strict=True):
            if msg.state is not _DEAD_LETTERING:
                continue  # its lock was lost while the copy was produced
            if isinstance(result, BaseException):
                # No confirmed copy, no REJECT: releasing keeps the record in the queue.
                self.events.error(msg, "dead-letter-failed", result)
                self.record_log.dead_letter_failed(msg, settlement.reason, result, topic)
                self.release(msg, "dead-letter-failed", result)
                continue
            self._ack(msg, _REJECT, EventKind.DEAD_LETTERED, settlement.reason, settlement.error, topic)

    # ---------------------------------------------------------------- locks

    def keep_alive_ended(self, inner: ShareMessage, exc: BaseException | None) -> None:
        """``on_end`` of every keep-alive: the consumer stopped keeping a lock by itself."""
        msg = self.records.get(inner)
        if msg is None:
            return
        if exc is None:
            # ``until`` came: the retry delay is over and the consumer applied the RELEASE.
            if msg.state is _DELAYED:
                self._close(msg)  # ``released`` comes with the broker's answer to the RELEASE
        elif isinstance(exc, RenewUnsupportedError):
            self._renew_unsupported(msg, exc)  # its lock now runs out unless it is settled first
        else:
            self.lock_lost(msg, exc)  # InvalidRecordStateError: refused, ran out, session lost

    def locks_expired(self, expiries: list[LockExpiry]) -> None:
        """``on_lock_expired`` of the route's consumers."""
        for expiry in expiries:
            for msg in self.records.in_ranges((expiry,)):
                self.lock_lost(msg, expiry.error)

    def _renew_unsupported(self, msg: Message[Any], exc: BaseException) -> None:
        if not self.renew_supported:
            return
        self.renew_supported = False
        log.warning(
            "route %r: the broker does not support RENEW (needs Kafka 4.2+); long handlers "
            "may lose their locks and retry delays are cut to the lock duration",
            self.name,
        )
        self.events.error(msg, "renew-unsupported", exc)
        # Records received from now on are not kept alive; delayed records are released by
        # the consumer at their renewal time, before their locks run out.

    def lock_lost(self, msg: Message[Any], exc: BaseException | None) -> None:
        """A held record's lock is gone: ``lock_expired`` once, then the route's hook."""
        if msg.state is _DONE:
            return
        if msg.state is _DELAYED:
            self._forget_delayed_release(msg)
        hook = self.binding.lock_lost_hook(msg)
        self._finish(msg, EventKind.LOCK_EXPIRED, "lock-expired", exc)
        if hook is None:
            return
        try:
            result = hook()
        except Exception:
            log.exception("route %r: on_lock_expired hook failed", self.name)
            return
        if result is not None and asyncio.iscoroutine(result):
            task = asyncio.get_running_loop().create_task(result, name=f"aioshare-route-{self.name}-hook")
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task[Any]) -> None:
        self._hook_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("route %r: on_lock_expired hook failed", self.name, exc_info=task.exception())

    async def extend_lock(self, msg: Message[Any]) -> float:
        """``msg.extend_lock()``: RENEW now (the keep-alive plans its next RENEW from the answer)."""
        try:
            deadline = await msg.share_message.renew()
        except InvalidRecordStateError as exc:
            self.lock_lost(msg, exc)
            raise
        except RenewUnsupportedError as exc:
            self._renew_unsupported(msg, exc)
            raise
        if not msg.settled:
            self.records.saw_lock(msg, deadline)
            self.events.renewed(msg)
        return deadline

    # ---------------------------------------------------------------- acknowledgement results

    def ack_results(self, results: list[AckResult]) -> None:
        """``on_ack_result`` of the route's consumers: each acknowledged record's terminal event
        (what the broker did with it), an ``ack_committed`` event per run, and a WARNING
        (rate-limited) for those the broker refused or that are in doubt."""
        unconfirmed = self._unconfirmed
        for r in results:
            status = r.status
            if status is _REFUSED or status is _IN_DOUBT:
                self.record_log.ack_problem(r)
            if not unconfirmed:
                continue
            topic, partition, ack_type = r.topic, r.partition, r.ack_type
            for offset in range(r.first_offset, r.last_offset + 1):
                awaited = unconfirmed.pop((topic, partition, offset, ack_type), None)
                if awaited is None:
                    continue  # not this route's (a RENEW), or reported already
                msg, kind, reason, error, dead_letter_topic = awaited
                if status is _APPLIED:
                    self._emit_terminal(msg, kind, reason, error, dead_letter_topic)
                elif status is _REFUSED:
                    self._emit_terminal(msg, EventKind.ACK_REFUSED, kind.value, r.error, None)
                elif status is _IN_DOUBT:
                    self._emit_terminal(msg, EventKind.ACK_IN_DOUBT, kind.value, r.error, None)
                else:  # not sent: the broker gets the record back (lock expiry, session end)
                    self._emit_terminal(msg, _RELEASED, "ack-not-sent", r.error, None)
        self.events.acks(results)

    def answers_missing(self) -> None:
        """The consumers are closed: an acknowledgement never answered is in doubt."""
        unconfirmed, self._unconfirmed = self._unconfirmed, {}
        for msg, kind, _reason, _error, _topic in unconfirmed.values():
            self._emit_terminal(msg, EventKind.ACK_IN_DOUBT, kind.value, None, None)

    async def close(self) -> None:
        """Cancel the on_lock_expired hooks still running."""
        pending = list(self._hook_tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
