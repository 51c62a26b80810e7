"""Test doubles for the runtime: a scripted share-group "broker" and its consumers.

``FakeBroker`` keeps every record's share state the way a Kafka share partition does
(available → acquired → acknowledged / archived; RELEASE and lock expiry make a record
available again, or archive it at the delivery-count limit; so does a session close, which
keeps the delivery count like Kafka 4.2+, KAFKA-19972).  ``FakeConsumer`` implements the
runtime's ``ConsumerLike`` and is the ``AckSink`` of the real ``aioshare.share.Message``
objects it delivers, so the runtime is tested against the real message class.  Time is a
``ManualClock``: locks expire only when a test advances it and calls ``expire_locks()``.

``FakeConsumer`` also keeps records alive (``msg.keep_alive()``) the way docs/consumer.md
describes ShareConsumer's keep-alive, minus what only the share layer's own tests need (the
renewal-time grid, batching into one request): a RENEW at ``keep_alive_fraction`` of the lock
left, ``until``/``then``, ``on_end`` on a lost lock or no RENEW support, transient failures
retried after min(1 s, half the lock left).  Its timer is a runtime ``Scheduler`` on the
same clock.  The real keep-alive, against real brokers, is exercised by test_e2e.py.

Every acknowledgement is recorded, so a test can count every record's fate.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aioshare.protocol.errors import IllegalStateError, InvalidRecordStateError
from aioshare.protocol.types import AckType, TopicIdPartition, TopicPartition
from aioshare.runtime import ConsumerSpec, ManualClock
from aioshare.runtime.delays import Scheduler, TimerHandle
from aioshare.share.ack_tracker import AckResult, AckStatus
from aioshare.share.consumer import LockExpiry
from aioshare.share.deserialize import make_key_decoder, make_value_decoder
from aioshare.share.fetcher import RenewUnsupportedError
from aioshare.share.message import Message as ShareMessage

Key = tuple[str, int, int]  # topic, partition, offset


@dataclass(eq=False)
class FakeKeep:
    """One record kept alive by a FakeConsumer."""

    msg: ShareMessage
    until: float | None
    then: AckType | None
    on_end: Callable[[ShareMessage, BaseException | None], object] | None
    lock: float = 0.0
    handle: TimerHandle | None = None
    renewing: bool = False


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    state: str = "available"  # available | acquired | acknowledged | archived
    delivery_count: int = 0
    holder: FakeConsumer | None = None
    deadline: float = 0.0
    history: list[str] = field(default_factory=list)

    @property
    def key3(self) -> Key:
        return (self.topic, self.partition, self.offset)


class FakeBroker:
    def __init__(
        self,
        clock: ManualClock,
        *,
        lock_duration: float = 30.0,
        delivery_limit: int = 5,
        renew_supported: bool = True,
    ) -> None:
        self.clock = clock
        self.lock_duration = lock_duration
        self.delivery_limit = delivery_limit
        self.renew_supported = renew_supported
        self.records: dict[Key, FakeRecord] = {}
        self.consumers: list[FakeConsumer] = []
        self.acks: list[tuple[Key, AckType, int]] = []  # (record, type, delivery count)
        self._waiters: set[asyncio.Future[None]] = set()
        self._ids: dict[str, uuid.UUID] = {}

    # -- data --------------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        values: Iterable[bytes | None],
        *,
        key: bytes | None = None,
        keys: Iterable[bytes | None] | None = None,
        partition: int = 0,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> list[FakeRecord]:
        values = list(values)
        key_list = list(keys) if keys is not None else [key] * len(values)
        out = []
        for value, k in zip(values, key_list, strict=True):
            offset = sum(1 for r in self.records.values() if r.topic == topic and r.partition == partition)
            rec = FakeRecord(topic, partition, offset, k, value, list(headers or []))
            self.records[rec.key3] = rec
            out.append(rec)
        self.notify()
        return out

    def topic_id(self, topic: str) -> uuid.UUID:
        return self._ids.setdefault(topic, uuid.uuid5(uuid.NAMESPACE_DNS, topic))

    def states(self) -> collections.Counter[str]:
        return collections.Counter(r.state for r in self.records.values())

    def record(self, topic: str, offset: int, partition: int = 0) -> FakeRecord:
        return self.records[(topic, partition, offset)]

    # -- consumers ---------------------------------------------------------------------

    def factory(self, spec: ConsumerSpec) -> FakeConsumer:
        consumer = FakeConsumer(self, spec)
        self.consumers.append(consumer)
        return consumer

    def acquire(self, consumer: FakeConsumer, n: int) -> list[FakeRecord]:
        out: list[FakeRecord] = []
        for rec in self.records.values():
            if len(out) >= n:
                break
            if rec.state == "available" and rec.topic in consumer.spec.topics:
                rec.state = "acquired"
                rec.delivery_count += 1
                rec.holder = consumer
                rec.deadline = self.clock.time() + self.lock_duration
                rec.history.append(f"acquired#{rec.delivery_count}")
                out.append(rec)
        return out

    def _release(self, rec: FakeRecord) -> None:
        """RELEASE, lock expiry and session close alike (Kafka 4.2+ keeps the count on close)."""
        rec.holder = None
        if rec.delivery_count >= self.delivery_limit:
            rec.state = "archived"
        else:
            rec.state = "available"

    def expire_locks(self) -> list[FakeRecord]:
        """Expire every acquired record whose lock ran out (and tell its consumer)."""
        now = self.clock.time()
        expired = [r for r in self.records.values() if r.state == "acquired" and r.deadline <= now]
        by_consumer: dict[int, list[FakeRecord]] = {}
        for rec in expired:
            holder = rec.holder
            assert holder is not None
            holder.held.pop(rec.key3, None)
            rec.history.append("expired")
            self._release(rec)
            by_consumer.setdefault(id(holder), []).append(rec)
            holder._expired.append(rec)
        for consumer in self.consumers:
            recs = by_consumer.get(id(consumer))
            if recs:
                consumer.spec.on_lock_expired(
                    [LockExpiry(TopicPartition(r.topic, r.partition), r.offset, r.offset) for r in recs]
                )
                consumer._keeps_lost({r.key3 for r in recs})
        self.notify()
        return expired

    # -- waiting -----------------------------------------------------------------------

    def notify(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    async def changed(self, timeout: float | None) -> None:  # noqa: ASYNC109
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)


class FakeConsumer:
    """``ConsumerLike`` + ``AckSink`` over a ``FakeBroker``."""

    def __init__(self, broker: FakeBroker, spec: ConsumerSpec) -> None:
        self.broker = broker
        self.spec = spec
        self.started = False
        self.closed = False
        self.commits = 0
        self.getmany_calls: list[int | None] = []
        self.in_getmany = False
        self.held: dict[Key, FakeRecord] = {}
        self.fail_with: BaseException | None = None
        self.renew_error: BaseException | None = None
        self.renew_gate: asyncio.Event | None = None
        self.renewals: list[Key] = []
        self.ack_reports: list[tuple[Mapping[TopicPartition, set[int]], BaseException | None]] = []
        self.kept: dict[ShareMessage, FakeKeep] = {}
        self.renew_supported: bool | None = None  # None: not known yet
        self._timer = Scheduler(broker.clock)
        self._renew_tasks: set[asyncio.Task[None]] = set()
        self._expired: list[FakeRecord] = []
        self._key_decoder = make_key_decoder(spec.key_deserializer)
        self._value_decoder = make_value_decoder(spec.value_type, spec.value_deserializer)

    # -- ConsumerLike ------------------------------------------------------------------

    async def start(self) -> None:
        self.started = True

    async def getmany(
        self,
        max_records: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- ShareConsumer's signature
    ) -> list[ShareMessage]:
        self.getmany_calls.append(max_records)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self.in_getmany = True
        try:
            while True:
                if self.fail_with is not None:
                    raise self.fail_with
                if self.closed:
                    return []
                free = self.spec.max_in_flight - len(self.held)
                want = free if max_records is None else min(max_records, free)
                records = self.broker.acquire(self, want) if want > 0 else []
                if records:
                    for rec in records:
                        self.held[rec.key3] = rec
                    return [self._message(rec) for rec in records]
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return []
                await self.broker.changed(remaining)
        finally:
            self.in_getmany = False

    async def commit(self, timeout: float | None = None) -> dict[TopicPartition, BaseException | None]:  # noqa: ASYNC109
        self.commits += 1
        return {}

    async def close(self, timeout: float = 30.0) -> dict[TopicPartition, BaseException | None]:  # noqa: ASYNC109
        self.closed = True
        for keep in self.kept.values():  # close ends every keep-alive without on_end
            if keep.handle is not None:
                keep.handle.cancel()
        self.kept.clear()
        for task in list(self._renew_tasks):
            task.cancel()
        await asyncio.gather(*self._renew_tasks, return_exceptions=True)
        await self._timer.close()
        for rec in list(self.held.values()):
            rec.history.append("session-closed")
            self.broker._release(rec)
        self.held.clear()
        self.broker.notify()
        return {}

    # -- AckSink -----------------------------------------------------------------------

    def acknowledge(self, msg: ShareMessage, type_: AckType) -> None:
        if self.closed:
            raise IllegalStateError("the consumer is closed")
        self._keep_end(msg)  # any acknowledgement ends a keep-alive
        key = (msg.topic, msg.partition, msg.offset)
        rec = self.held.get(key)
        tp = TopicPartition(msg.topic, msg.partition)
        if (
            rec is None
            or rec.delivery_count != msg.delivery_count
            or rec.deadline <= self.broker.clock.time()
        ):
            self._report(tp, msg.offset, type_, InvalidRecordStateError(f"{key} is not held"))
            return
        del self.held[key]
        self.broker.acks.append((key, type_, rec.delivery_count))
        rec.history.append(type_.name)
        if type_ == AckType.ACCEPT:
            rec.state, rec.holder = "acknowledged", None
        elif type_ == AckType.REJECT:
            rec.state, rec.holder = "archived", None
        elif type_ == AckType.RELEASE:
            self.broker._release(rec)
        else:
            raise AssertionError(f"unexpected ack type {type_}")
        self.broker.notify()
        self._report(tp, msg.offset, type_, None)

    async def renew(self, msg: ShareMessage) -> float:
        key = (msg.topic, msg.partition, msg.offset)
        self.renewals.append(key)
        if self.renew_gate is not None:
            await self.renew_gate.wait()
        if not self.broker.renew_supported:
            raise RenewUnsupportedError("RENEW needs Kafka 4.2+")
        if self.renew_error is not None:
            raise self.renew_error
        rec = self.held.get(key)
        if rec is None or rec.deadline <= self.broker.clock.time():
            raise InvalidRecordStateError(f"{key}: lock expired")
        rec.deadline = self.broker.clock.time() + self.broker.lock_duration
        rec.history.append("renewed")
        return rec.deadline

    def keep_alive(
        self,
        msg: ShareMessage,
        until: float | None,
        then: AckType | None,
        on_end: Callable[[ShareMessage, BaseException | None], object] | None = None,
    ) -> None:
        if self.closed:
            raise IllegalStateError("the consumer is closed")
        if then is not None and until is None:
            raise ValueError("then needs until")
        rec = self._holding(msg)
        if rec is None:
            raise InvalidRecordStateError(f"{msg!r}: lock expired")
        keep = self.kept.get(msg)
        if keep is None:
            keep = self.kept[msg] = FakeKeep(msg, until, then, on_end)
        else:
            keep.until, keep.then, keep.on_end = until, then, on_end
        self._plan(keep, rec.deadline)

    def stop_keep_alive(self, msg: ShareMessage) -> None:
        self._keep_end(msg)

    def is_kept_alive(self, msg: ShareMessage) -> bool:
        return msg in self.kept

    # -- keep-alive internals ----------------------------------------------------------

    def _holding(self, msg: ShareMessage) -> FakeRecord | None:
        rec = self.held.get((msg.topic, msg.partition, msg.offset))
        now = self.broker.clock.time()
        if rec is None or rec.delivery_count != msg.delivery_count or rec.deadline <= now:
            return None
        return rec

    def _plan(self, keep: FakeKeep, deadline: float) -> None:
        now = self.broker.clock.time()
        keep.lock = deadline
        when = now + self.spec.keep_alive_fraction * (deadline - now)
        if keep.until is not None and keep.until <= when:
            when = keep.until
        self._schedule(keep, when)

    def _schedule(self, keep: FakeKeep, when: float) -> None:
        if keep.handle is not None:
            keep.handle.cancel()
        self._timer.start()
        keep.handle = self._timer.call_at(when, lambda: self._keep_due(keep))

    def _keep_end(self, msg: ShareMessage) -> None:
        keep = self.kept.pop(msg, None)
        if keep is not None and keep.handle is not None:
            keep.handle.cancel()
            keep.handle = None

    def _keep_report(self, keep: FakeKeep, exc: BaseException | None) -> None:
        self._keep_end(keep.msg)
        if keep.on_end is not None:
            keep.on_end(keep.msg, exc)

    def _keep_done(self, keep: FakeKeep) -> None:
        """``until`` came (or no RENEW and a ``then``): apply ``then``, then on_end(None)."""
        self._keep_end(keep.msg)
        if keep.then is not None and keep.msg.acknowledged is None:
            keep.msg._acknowledge(keep.then)
        if keep.on_end is not None:
            keep.on_end(keep.msg, None)

    def _keeps_lost(self, keys: set[Key]) -> None:
        for msg, keep in list(self.kept.items()):
            if (msg.topic, msg.partition, msg.offset) in keys:
                self._keep_report(keep, InvalidRecordStateError(f"{msg!r}: lock expired"))

    def _keep_due(self, keep: FakeKeep) -> None:
        keep.handle = None
        if self.kept.get(keep.msg) is not keep:
            return
        now = self.broker.clock.time()
        rec = self._holding(keep.msg)
        if rec is None:
            self._keep_report(keep, InvalidRecordStateError(f"{keep.msg!r}: lock expired"))
        elif keep.until is not None and now >= keep.until:
            self._keep_done(keep)
        elif keep.renewing:
            self._schedule(keep, rec.deadline)
        elif rec.deadline > keep.lock:
            self._plan(keep, rec.deadline)  # renewed meanwhile (msg.renew()): plan from that
        elif self.renew_supported is False:
            self._keep_unsupported(keep)
        else:
            keep.renewing = True
            self._schedule(keep, rec.deadline)  # the answer plans the next step
            task = asyncio.get_running_loop().create_task(self._keep_renew(keep))
            self._renew_tasks.add(task)
            task.add_done_callback(self._renew_tasks.discard)

    async def _keep_renew(self, keep: FakeKeep) -> None:
        result: float | BaseException
        try:
            result = await self.renew(keep.msg)
        except Exception as exc:
            result = exc
        keep.renewing = False
        if self.kept.get(keep.msg) is not keep:
            return  # acknowledged or stopped meanwhile
        if isinstance(result, RenewUnsupportedError):
            self._keep_unsupported(keep)
        elif isinstance(result, InvalidRecordStateError):
            self._keep_report(keep, result)
        elif isinstance(result, BaseException):
            rec = self._holding(keep.msg)
            if rec is None:
                self._keep_report(keep, InvalidRecordStateError(f"{keep.msg!r}: lock expired"))
            else:  # a passing failure: again soon, while the lock lasts
                now = self.broker.clock.time()
                self._schedule(keep, now + min(1.0, (rec.deadline - now) / 2))
        else:
            keep.msg.lock_expires_at = result
            self._plan(keep, result)

    def _keep_unsupported(self, keep: FakeKeep) -> None:
        self.renew_supported = False
        if keep.then is not None:
            self._keep_done(keep)  # then, now: before the lock runs out
        else:
            self._keep_report(keep, RenewUnsupportedError("RENEW needs Kafka 4.2+"))

    # -- helpers -----------------------------------------------------------------------

    def _report(self, tp: TopicPartition, offset: int, type_: AckType, exc: BaseException | None) -> None:
        # The real consumer reports after the broker answered: later, not inside the ack call.
        # An ack for a record no longer held fails here, as the real one's lease check does.
        status = AckStatus.APPLIED if exc is None else AckStatus.NOT_SENT

        def report() -> None:
            self.ack_reports.append(({tp: {offset}}, exc))
            self.spec.on_ack_result([AckResult(tp, offset, offset, type_, status, exc)])

        asyncio.get_running_loop().call_soon(report)

    def _message(self, rec: FakeRecord) -> ShareMessage:
        return ShareMessage(
            topic=rec.topic,
            tp=TopicIdPartition(self.broker.topic_id(rec.topic), rec.partition),
            offset=rec.offset,
            key=rec.key,
            value=rec.value,
            headers=list(rec.headers),
            timestamp=1_700_000_000_000 + rec.offset,
            delivery_count=rec.delivery_count,
            lock_expires_at=rec.deadline,
            sink=self,
            key_decoder=self._key_decoder,
            value_decoder=self._value_decoder,
        )
