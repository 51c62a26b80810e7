"""Lock renewal while records are held, extend_lock(), and locks lost anyway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aioshare.protocol.errors import InvalidRecordStateError, KafkaConnectionError
from aioshare.runtime import App, EventKind, Handler, ManualClock, Message, Retry

from .fakes import FakeBroker, Recorder, wait_until

AppFactory = Callable[..., App]


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
        clock.advance(14.9)
        assert broker.consumers[0].renewals == []
        for n in (1, 2, 3):
            clock.advance(0.2 if n == 1 else 15.0)  # 0.5 of the 30 s lock, each time
            await wait_until(lambda n=n: len(recorder.kinds(EventKind.RENEWED)) == n)
            assert broker.expire_locks() == []
        gate.set()
        await wait_until(lambda: rec.state == "acknowledged")
    assert rec.history == ["acquired#1", "renewed", "renewed", "renewed", "ACCEPT"]
    assert app.metrics.value("lock-renewals-total") == 3


async def test_records_that_finish_quickly_are_never_renewed(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock
) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        pass

    broker.produce("jobs", [b"x"] * 20)
    async with app:
        await wait_until(lambda: broker.states()["acknowledged"] == 20)
        assert len(app.runners[0].rt.scheduler) == 0  # every renewal entry was cancelled
        clock.advance(100)
    assert broker.consumers[0].renewals == []


async def test_renewals_due_together_go_out_together(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock
) -> None:
    app = make_app()
    gate = asyncio.Event()

    @app.handler("jobs", group_id="g", concurrency=5)
    async def handle(msg: Message[bytes]) -> None:
        await gate.wait()

    broker.produce("jobs", [b"x"] * 5)
    async with app:
        await wait_until(lambda: app.runners[0].running_count == 5)
        keeper = app.runners[0].rt.keeper
        batches = 0
        original = keeper._renew_batch

        async def counting(batch: list) -> None:  # type: ignore[type-arg]
            nonlocal batches
            batches += 1
            await original(batch)

        keeper._renew_batch = counting  # type: ignore[method-assign]
        clock.advance(21)
        await wait_until(lambda: len(broker.consumers[0].renewals) == 5)
        assert batches == 1
        gate.set()
        await wait_until(lambda: broker.states()["acknowledged"] == 5)


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
        clock.advance(10)
        extend.set()
        await wait_until(lambda: deadlines == [1040.0])
        clock.advance(20)  # t=1030: the first schedule (t+21) is gone; next is 1010+21=1031
        assert broker.consumers[0].renewals == [("jobs", 0, 0)]
        clock.advance(1.5)
        await wait_until(lambda: len(broker.consumers[0].renewals) == 2)
        finish.set()
        await wait_until(lambda: rec.state == "acknowledged")
    assert len(recorder.kinds(EventKind.RENEWED)) == 2


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
        broker.consumers[0].renew_error = KafkaConnectionError("broker unreachable")
        clock.advance(21)
        await wait_until(lambda: any(e.reason == "renew-failed" for e in recorder.kinds(EventKind.ERROR)))
        clock.advance(9)  # t=1030: the lock ran out
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
        clock.advance(21)
        await wait_until(lambda: recorder.kinds(EventKind.LOCK_EXPIRED))
        assert app.runners[0].held_count == 0
        gate.set()
        await wait_until(lambda: app.runners[0].running_count == 0)
    assert "ACCEPT" not in rec.history
    assert recorder.outcome_counts() == {"lock_expired": 1}


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
        clock.advance(21)
        await wait_until(lambda: len(consumer.renewals) == 1 and app.runners[0].rt.keeper.renewing == 0)
        consumer.renew_error = None
        clock.advance(1.0)  # retried one second later
        await wait_until(lambda: len(recorder.kinds(EventKind.RENEWED)) == 1)
        clock.advance(8.5)
        assert broker.expire_locks() == []
        gate.set()
        await wait_until(lambda: rec.state == "acknowledged")


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
        clock.advance(21)  # the first RENEW is refused: renewal is off for this consumer
        await wait_until(
            lambda: any(e.reason == "renew-unsupported" for e in recorder.kinds(EventKind.ERROR))
        )
        clock.advance(8.2)  # t=1029.2: 0.9 s before the lock's end at 1030
        await wait_until(lambda: "RELEASE" in rec.history)
        assert broker.expire_locks() == []
        await wait_until(lambda: rec.state == "acknowledged")
    assert rec.history == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"]
