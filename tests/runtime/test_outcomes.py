"""How a handler's return, exceptions and per-record calls become acknowledgements.

The runtime runs on the real ShareConsumer against the embedded broker.  What became of each
record is read from both sides: the runtime's events (``received`` per delivery,
``ack_committed`` per acknowledgement the broker applied, one terminal event per delivery)
and the broker's own record states and delivery counts (``kafka.share_records``).
Dead-letter copies are read back from the dead-letter topic, except where a test needs the
dead-letter producer to fail or stall on cue (``dlq``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from aioshare.protocol.errors import ConfigError, IllegalStateError
from aioshare.protocol.types import RecordState
from aioshare.runtime import App, Backoff, EventKind, Message, Reject, Retry
from aioshare.testing import ThreadedBroker
from tests.kit import wait_until

from .kit import (
    AppFactory,
    FakeDeadLetterSink,
    Ready,
    Recorder,
    applied_acks,
    header,
    lock_renewed,
    read_topic,
    settled_at_broker,
    share_records_when,
    trail,
)

ACQUIRED = RecordState.ACQUIRED
ACKNOWLEDGED, ARCHIVED = RecordState.ACKNOWLEDGED, RecordState.ARCHIVED


async def test_return_accepts_every_record(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    seen: list[bytes] = []

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        seen.append(msg.value)

    await ready(app)
    await kafka.produce("jobs", [b"a", b"b", b"c"], partition=0)
    async with app:
        await wait_until(lambda: [trail(recorder, o) for o in range(3)] == [["acquired#1", "ACCEPT"]] * 3)
        await settled_at_broker(kafka, "g", "jobs", 3)
        await wait_until(lambda: app.metrics.value("acknowledgements-send-total") == 3)
    assert sorted(seen) == [b"a", b"b", b"c"]
    assert recorder.outcome_counts() == {"accepted": 3}
    assert app.metrics.value("records-consumed-total", route="handle") == 3
    assert app.metrics.value("records-accepted-total") == 3


async def test_retry_holds_the_record_renewing_its_lock_then_releases(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    deliveries: list[int] = []

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        deliveries.append(msg.delivery_count)
        if msg.delivery_count == 1:
            raise Retry(delay=2.5)

    await ready(app, lock_ms=1000)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: recorder.kinds(EventKind.RETRIED))
        (retried,) = recorder.kinds(EventKind.RETRIED)
        assert retried.delay == 2.5
        # Held 2.5 s on a 1 s lock: the consumer's keep-alive renews it (at 0.7 of each
        # lock) and never lets it expire - still acquired by delivery 1 after two renewals.
        await lock_renewed(kafka, "g", "jobs", 0, renewals=2)
        assert deliveries == [1]
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert deliveries == [1, 2]
    (released,) = recorder.kinds(EventKind.RELEASED)
    assert released.reason == "retry"
    assert released.time - retried.time >= 2.4  # not released before its delay was over
    assert recorder.outcome_counts() == {"released": 1, "accepted": 1}
    assert recorder.kinds(EventKind.LOCK_EXPIRED) == []
    # One RENEWED per record whose lock the consumer renewed, when the record is settled.
    assert [(e.offset, e.delivery_count) for e in recorder.kinds(EventKind.RENEWED)] == [(0, 1)]


async def test_reject_archives_without_a_dead_letter_copy_by_default(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()

    @app.handler("jobs", group_id="g", dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[bytes]) -> None:
        raise Reject("bad order")

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "REJECT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert await read_topic(kafka.bootstrap_servers, "jobs.dlq", 0) == []
    (event,) = recorder.kinds(EventKind.REJECTED)
    assert event.reason == "bad order"
    assert recorder.outcome_counts() == {"rejected": 1}


@pytest.mark.parametrize("per_exception", [True, False])
async def test_reject_can_dead_letter(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder, per_exception: bool
) -> None:
    app = kafka_app()

    @app.handler("jobs", group_id="g", dead_letter_topic="jobs.dlq", dead_letter_on_reject=not per_exception)
    async def handle(msg: Message[bytes]) -> None:
        raise Reject("no", dead_letter=True if per_exception else None)

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "REJECT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    (sent,) = await read_topic(kafka.bootstrap_servers, "jobs.dlq", 1)
    assert header(sent, "aioshare.dlq.reason") == "rejected"
    assert header(sent, "aioshare.dlq.exception.class") == "aioshare.runtime.retry.Reject"
    assert recorder.outcome_counts() == {"dead_lettered": 1}


async def test_failures_back_off_then_exhaust_into_the_dead_letter_topic(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()

    @app.handler(
        "jobs",
        group_id="g",
        retry=Backoff(initial=0.2, max=1.0, jitter=False),
        max_attempts=3,
        dead_letter_topic="jobs.dlq",
    )
    async def handle(msg: Message[bytes]) -> None:
        raise ValueError(f"downstream said no to {msg.value!r}")

    await ready(app)
    await kafka.produce("jobs", [b"payload"], key=b"k", partition=0, headers=[("trace", b"t1")])
    async with app:
        await wait_until(
            lambda: (
                trail(recorder, 0)
                == ["acquired#1", "RELEASE", "acquired#2", "RELEASE", "acquired#3", "REJECT"]
            )
        )
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert [e.delay for e in recorder.kinds(EventKind.RETRIED)] == [0.2, 0.4]
    # Each redelivery comes no sooner than its delay after the failure.
    retried = recorder.kinds(EventKind.RETRIED)
    received = sorted(recorder.kinds(EventKind.RECEIVED), key=lambda e: e.delivery_count or 0)
    assert [e.delivery_count for e in received] == [1, 2, 3]
    assert received[1].time - retried[0].time >= 0.2
    assert received[2].time - retried[1].time >= 0.4
    (sent,) = await read_topic(kafka.bootstrap_servers, "jobs.dlq", 1)
    assert (sent.topic, sent.key, sent.value) == ("jobs.dlq", b"k", b"payload")
    assert (sent.headers[0][0], bytes(sent.headers[0][1])) == (
        "trace",
        b"t1",
    )  # the original headers come first
    assert header(sent, "aioshare.dlq.original.topic") == "jobs"
    assert header(sent, "aioshare.dlq.original.partition") == "0"
    assert header(sent, "aioshare.dlq.original.offset") == "0"
    assert header(sent, "aioshare.dlq.delivery.count") == "3"
    assert header(sent, "aioshare.dlq.group.id") == "g"
    assert header(sent, "aioshare.dlq.reason") == "exhausted"
    assert header(sent, "aioshare.dlq.exception.class") == "builtins.ValueError"
    assert header(sent, "aioshare.dlq.exception.message") == "downstream said no to b'payload'"
    assert recorder.outcome_counts() == {"released": 2, "dead_lettered": 1}
    assert len(recorder.kinds(EventKind.ERROR)) == 3
    assert app.metrics.value("records-dead-lettered-total") == 1


async def test_exhausted_without_dead_letter_topic_is_rejected(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()

    @app.handler("jobs", group_id="g", max_attempts=1)
    async def handle(msg: Message[bytes]) -> None:
        raise RuntimeError("boom")

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "REJECT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert [e.reason for e in recorder.kinds(EventKind.REJECTED)] == ["exhausted"]


async def test_dead_letter_copy_is_confirmed_before_the_reject(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder, dlq: FakeDeadLetterSink
) -> None:
    app = kafka_app(dead_letter_sink=dlq)
    dlq.gate = asyncio.Event()

    @app.handler("jobs", group_id="g", max_attempts=1, dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[bytes]) -> None:
        raise RuntimeError("boom")

    await ready(app, lock_ms=1000)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: dlq.attempts == 1)
        # The producer has not confirmed: no REJECT yet, and the lock is kept meanwhile.
        await lock_renewed(kafka, "g", "jobs", 0, renewals=2)
        assert trail(recorder, 0) == ["acquired#1"]
        dlq.gate.set()
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "REJECT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert len(dlq.sent) == 1
    assert recorder.outcome_counts() == {"dead_lettered": 1}
    assert [(e.offset, e.delivery_count) for e in recorder.kinds(EventKind.RENEWED)] == [(0, 1)]


async def test_failed_dead_letter_copy_releases_instead(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder, dlq: FakeDeadLetterSink
) -> None:
    app = kafka_app(dead_letter_sink=dlq)
    dlq.fail_with = ConnectionError("dlq cluster down")

    @app.handler("jobs", group_id="g", max_attempts=1, dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 2:
            dlq.fail_with = None  # the dead-letter topic is back for the next attempt
        raise RuntimeError("boom")

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "REJECT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert len(dlq.sent) == 1 and dlq.attempts == 2
    failures = [e for e in recorder.kinds(EventKind.ERROR) if e.reason == "dead-letter-failed"]
    assert len(failures) == 1 and isinstance(failures[0].error, ConnectionError)
    assert recorder.outcome_counts() == {"released": 1, "dead_lettered": 1}


class Order(msgspec.Struct):
    id: int


async def test_undecodable_record_goes_to_the_dead_letter_topic_at_once(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    values: list[Order] = []

    @app.handler("jobs", group_id="g", value_type=Order, max_attempts=5, dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[Order]) -> None:
        values.append(msg.value)

    await ready(app)
    await kafka.produce("jobs", [b'{"id": 7}', b"not json"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 1) == ["acquired#1", "REJECT"])
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "ACCEPT"])
        await settled_at_broker(kafka, "g", "jobs", 2)
    assert values == [Order(7)]
    (sent,) = await read_topic(kafka.bootstrap_servers, "jobs.dlq", 1)
    assert sent.value == b"not json"
    assert header(sent, "aioshare.dlq.reason") == "undecodable"
    assert header(sent, "aioshare.dlq.exception.class") == "aioshare.share.deserialize.DeserializationError"
    assert recorder.outcome_counts() == {"accepted": 1, "dead_lettered": 1}


async def test_on_error_release_releases_at_once(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()

    @app.handler("jobs", group_id="g", on_error="release")
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count < 3:
            raise RuntimeError("flaky")

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(
            lambda: (
                trail(recorder, 0)
                == ["acquired#1", "RELEASE", "acquired#2", "RELEASE", "acquired#3", "ACCEPT"]
            )
        )
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert recorder.kinds(EventKind.RETRIED) == []
    assert recorder.outcome_counts() == {"released": 2, "accepted": 1}


async def test_on_error_reject_rejects_at_once(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()

    @app.handler("jobs", group_id="g", on_error="reject")
    async def handle(msg: Message[bytes]) -> None:
        raise RuntimeError("no retries here")

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "REJECT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert recorder.outcome_counts() == {"rejected": 1}


async def test_retry_none_releases_without_delay(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()

    @app.handler("jobs", group_id="g", retry=None)
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 1:
            raise RuntimeError("once")

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert [e.delay for e in recorder.kinds(EventKind.RETRIED)] == [0.0]
    assert recorder.outcome_counts() == {"released": 1, "accepted": 1}


async def test_retry_delay_is_capped_by_max_retry_delay(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app(max_retry_delay=1.5)

    @app.handler("jobs", group_id="g", retry=Backoff(initial=0.1, max=1.5))
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 1:
            raise Retry(delay=10_000)

    await ready(app, lock_ms=1000)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: recorder.kinds(EventKind.RETRIED))
        (retried,) = recorder.kinds(EventKind.RETRIED)
        assert retried.delay == 1.5
        # Held past its 1 s lock (renewed), released when the capped delay is over.
        await lock_renewed(kafka, "g", "jobs", 0, renewals=1)
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    (released,) = recorder.kinds(EventKind.RELEASED)
    assert 1.4 <= released.time - retried.time < 5.0
    assert [(e.offset, e.delivery_count) for e in recorder.kinds(EventKind.RENEWED)] == [(0, 1)]


async def test_delay_budget_full_releases_at_once(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app(max_delayed=1)

    @app.handler("jobs", group_id="g", max_attempts=None)
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 1:
            raise Retry(delay=50)

    await ready(app)
    await kafka.produce("jobs", [b"a", b"b"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 1) == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"])
        held = await share_records_when(kafka, "g", "jobs", lambda r: r.state_of(1) == (ACKNOWLEDGED, 2))
        assert held.state_of(0) == (ACQUIRED, 1)  # a waits out its delay, held
        assert trail(recorder, 0) == ["acquired#1"]
    full = [e for e in recorder.kinds(EventKind.ERROR) if e.reason == "delay-queue-full"]
    assert [(e.offset, e.delivery_count) for e in full] == [(1, 1)]
    # a is released by the shutdown, its delay not yet over ...
    assert trail(recorder, 0) == ["acquired#1", "RELEASE"]
    released = [(e.offset, e.delivery_count, e.reason) for e in recorder.kinds(EventKind.RELEASED)]
    assert sorted(released) == [(0, 1, "shutdown"), (1, 1, "delay-queue-full")]
    # ... and the broker has it back: the group's next member gets its second delivery.
    next_member = kafka_app()
    redelivered: list[tuple[int, int]] = []

    @next_member.handler("jobs", group_id="g")
    async def handle_next(msg: Message[bytes]) -> None:
        redelivered.append((msg.offset, msg.delivery_count))

    async with next_member:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"])
        await settled_at_broker(kafka, "g", "jobs", 2)
    assert redelivered == [(0, 2)]


async def test_batch_handler_settles_records_one_by_one(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    batches: list[list[tuple[int, int]]] = []

    @app.handler("jobs", group_id="g", jobs="per_batch", max_messages_per_job=10, max_attempts=None)
    async def handle(msgs: list[Message[bytes]]) -> None:
        batches.append([(m.offset, m.delivery_count) for m in msgs])
        if msgs[0].delivery_count > 1:
            return  # redelivered: accept them all
        msgs[0].accept()
        msgs[1].retry(1.0)
        msgs[2].reject("bad")
        msgs[3].release()
        msgs[0].accept()  # the same outcome twice is one outcome
        with pytest.raises(IllegalStateError):
            msgs[2].accept()
        # msgs[4] is settled by the return: ACCEPT

    await ready(app)
    await kafka.produce("jobs", [b"0", b"1", b"2", b"3", b"4"], partition=0)
    async with app:
        # While 1 waits out its delay, the broker holds it; 3 came back and was accepted.
        mid = await share_records_when(kafka, "g", "jobs", lambda r: r.state_of(3) == (ACKNOWLEDGED, 2))
        assert [mid.state_of(o) for o in range(1, 5)] == [
            (ACQUIRED, 1),
            (ARCHIVED, 1),
            (ACKNOWLEDGED, 2),
            (ACKNOWLEDGED, 1),
        ]
        await wait_until(lambda: trail(recorder, 1) == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"])
        await settled_at_broker(kafka, "g", "jobs", 5)
    assert batches[0] == [(o, 1) for o in range(5)]  # one batch: the records settled one by one
    assert [trail(recorder, o) for o in range(5)] == [
        ["acquired#1", "ACCEPT"],
        ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"],
        ["acquired#1", "REJECT"],
        ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"],
        ["acquired#1", "ACCEPT"],
    ]


async def test_batch_exception_settles_only_the_unsettled_records(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    batches: list[list[int]] = []

    @app.handler("jobs", group_id="g", jobs="per_batch", on_error="reject")
    async def handle(msgs: list[Message[bytes]]) -> None:
        batches.append([m.offset for m in msgs])
        msgs[0].accept()
        raise RuntimeError("the rest failed")

    await ready(app)
    await kafka.produce("jobs", [b"0", b"1", b"2"], partition=0)
    async with app:
        await wait_until(lambda: sum(len(a) for a in applied_acks(recorder).values()) == 3)
        await settled_at_broker(kafka, "g", "jobs", 3)
    assert batches == [[0, 1, 2]]
    assert [trail(recorder, o) for o in range(3)] == [
        ["acquired#1", "ACCEPT"],
        ["acquired#1", "REJECT"],
        ["acquired#1", "REJECT"],
    ]


async def test_implicit_mode_settles_by_return_only(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    refused: list[BaseException] = []

    @app.handler("jobs", group_id="g", ack_mode="implicit")
    async def handle(msg: Message[bytes]) -> None:
        try:
            msg.reject()
        except IllegalStateError as exc:
            refused.append(exc)

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "ACCEPT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert len(refused) == 1 and "implicit" in str(refused[0])


async def test_class_handler_gets_one_instance_per_topic_with_hooks(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
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

    await ready(app)
    await kafka.produce("a", [b"1", b"2"], partition=0)
    await kafka.produce("b", [b"3"], partition=0)
    async with app:
        await wait_until(lambda: recorder.outcome_counts() == {"accepted": 3})
        await settled_at_broker(kafka, "g", "a", 2)
        await settled_at_broker(kafka, "g", "b", 1)
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


async def test_handler_object_and_message_fields(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()

    class Sender:
        def __init__(self) -> None:
            self.got: list[tuple[Any, ...]] = []
            self.timestamps: list[int] = []

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
                    msg.error,
                    msg.settled,
                    msg.route,
                )
            )
            self.timestamps.append(msg.timestamp)

    sender = Sender()
    app.handler("jobs", group_id="g", value_deserializer=lambda b: b.decode() if b else None)(sender)
    assert app.routes[0].name == "Sender"
    await ready(app)
    before_ms = int(time.time() * 1000)
    await kafka.produce("jobs", [b"hello"], key=b"k", partition=0, headers=[("h", b"1"), ("h", b"2")])
    after_ms = int(time.time() * 1000)
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "ACCEPT"])
    assert sender.got == [("jobs", 0, 0, b"k", "hello", b"hello", b"2", None, 1, 1, None, False, "Sender")]
    # The record's own (producer's create) timestamp, in milliseconds.
    (timestamp,) = sender.timestamps
    assert before_ms <= timestamp <= after_ms
