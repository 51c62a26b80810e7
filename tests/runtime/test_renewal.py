"""Held records' locks: the consumer's keep-alive renews them, extend_lock(), locks lost anyway.

The runtime hands every record it receives to its consumer's keep-alive (``msg.keep_alive()``)
and keeps no timer of its own; these tests run it over the fake consumer's keep-alive (see
fakes.py) on a manual clock.  test_e2e.py runs the same over the real ShareConsumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aioshare.protocol.errors import InvalidRecordStateError, KafkaConnectionError
from aioshare.runtime import App, EventKind, Handler, ManualClock, Message, Retry

from .fakes import FakeBroker, FakeConsumer, Recorder, wait_until

AppFactory = Callable[..., App]


async def handed_over(clock: ManualClock, consumer: FakeConsumer, n: int = 1) -> None:
    """Let 1 s pass: records still held then are handed to the consumer's keep-alive."""
    clock.advance(1.0)
    await wait_until(lambda: len(consumer.kept) == n)


async def test_long_handler_is_renewed_at_the_configured_fraction(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock, recorder: Recorder
) -> None:
    app = make_app()
    gate = asyncio.Event()

    @app.handler("jobs", group_id="g", renew_fraction=0.5)
    async def handle(msg: Message[bytes]) -> None:
        await gate.wait()

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: app.runners[0].running_count == 1)
        consumer = broker.consumers[0]
        assert consumer.spec.keep_alive_fraction == 0.5  # the route's renew_fraction
        assert consumer.kept == {}  # not at once: most records are settled within a moment
        await handed_over(clock, consumer)
        clock.advance(14.4)  # t=1015.4: the first RENEW is due at 1001 + 0.5 * 29 = 1015.5
        assert consumer.renewals == []
        for n in (1, 2, 3):
            clock.advance(0.2 if n == 1 else 15.0)  # then at 0.5 of each 30 s lock
            await wait_until(lambda n=n: rec.history.count("renewed") == n)
            assert broker.expire_locks() == []
        assert recorder.kinds(EventKind.RENEWED) == []  # reported when the record is settled
        gate.set()
        await wait_until(lambda: rec.state == "acknowledged")
        assert consumer.kept == {}  # the ACCEPT ended the keep-alive
    assert rec.history == ["acquired#1", "renewed", "renewed", "renewed", "ACCEPT"]
    # One RENEWED per record whose lock the consumer renewed (it reports no event per RENEW).
    (renewed,) = recorder.kinds(EventKind.RENEWED)
    assert (renewed.offset, renewed.delivery_count) == (0, 1)
    assert app.metrics.value("lock-renewals-total") == 1


async def test_records_that_finish_quickly_are_never_renewed(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock, recorder: Recorder
) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        pass

    broker.produce("jobs", [b"x"] * 20)
    async with app:
        await wait_until(lambda: broker.states()["acknowledged"] == 20)
        # One hand-over entry per fetched batch, not per record.
        assert 1 <= len(app.runners[0].rt.scheduler) <= len(broker.consumers[0].getmany_calls) < 20
        clock.advance(100)
        await wait_until(lambda: len(app.runners[0].rt.scheduler) == 0)
        assert broker.consumers[0].kept == {}  # settled first: never handed over
    assert broker.consumers[0].renewals == []
    assert recorder.kinds(EventKind.RENEWED) == []


async def test_extend_lock_renews_now_and_moves_the_next_renewal(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock, recorder: Recorder
) -> None:
    app = make_app()
    extend, finish = asyncio.Event(), asyncio.Event()
    deadlines: list[float] = []

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        await extend.wait()
        deadlines.append(await msg.extend_lock())
        assert msg.lock_expires_at == deadlines[-1]
        await finish.wait()

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: app.runners[0].running_count == 1)
        await handed_over(clock, broker.consumers[0])  # first RENEW due at 1001 + 0.7 * 29 = 1021.3
        clock.advance(9)
        extend.set()
        await wait_until(lambda: deadlines == [1040.0])
        assert len(recorder.kinds(EventKind.RENEWED)) == 1  # extend_lock reports at once
        # t=1021.3, the keep-alive's first plan: it finds the newer lock and plans from it,
        # 1021.3 + 0.7 * (1040 - 1021.3) = 1034.39, instead of renewing now.
        (keep,) = broker.consumers[0].kept.values()
        clock.advance(11.5)
        await wait_until(lambda: keep.handle is not None and keep.handle.when > 1034)
        clock.advance(8.5)
        assert broker.consumers[0].renewals == [("jobs", 0, 0)]
        clock.advance(4.5)
        await wait_until(lambda: len(broker.consumers[0].renewals) == 2)
        assert broker.expire_locks() == []
        finish.set()
        await wait_until(lambda: rec.state == "acknowledged")
    assert len(recorder.kinds(EventKind.RENEWED)) == 2  # extend_lock's, then the keep-alive's


