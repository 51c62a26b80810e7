"""Held records' locks: the consumer's keep-alive renews them, extend_lock(), locks lost anyway.

The runtime hands every record it still holds a moment after it arrived to its consumer's
keep-alive (``msg.keep_alive()``) and keeps no timer of its own.  These tests run it over the
real ShareConsumer against the embedded broker with 1 s locks: the keep-alive RENEWs at
``renew_fraction`` of the lock left, so a record held 2 s is renewed about three times and the
broker still shows it acquired, delivery 1.  ``RenewTap`` (in front of the broker's own
ShareAcknowledge) shows when the RENEWs arrive and can refuse some; a broker without RENEW is
one serving ShareFetch/ShareAcknowledge v1 only, as Kafka before 4.2 does.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from aioshare.protocol.errors import ErrorCode, InvalidRecordStateError
from aioshare.protocol.types import RecordState
from aioshare.runtime import App, EventKind, Handler, Message, Retry
from aioshare.share.consumer import ShareConsumer
from aioshare.testing import ThreadedBroker
from tests.kit import wait_until

from .kit import AppFactory, Ready, Recorder, RenewTap, settled_at_broker, without_renew_support

LOCK_MS = 1000


def consumer_of(app: App) -> ShareConsumer:
    consumer = app.runners[0].members[0].consumer
    assert isinstance(consumer, ShareConsumer)
    return consumer


async def broker_state(kafka: ThreadedBroker, offset: int) -> tuple[RecordState, int] | None:
    records = await kafka.share_records("g", "jobs")
    return None if records is None else records.state_of(offset)


def acks_of(recorder: Recorder, offset: int) -> list[tuple[str | None, str | None]]:
    """(ack type, status) of every acknowledgement run the consumer reported for ``offset``."""
    return [
        (e.ack_type, e.reason)
        for e in recorder.kinds(EventKind.ACK_COMMITTED)
        if e.offset is not None and e.offset <= offset < e.offset + e.count
    ]


async def test_long_handler_is_renewed_at_the_configured_fraction(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    gate = asyncio.Event()
    started: list[float] = []

    @app.handler("jobs", group_id="g", renew_fraction=0.5)
    async def handle(msg: Message[bytes]) -> None:
        started.append(time.monotonic())
        await gate.wait()

    await ready(app, lock_ms=LOCK_MS)
    renews = await RenewTap.installed(kafka)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: app.runners[0].running_count == 1)
        await wait_until(lambda: len(renews.of(0)) >= 4, timeout=5)
        # Held twice as long as one lock, on one delivery: every RENEW reached the broker in time.
        assert await broker_state(kafka, 0) == (RecordState.ACQUIRED, 1)
        assert recorder.kinds(EventKind.RENEWED) == []  # reported when the record is settled
        gate.set()
        await settled_at_broker(kafka, "g", "jobs", 1)
        assert consumer_of(app).renew_requests == len(renews.renews)
    times = [started[0]] + [r.at for r in renews.of(0)[:4]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # At half the lock left (not at once, not at the default 0.7): one RENEW per ~0.5 s.
    assert all(0.3 <= gap <= 0.65 for gap in gaps), gaps
    assert recorder.outcome_counts() == {"accepted": 1}
    assert acks_of(recorder, 0) == [("accept", "applied")]
    # One RENEWED per record whose lock the consumer renewed (it reports no event per RENEW).
    (renewed,) = recorder.kinds(EventKind.RENEWED)
    assert (renewed.offset, renewed.delivery_count) == (0, 1)
    assert app.metrics.value("lock-renewals-total") == 1


async def test_records_that_finish_quickly_are_never_renewed(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        if msg.value == b"slow":  # held until its keep-alive renewed it: the others' time has come too
            first_lock = msg.lock_expires_at
            await wait_until(lambda: msg.lock_expires_at > first_lock, timeout=5)

    await ready(app, lock_ms=LOCK_MS)
    renews = await RenewTap.installed(kafka)
    await kafka.produce("jobs", [b"x"] * 20 + [b"slow"], partition=0)
    async with app:
        await settled_at_broker(kafka, "g", "jobs", 21)
        # The hand-over timer is one per route, not one per record or batch, and it is done.
        await wait_until(lambda: len(app.runners[0].rt.scheduler) == 0)
    assert {offset for r in renews.renews for offset in r.offsets} == {20}
    assert recorder.outcome_counts() == {"accepted": 21}
    assert [(e.offset, e.delivery_count) for e in recorder.kinds(EventKind.RENEWED)] == [(20, 1)]


async def test_extend_lock_renews_now_and_moves_the_next_renewal(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    finish = asyncio.Event()
    deadlines: list[float] = []

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        # Work for 0.4 s, past the hand-over, then extend: without the extension the first
        # RENEW would come ~0.25 s later (at 0.7 of the first lock).
        await asyncio.sleep(0.4)
        assert msg.share_message.kept_alive
        deadlines.append(await msg.extend_lock())
        assert msg.lock_expires_at == deadlines[-1]
        await finish.wait()

    await ready(app, lock_ms=LOCK_MS)
    renews = await RenewTap.installed(kafka)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: deadlines, timeout=5)
        assert abs(deadlines[0] - (renews.renews[0].at + LOCK_MS / 1000)) < 0.2
        assert len(recorder.kinds(EventKind.RENEWED)) == 1  # extend_lock reports at once
        await wait_until(lambda: len(renews.renews) >= 3, timeout=5)
        assert await broker_state(kafka, 0) == (RecordState.ACQUIRED, 1)
        finish.set()
        await settled_at_broker(kafka, "g", "jobs", 1)
    extended, first_kept, second_kept = (r.at for r in renews.renews[:3])
    # The keep-alive planned from the newer lock: its first RENEW came 0.7 of a lock after the
    # extension, not at its first plan; the next one 0.7 of a lock after that.
    assert 0.5 <= first_kept - extended <= 0.85, renews.renews
    assert 0.5 <= second_kept - first_kept <= 0.85, renews.renews
    assert recorder.outcome_counts() == {"accepted": 1}
    assert len(recorder.kinds(EventKind.RENEWED)) == 2  # extend_lock's, then the keep-alive's


async def test_lock_lost_while_handling_calls_the_hooks_and_sends_no_ack(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    gate = asyncio.Event()
    lost: list[tuple[str, int]] = []
    late_accepts: list[int] = []

    @app.handler("jobs", group_id="g", on_lock_expired=lambda m: lost.append(("route", m.offset)))
    class Jobs(Handler[bytes]):
        async def handle(self, msg: Message[bytes]) -> None:
            if msg.delivery_count == 1:
                await gate.wait()
                late_accepts.append(msg.offset)
            msg.accept()  # on delivery 1 too late: the lock is gone; a no-op, not an error

        async def on_lock_expired(self, msg: Message[bytes]) -> None:
            lost.append((self.topic, msg.offset))

    await ready(app, lock_ms=LOCK_MS)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: app.runners[0].running_count == 1)
        # The connection drops before the first RENEW: the member's share session goes with it
        # (the broker releases what the member held), so the consumer gives the lock up.
        await kafka.acall(lambda b: b.drop_connections())
        await wait_until(lambda: len(lost) == 2, timeout=5)
        (expired,) = recorder.kinds(EventKind.LOCK_EXPIRED)
        assert isinstance(expired.error, InvalidRecordStateError)
        gate.set()  # the first handler call ends; the broker redelivers the record to us
        await wait_until(lambda: len(recorder.terminal()) == 2, timeout=5)
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert sorted(lost) == [("jobs", 0), ("route", 0)]
    assert late_accepts == [0]
    outcomes = recorder.terminal()
    assert outcomes == {("jobs", 0, 0, 1): EventKind.LOCK_EXPIRED, ("jobs", 0, 0, 2): EventKind.ACCEPTED}
    # One ACCEPT reached the broker: the second delivery's; the late one was never sent.
    assert acks_of(recorder, 0) == [("accept", "applied")]


async def test_renew_refused_means_the_lock_is_lost(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    gate = asyncio.Event()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 1:
            await gate.wait()

    await ready(app, lock_ms=LOCK_MS)
    renews = await RenewTap.installed(kafka)
    await renews.refuse(ErrorCode.INVALID_RECORD_STATE)  # "not acquired by this member"
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: recorder.kinds(EventKind.LOCK_EXPIRED), timeout=5)
        assert len(renews.renews) == 1  # lost at the refusal, not at the lock's end
        assert app.runners[0].held_count == 0
        gate.set()
        # Unrenewed, the broker's lock runs out and the record comes back.
        await wait_until(lambda: len(recorder.terminal()) == 2, timeout=5)
        await settled_at_broker(kafka, "g", "jobs", 1)
    outcomes = recorder.terminal()
    assert outcomes == {("jobs", 0, 0, 1): EventKind.LOCK_EXPIRED, ("jobs", 0, 0, 2): EventKind.ACCEPTED}
    assert acks_of(recorder, 0) == [("accept", "applied")]  # none for the first delivery
    (expired,) = recorder.kinds(EventKind.LOCK_EXPIRED)
    assert expired.reason == "lock-expired"
    assert isinstance(expired.error, InvalidRecordStateError)  # the broker's refusal, as it said it


async def test_transient_renew_failure_is_retried_while_the_lock_lasts(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    gate = asyncio.Event()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        await gate.wait()

    await ready(app, lock_ms=LOCK_MS)
    renews = await RenewTap.installed(kafka)
    await renews.refuse(ErrorCode.REQUEST_TIMED_OUT)  # the broker's share-state write timed out
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: len(renews.renews) >= 3, timeout=5)
        failed, retried = renews.renews[0].at, renews.renews[1].at
        assert retried - failed < 0.3  # retried within the lock left, not at the next plan
        # Past the first lock's end (nothing renewed it but the retry): still ours, delivery 1.
        assert await broker_state(kafka, 0) == (RecordState.ACQUIRED, 1)
        gate.set()
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert recorder.outcome_counts() == {"accepted": 1}
    # Transient RENEW failures are the consumer's to retry: no runtime event for them.
    assert recorder.kinds(EventKind.ERROR) == []
    assert recorder.kinds(EventKind.LOCK_EXPIRED) == []


async def test_without_renew_support_a_delayed_record_is_released_before_its_lock_ends(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    received: list[float] = []

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        received.append(time.monotonic())
        if msg.delivery_count == 1:
            raise Retry(delay=300)

    await ready(app, lock_ms=LOCK_MS)
    await without_renew_support(kafka)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: len(recorder.terminal()) == 2, timeout=5)
        await settled_at_broker(kafka, "g", "jobs", 1)
        assert app.runners[0].delayed_count == 0 and app.runners[0].rt.delay_budget.used == 0
    # At the renewal time the RENEW cannot be sent (no ShareAcknowledge v2), so the consumer
    # applies the RELEASE then instead of after 300 s, before the lock's end.
    assert received[1] - received[0] < LOCK_MS / 1000
    assert recorder.terminal() == {
        ("jobs", 0, 0, 1): EventKind.RELEASED,
        ("jobs", 0, 0, 2): EventKind.ACCEPTED,
    }
    assert [e.reason for e in recorder.kinds(EventKind.RELEASED)] == ["retry"]
    assert acks_of(recorder, 0) == [("release", "applied"), ("accept", "applied")]
    assert recorder.kinds(EventKind.LOCK_EXPIRED) == []


async def test_without_renew_support_renewal_is_off_and_a_long_handler_loses_its_lock(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    gate = asyncio.Event()

    @app.handler("jobs", group_id="g", concurrency=1, prefetch=0)
    async def handle(msg: Message[bytes]) -> None:
        if msg.offset == 0 and msg.delivery_count == 1:
            await gate.wait()

    await ready(app, lock_ms=LOCK_MS)
    await without_renew_support(kafka)
    # Two log batches: a consumer holding one record at most acquires ``b`` after ``a``.
    await kafka.produce("jobs", [b"a"], partition=0)
    await kafka.produce("jobs", [b"b"], partition=0)
    async with app:
        await wait_until(
            lambda: any(e.reason == "renew-unsupported" for e in recorder.kinds(EventKind.ERROR)), timeout=5
        )
        assert recorder.kinds(EventKind.LOCK_EXPIRED) == []  # the lock it has still runs
        await wait_until(lambda: recorder.kinds(EventKind.LOCK_EXPIRED), timeout=5)  # nothing kept it
        gate.set()
        await wait_until(lambda: len(recorder.terminal()) == 3, timeout=5)
        await settled_at_broker(kafka, "g", "jobs", 2)
        consumer = consumer_of(app)
        assert consumer.renew_requests == 0  # no RENEW could be sent, then none was tried
        assert not app.runners[0].settler.renew_supported  # records received since: not handed over
    assert [e.reason for e in recorder.kinds(EventKind.ERROR)] == ["renew-unsupported"]
    assert recorder.terminal() == {
        ("jobs", 0, 0, 1): EventKind.LOCK_EXPIRED,
        ("jobs", 0, 0, 2): EventKind.ACCEPTED,
        ("jobs", 0, 1, 1): EventKind.ACCEPTED,
    }
