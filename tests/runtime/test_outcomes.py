"""How a handler's return, exceptions and per-record calls become acknowledgements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from aioshare.protocol.errors import ConfigError, IllegalStateError
from aioshare.protocol.types import AckType
from aioshare.runtime import App, Backoff, EventKind, ManualClock, Message, Reject, Retry

from .fakes import FakeBroker, FakeDeadLetterSink, Recorder, wait_until

AppFactory = Callable[..., App]


def acks_of(broker: FakeBroker, topic: str = "jobs") -> list[tuple[int, AckType, int]]:
    return [(key[2], t, dc) for key, t, dc in broker.acks if key[0] == topic]


async def test_return_accepts_every_record(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app()
    seen: list[bytes] = []

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        seen.append(msg.value)

    broker.produce("jobs", [b"a", b"b", b"c"])
    async with app:
        await wait_until(lambda: broker.states()["acknowledged"] == 3)
    assert sorted(seen) == [b"a", b"b", b"c"]
    assert recorder.outcome_counts() == {"accepted": 3}
    assert sorted(acks_of(broker)) == [(0, AckType.ACCEPT, 1), (1, AckType.ACCEPT, 1), (2, AckType.ACCEPT, 1)]
    assert app.metrics.value("records-consumed-total", route="handle") == 3
    assert app.metrics.value("records-accepted-total") == 3
    await wait_until(lambda: app.metrics.value("acknowledgements-send-total") == 3)


async def test_retry_holds_the_record_renewing_its_lock_then_releases(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock, recorder: Recorder
) -> None:
    app = make_app()
    deliveries: list[int] = []

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        deliveries.append(msg.delivery_count)
        if msg.delivery_count == 1:
            raise Retry(delay=100)

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: recorder.kinds(EventKind.RETRIED))
        assert recorder.kinds(EventKind.RETRIED)[0].delay == 100
        consumer = broker.consumers[0]
        # Held for 100 s with a 30 s lock: the consumer's keep-alive renews it at 0.7 of each
        # lock, never lets it expire.
        for n in range(1, 5):  # at t+21, t+42, t+63, t+84
            clock.advance(21.0)
            await wait_until(lambda n=n: rec.history.count("renewed") == n)
            assert broker.expire_locks() == []
            assert rec.state == "acquired" and rec.delivery_count == 1
        assert len(consumer.renewals) == 4
        clock.advance(15.0)
        assert broker.expire_locks() == []
        assert rec.state == "acquired"
        clock.advance(1.0)  # the delay is over: RELEASE, then the broker redelivers it
        await wait_until(lambda: rec.state == "acknowledged")
    assert deliveries == [1, 2]
    assert [h for h in rec.history if h != "renewed"] == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"]
    assert recorder.outcome_counts() == {"released": 1, "accepted": 1}
    assert [e.reason for e in recorder.kinds(EventKind.RELEASED)] == ["retry"]
    # One RENEWED per record whose lock the consumer renewed, when the record is settled.
    assert [(e.offset, e.delivery_count) for e in recorder.kinds(EventKind.RENEWED)] == [(0, 1)]


async def test_reject_archives_without_a_dead_letter_copy_by_default(
    make_app: AppFactory, broker: FakeBroker, dlq: FakeDeadLetterSink, recorder: Recorder
) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g", dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[bytes]) -> None:
        raise Reject("bad order")

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: rec.state == "archived")
    assert rec.history == ["acquired#1", "REJECT"]
    assert dlq.sent == []
    (event,) = recorder.kinds(EventKind.REJECTED)
    assert event.reason == "bad order"


@pytest.mark.parametrize("per_exception", [True, False])
async def test_reject_can_dead_letter(
    make_app: AppFactory, broker: FakeBroker, dlq: FakeDeadLetterSink, per_exception: bool
) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g", dead_letter_topic="jobs.dlq", dead_letter_on_reject=not per_exception)
    async def handle(msg: Message[bytes]) -> None:
        raise Reject("no", dead_letter=True if per_exception else None)

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: rec.state == "archived")
    (sent,) = dlq.sent
    assert sent.header("aioshare.dlq.reason") == "rejected"
    assert sent.header("aioshare.dlq.exception.class") == "aioshare.runtime.retry.Reject"


async def test_failures_back_off_then_exhaust_into_the_dead_letter_topic(
    make_app: AppFactory, broker: FakeBroker, dlq: FakeDeadLetterSink, clock: ManualClock, recorder: Recorder
) -> None:
    app = make_app()

    @app.handler(
        "jobs",
        group_id="g",
        retry=Backoff(initial=2.0, max=10.0, jitter=False),
        max_attempts=3,
        dead_letter_topic="jobs.dlq",
    )
    async def handle(msg: Message[bytes]) -> None:
        raise ValueError(f"downstream said no to {msg.value!r}")

    (rec,) = broker.produce("jobs", [b"payload"], key=b"k", headers=[("trace", b"t1")])
    async with app:
        await wait_until(lambda: len(recorder.kinds(EventKind.RETRIED)) == 1)
        assert recorder.kinds(EventKind.RETRIED)[0].delay == 2.0
        clock.advance(2.0)
        await wait_until(lambda: len(recorder.kinds(EventKind.RETRIED)) == 2)
        assert recorder.kinds(EventKind.RETRIED)[1].delay == 4.0
        assert rec.delivery_count == 2
        clock.advance(4.0)
        await wait_until(lambda: rec.state == "archived")
    assert rec.delivery_count == 3
    assert rec.history == ["acquired#1", "RELEASE", "acquired#2", "RELEASE", "acquired#3", "REJECT"]
    (sent,) = dlq.sent
    assert (sent.topic, sent.key, sent.value) == ("jobs.dlq", b"k", b"payload")
    assert sent.headers[0] == ("trace", b"t1")  # the original headers come first
    assert sent.header("aioshare.dlq.original.topic") == "jobs"
    assert sent.header("aioshare.dlq.original.partition") == "0"
    assert sent.header("aioshare.dlq.original.offset") == "0"
    assert sent.header("aioshare.dlq.delivery.count") == "3"
    assert sent.header("aioshare.dlq.group.id") == "g"
    assert sent.header("aioshare.dlq.reason") == "exhausted"
    assert sent.header("aioshare.dlq.exception.class") == "builtins.ValueError"
    assert sent.header("aioshare.dlq.exception.message") == "downstream said no to b'payload'"
    assert recorder.outcome_counts() == {"released": 2, "dead_lettered": 1}
    assert len(recorder.kinds(EventKind.ERROR)) == 3
    assert app.metrics.value("records-dead-lettered-total") == 1


async def test_exhausted_without_dead_letter_topic_is_rejected(
    make_app: AppFactory, broker: FakeBroker
) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g", max_attempts=1)
    async def handle(msg: Message[bytes]) -> None:
        raise RuntimeError("boom")

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: rec.state == "archived")
    assert rec.history == ["acquired#1", "REJECT"]


async def test_dead_letter_copy_is_confirmed_before_the_reject(
    make_app: AppFactory, broker: FakeBroker, dlq: FakeDeadLetterSink, clock: ManualClock
) -> None:
    app = make_app()
    dlq.gate = asyncio_event()

    @app.handler("jobs", group_id="g", max_attempts=1, dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[bytes]) -> None:
        raise RuntimeError("boom")

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: dlq.attempts == 1)
        # The producer has not confirmed: no REJECT yet, and the lock is kept meanwhile.
        clock.advance(1.0)  # the batch's hand-over to the consumer's keep-alive
        await wait_until(lambda: len(broker.consumers[0].kept) == 1)
        clock.advance(24.0)
        await wait_until(lambda: len(broker.consumers[0].renewals) == 1)
        assert rec.history == ["acquired#1", "renewed"]
        dlq.gate.set()
        await wait_until(lambda: rec.state == "archived")
    assert rec.history == ["acquired#1", "renewed", "REJECT"]
    assert len(dlq.sent) == 1


async def test_failed_dead_letter_copy_releases_instead(
    make_app: AppFactory, broker: FakeBroker, dlq: FakeDeadLetterSink, recorder: Recorder
) -> None:
    app = make_app()
    dlq.fail_with = ConnectionError("dlq cluster down")

    @app.handler("jobs", group_id="g", max_attempts=1, dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 2:
            dlq.fail_with = None  # the dead-letter topic is back for the next attempt
        raise RuntimeError("boom")

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: rec.state == "archived")
    assert rec.history == ["acquired#1", "RELEASE", "acquired#2", "REJECT"]
    assert len(dlq.sent) == 1
    failures = [e for e in recorder.kinds(EventKind.ERROR) if e.reason == "dead-letter-failed"]
    assert len(failures) == 1 and isinstance(failures[0].error, ConnectionError)
    assert recorder.outcome_counts() == {"released": 1, "dead_lettered": 1}


class Order(msgspec.Struct):
    id: int


async def test_undecodable_record_goes_to_the_dead_letter_topic_at_once(
    make_app: AppFactory, broker: FakeBroker, dlq: FakeDeadLetterSink
) -> None:
    app = make_app()
    values: list[Order] = []

    @app.handler("jobs", group_id="g", value_type=Order, max_attempts=5, dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[Order]) -> None:
        values.append(msg.value)

    good, bad = broker.produce("jobs", [b'{"id": 7}', b"not json"])
    async with app:
        await wait_until(lambda: bad.state == "archived" and good.state == "acknowledged")
    assert values == [Order(7)]
    assert bad.history == ["acquired#1", "REJECT"]
    (sent,) = dlq.sent
    assert sent.header("aioshare.dlq.reason") == "undecodable"
    assert sent.header("aioshare.dlq.exception.class") == "aioshare.share.deserialize.DeserializationError"


async def test_on_error_release_releases_at_once(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g", on_error="release")
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count < 3:
            raise RuntimeError("flaky")

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: rec.state == "acknowledged")
    assert rec.history == ["acquired#1", "RELEASE", "acquired#2", "RELEASE", "acquired#3", "ACCEPT"]
    assert recorder.kinds(EventKind.RETRIED) == []


async def test_on_error_reject_rejects_at_once(make_app: AppFactory, broker: FakeBroker) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g", on_error="reject")
    async def handle(msg: Message[bytes]) -> None:
        raise RuntimeError("no retries here")

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: rec.state == "archived")
    assert rec.history == ["acquired#1", "REJECT"]


async def test_retry_none_releases_without_delay(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g", retry=None)
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 1:
            raise RuntimeError("once")

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: rec.state == "acknowledged")
    assert [e.delay for e in recorder.kinds(EventKind.RETRIED)] == [0.0]
    assert rec.history == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"]


async def test_retry_delay_is_capped_by_max_retry_delay(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock, recorder: Recorder
) -> None:
    app = make_app(max_retry_delay=60.0)

    @app.handler("jobs", group_id="g", retry=Backoff(initial=1, max=60))
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 1:
            raise Retry(delay=10_000)

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: recorder.kinds(EventKind.RETRIED))
        assert recorder.kinds(EventKind.RETRIED)[0].delay == 60.0
        for n in (1, 2):  # renewed at t+21 and t+42 ...
            clock.advance(21.0)
            await wait_until(lambda n=n: rec.history.count("renewed") == n)
        clock.advance(18.0)  # ... and released at t+60
        await wait_until(lambda: rec.state == "acknowledged")
    assert rec.history == ["acquired#1", "renewed", "renewed", "RELEASE", "acquired#2", "ACCEPT"]


async def test_delay_budget_full_releases_at_once(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app(max_delayed=1)

    @app.handler("jobs", group_id="g", max_attempts=None)
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 1:
            raise Retry(delay=50)

    a, b = broker.produce("jobs", [b"a", b"b"])
    async with app:
        await wait_until(lambda: len(recorder.kinds(EventKind.RETRIED)) == 1 and b.state == "acknowledged")
        assert a.state == "acquired" and a.delivery_count == 1
    full = [e for e in recorder.kinds(EventKind.ERROR) if e.reason == "delay-queue-full"]
    assert [(e.offset, e.delivery_count) for e in full] == [(1, 1)]
    assert b.history == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"]
    assert a.history == ["acquired#1", "RELEASE"]  # released by the shutdown, delay not yet over


async def test_batch_handler_settles_records_one_by_one(
    make_app: AppFactory, broker: FakeBroker, clock: ManualClock, recorder: Recorder
) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g", jobs="per_batch", max_messages_per_job=10, max_attempts=None)
    async def handle(msgs: list[Message[bytes]]) -> None:
        if msgs[0].delivery_count > 1:
            return  # redelivered: accept them all
        msgs[0].accept()
        msgs[1].retry(5)
        msgs[2].reject("bad")
        msgs[3].release()
        msgs[0].accept()  # the same outcome twice is one outcome
        with pytest.raises(IllegalStateError):
            msgs[2].accept()
        # msgs[4] is settled by the return: ACCEPT

    recs = broker.produce("jobs", [b"0", b"1", b"2", b"3", b"4"])
    async with app:
        await wait_until(lambda: recs[3].state == "acknowledged" and recs[4].state == "acknowledged")
        assert recs[1].state == "acquired"
        clock.advance(5.0)
        await wait_until(lambda: recs[1].state == "acknowledged")
    assert [r.history for r in recs] == [
        ["acquired#1", "ACCEPT"],
        ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"],
        ["acquired#1", "REJECT"],
        ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"],
        ["acquired#1", "ACCEPT"],
    ]


async def test_batch_exception_settles_only_the_unsettled_records(
    make_app: AppFactory, broker: FakeBroker
) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g", jobs="per_batch", on_error="reject")
    async def handle(msgs: list[Message[bytes]]) -> None:
        msgs[0].accept()
        raise RuntimeError("the rest failed")

    recs = broker.produce("jobs", [b"0", b"1", b"2"])
    async with app:
        await wait_until(lambda: all(r.state != "acquired" and r.state != "available" for r in recs))
    assert [r.history[-1] for r in recs] == ["ACCEPT", "REJECT", "REJECT"]


async def test_implicit_mode_settles_by_return_only(make_app: AppFactory, broker: FakeBroker) -> None:
    app = make_app()
    refused: list[BaseException] = []

    @app.handler("jobs", group_id="g", ack_mode="implicit")
    async def handle(msg: Message[bytes]) -> None:
        try:
            msg.reject()
        except IllegalStateError as exc:
            refused.append(exc)

    (rec,) = broker.produce("jobs", [b"x"])
    async with app:
        await wait_until(lambda: rec.state == "acknowledged")
    assert len(refused) == 1 and "implicit" in str(refused[0])


async def test_class_handler_gets_one_instance_per_topic_with_hooks(
    make_app: AppFactory, broker: FakeBroker
) -> None:
    app = make_app()
    log: list[str] = []

    @app.handler("a", "b", group_id="g")
    class Counter:
        def __init__(self, topic: str) -> None:
            self.topic = topic
            self.count = 0

        async def on_start(self) -> None:
            log.append(f"start {self.topic}")

        async def on_shutdown(self) -> None:
            log.append(f"stop {self.topic} after {self.count}")

        async def handle(self, msg: Message[bytes]) -> None:
            assert msg.topic == self.topic
            self.count += 1

    broker.produce("a", [b"1", b"2"])
    broker.produce("b", [b"3"])
    async with app:
        await wait_until(lambda: broker.states()["acknowledged"] == 3)
        instances = app.runners[0].binding.instances
        assert {t: i.count for t, i in instances.items()} == {"a": 2, "b": 1}
    assert log == ["start a", "start b", "stop a after 2", "stop b after 1"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry": Backoff(initial=1, max=3600)}, "exceeds max_retry_delay"),
        ({"dead_letter_topic": "jobs"}, "dead-letter topic cannot be"),
        ({"dead_letter_on_reject": True}, "needs a dead_letter_topic"),
        ({"concurrency": 0}, "concurrency"),
        ({"renew_fraction": 1.0}, "renew_fraction"),
        ({"jobs": "per_topic"}, "unknown jobs builder"),
        ({"ack_mode": "auto"}, "ack_mode"),
        ({"on_error": "ignore"}, "on_error"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
def test_bad_configuration_fails_at_registration(kwargs: dict[str, Any], message: str) -> None:
    app = App()

    async def handle(msg: Message[bytes]) -> None:
        pass

    with pytest.raises(ConfigError, match=message):
        app.handler("jobs", group_id="g", **kwargs)(handle)


def test_sync_handlers_and_duplicate_names_are_refused() -> None:
    app = App()

    def sync(msg: Message[bytes]) -> None:
        pass

    with pytest.raises(ConfigError, match="async def"):
        app.handler("jobs", group_id="g")(sync)

    async def handle(msg: Message[bytes]) -> None:
        pass

    class SyncHandle:
        def handle(self, msg: Message[bytes]) -> None:
            pass

    with pytest.raises(ConfigError, match="async def"):
        app.handler("jobs", group_id="g")(SyncHandle)
    with pytest.raises(ConfigError, match="async def"):
        app.handler("jobs", group_id="g")(SyncHandle())

    app.handler("jobs", group_id="g")(handle)
    with pytest.raises(ConfigError, match="already exists"):
        app.handler("other", group_id="g")(handle)
    app.handler("other", group_id="g", name="handle-other")(handle)
    assert [r.name for r in app.routes] == ["handle", "handle-other"]


def test_backoff_schedule_and_validation() -> None:
    plain = Backoff(initial=1.0, max=20.0, multiplier=2.0, jitter=False)
    assert [plain.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 20, 20]
    assert plain.delay(10_000) == 20.0  # no overflow however many deliveries
    jittered = Backoff(initial=4.0, max=20.0, jitter=True)
    assert jittered.delay(1, rand=lambda: 0.0) == 2.0
    assert jittered.delay(1, rand=lambda: 1.0) == 4.0
    assert all(10.0 <= jittered.delay(5) <= 20.0 for _ in range(100))
    with pytest.raises(ConfigError):
        Backoff(initial=5, max=1)
    with pytest.raises(ConfigError):
        Backoff(multiplier=0.5)
    with pytest.raises(ValueError):
        Retry(delay=-1)


def asyncio_event() -> Any:
    import asyncio

    return asyncio.Event()


async def test_handler_object_and_message_fields(make_app: AppFactory, broker: FakeBroker) -> None:
    app = make_app()

    class Sender:
        def __init__(self) -> None:
            self.got: list[tuple[Any, ...]] = []

        async def handle(self, msg: Message[str]) -> None:
            self.got.append(
                (
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    msg.key,
                    msg.value,
                    msg.raw_value,
                    msg.header("h"),
                    msg.header("missing"),
                    msg.attempt,
                    msg.delivery_count,
                    msg.timestamp,
                    msg.error,
                    msg.settled,
                    msg.route,
                )
            )

    sender = Sender()
    app.handler("jobs", group_id="g", value_deserializer=lambda b: b.decode() if b else None)(sender)
    assert app.routes[0].name == "Sender"
    broker.produce("jobs", [b"hello"], key=b"k", headers=[("h", b"1"), ("h", b"2")])
    async with app:
        await wait_until(lambda: broker.states()["acknowledged"] == 1)
    assert sender.got == [
        ("jobs", 0, 0, b"k", "hello", b"hello", b"2", None, 1, 1, 1_700_000_000_000, None, False, "Sender")
    ]