async def test_lock_lost_while_handling_calls_the_hooks_and_sends_no_ack(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock, recorder: Recorder
) -> None:
    app = make_app()
    gate = asyncio.Event()
    lost: list[tuple[str, int]] = []

    @app.handler("jobs", group_id="g", on_lock_expired=lambda m: lost.append(("route", m.offset)))
    class Jobs(Handler[bytes]):
        async def handle(self, msg: Message[bytes]) -> None:
            await gate.wait()
            msg.accept()  # too late: the lock is gone; this is a no-op, not an error

        async def on_lock_expired(self, msg: Message[bytes]) -> None:
            lost.append((self.topic, msg.offset))

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: app.runners[0].running_count == 1)
        consumer = broker.consumers[0]
        consumer.renew_error = KafkaConnectionError("broker unreachable")
        await handed_over(clock, consumer)
        clock.advance(20.3)
        await wait_until(lambda: len(consumer.renewals) == 1)
        for _ in range(8):  # the consumer tries again every second while the lock lasts
            clock.advance(1)
            await wait_until(lambda: not consumer._renew_tasks)
        assert lost == [] and app.runners[0].held_count == 1
        clock.advance(0.7)  # t=1030: the lock ran out
        assert [r.offset for r in broker.expire_locks()] == [0]
        await wait_until(lambda: len(lost) == 2)
        gate.set()  # the first handler call ends; the broker redelivers the record to us
        await wait_until(lambda: rec.state == "acknowledged")
    assert sorted(lost) == [("jobs", 0), ("route", 0)]
    assert rec.history[:2] == ["acquired#1", "expired"]
    assert rec.history[-2:] == ["acquired#2", "ACCEPT"]
    outcomes = recorder.terminal()
    assert outcomes[("jobs", 0, 0, 1)] == EventKind.LOCK_EXPIRED
    assert outcomes[("jobs", 0, 0, 2)] == EventKind.ACCEPTED


async def test_renew_refused_means_the_lock_is_lost(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock, recorder: Recorder
) -> None:
    app = make_app()
    gate = asyncio.Event()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        await gate.wait()

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: app.runners[0].running_count == 1)
        broker.consumers[0].renew_error = InvalidRecordStateError("not acquired by this member")
        await handed_over(clock, broker.consumers[0])
        clock.advance(20.3)
        await wait_until(lambda: recorder.kinds(EventKind.LOCK_EXPIRED))
        assert app.runners[0].held_count == 0
        gate.set()
        await wait_until(lambda: app.runners[0].running_count == 0)
    assert "ACCEPT" not in rec.history
    assert recorder.outcome_counts() == {"lock_expired": 1}
    (expired,) = recorder.kinds(EventKind.LOCK_EXPIRED)
    assert isinstance(expired.error, InvalidRecordStateError)  # the keep-alive's on_end told


async def test_transient_renew_failure_is_retried_while_the_lock_lasts(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock, recorder: Recorder
) -> None:
    app = make_app()
    gate = asyncio.Event()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        await gate.wait()

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: app.runners[0].running_count == 1)
        consumer = broker.consumers[0]
        consumer.renew_error = KafkaConnectionError("blip")
        await handed_over(clock, consumer)
        clock.advance(20.3)
        await wait_until(lambda: len(consumer.renewals) == 1 and not consumer._renew_tasks)
        consumer.renew_error = None
        clock.advance(1.0)  # retried one second later
        await wait_until(lambda: rec.history.count("renewed") == 1)
        clock.advance(7.5)
        assert broker.expire_locks() == []
        gate.set()
        await wait_until(lambda: rec.state == "acknowledged")
    assert recorder.outcome_counts() == {"accepted": 1}
    # Transient RENEW failures are the consumer's to retry: no runtime event for them.
    assert recorder.kinds(EventKind.ERROR) == []


async def test_without_renew_support_a_delayed_record_is_released_before_its_lock_ends(
    make_app: AppFactory, clock: ManualClock, recorder: Recorder
) -> None:
    broker = FakeBroker(clock, renew_supported=False)
    app = make_app(consumer_factory=broker.factory)

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 1:
            raise Retry(delay=300)

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: recorder.kinds(EventKind.RETRIED))
        clock.advance(20.9)
        assert rec.history == ["acquired#1"]
        # t=1021, the renewal time: the RENEW is refused (no RENEW on the broker), so the
        # consumer applies the RELEASE now instead of at t+300, 9 s before the lock's end.
        clock.advance(0.2)
        await wait_until(lambda: "RELEASE" in rec.history)
        assert broker.expire_locks() == []
        await wait_until(lambda: rec.state == "acknowledged")
    assert rec.history == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"]
    assert [e.reason for e in recorder.kinds(EventKind.RELEASED)] == ["retry"]
    assert app.runners[0].delayed_count == 0 and app.runners[0].rt.delay_budget.used == 0


async def test_without_renew_support_renewal_is_off_and_a_long_handler_loses_its_lock(
    make_app: AppFactory, clock: ManualClock, recorder: Recorder
) -> None:
    broker = FakeBroker(clock, renew_supported=False)
    app = make_app(consumer_factory=broker.factory)
    gate = asyncio.Event()

    @app.handler("jobs", group_id="g", concurrency=1, prefetch=0)
    async def handle(msg: Message[bytes]) -> None:
        if msg.offset == 0 and msg.delivery_count == 1:
            await gate.wait()

    a, b = broker.produce("jobs", [b"a", b"b"])
    async with app:
        await wait_until(lambda: app.runners[0].running_count == 1)
        consumer = broker.consumers[0]
        await handed_over(clock, consumer)
        clock.advance(20.3)  # the RENEW is refused: keep-alive is off for this consumer
        await wait_until(
            lambda: any(e.reason == "renew-unsupported" for e in recorder.kinds(EventKind.ERROR))
        )
        assert consumer.kept == {}
        clock.advance(8.7)
        assert [r.offset for r in broker.expire_locks()] == [0]  # nothing kept it: lost
        await wait_until(lambda: recorder.kinds(EventKind.LOCK_EXPIRED))
        gate.set()
        await wait_until(lambda: a.state == "acknowledged" and b.state == "acknowledged")
        assert consumer.kept == {}  # records received since were not handed to the keep-alive
    assert len(consumer.renewals) == 1  # one refused RENEW, then none
    assert [e.reason for e in recorder.kinds(EventKind.ERROR)] == ["renew-unsupported"]
    assert recorder.outcome_counts() == {"lock_expired": 1, "accepted": 2}
