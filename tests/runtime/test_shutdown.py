"""Graceful shutdown, signals and crashes: every record accounted for, no task left behind.

The runtime runs the real ShareConsumer against the embedded broker.  What became of a record
is read three ways: the runtime's events (``recorder``), the acknowledgements the broker
confirmed (``ack_committed``), and the broker's record state just before each consumer closed
its share session (``WatchedConsumer.at_close``) - so a record the app RELEASEd itself is told
apart from one the session close would have released.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from aioshare.broker.embedded import ShareRecords
from aioshare.protocol.errors import ConfigError, GroupAuthorizationFailedError, IllegalStateError
from aioshare.protocol.types import RecordState
from aioshare.runtime import EventKind, Message, Retry
from aioshare.testing import ThreadedBroker
from tests.kit import produce_one_batch, wait_until

from .kit import AppFactory, Ready, Recorder, Watch, applied_acks, settled_at_broker

AVAILABLE_AGAIN = (RecordState.AVAILABLE, 1)  # released after one delivery, the count kept
ACCEPTED_ONCE = (RecordState.ACKNOWLEDGED, 1)


def assert_every_record_settled_once(recorder: Recorder) -> None:
    """Each delivery the runtime received has exactly one terminal event (and no more)."""
    assert set(recorder.terminal()) == recorder.received()


def fate(records: ShareRecords | None, offset: int) -> tuple[RecordState, int] | str | None:
    """A record's state and delivery count, or "done" below the share-partition start offset."""
    assert records is not None
    return "done" if offset < records.start_offset else records.state_of(offset)


async def test_graceful_stop_accepts_what_finishes_and_releases_the_rest(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    watch = Watch(kafka)
    app = kafka_app(consumer_factory=watch)
    slow = asyncio.Event()
    never = asyncio.Event()
    cancelled: list[bytes] = []
    events: list[str] = []

    async def on_shutdown() -> None:
        events.append("on_shutdown")

    @app.handler("jobs", group_id="g", concurrency=4, on_shutdown=on_shutdown)
    async def handle(msg: Message[bytes]) -> None:
        try:
            if msg.value == b"stuck":
                await never.wait()
            elif msg.value == b"slow":
                await slow.wait()
            elif msg.value == b"retry":
                raise Retry(delay=100)
        except asyncio.CancelledError:
            cancelled.append(msg.value)
            raise
        events.append(f"done {msg.value.decode()}")

    await ready(app)
    await kafka.produce("jobs", [b"fast", b"stuck", b"retry", b"slow"], partition=0)
    async with app:
        runner = app.runners[0]
        await wait_until(lambda: ("jobs", 0) in applied_acks(recorder) and runner.delayed_count == 1)
        await wait_until(lambda: runner.running_count == 2)
        stopping = asyncio.create_task(app.stop(timeout=0.5))
        await wait_until(lambda: runner.stopping and runner.fetching == 0)
        slow.set()  # finishes within the timeout: accepted
        await stopping
        assert not app.running
    assert cancelled == [b"stuck"]
    assert events == ["done fast", "done slow", "on_shutdown"]
    assert applied_acks(recorder) == {
        ("jobs", 0): ["accept"],
        ("jobs", 1): ["release"],
        ("jobs", 2): ["release"],
        ("jobs", 3): ["accept"],
    }
    released = {e.offset: e.reason for e in recorder.kinds(EventKind.RELEASED)}
    assert released == {1: "shutdown", 2: "shutdown"}
    assert_every_record_settled_once(recorder)
    (consumer,) = watch.consumers
    assert consumer.commits == 1 and consumer.closed and consumer.held_at_close == 0
    held = consumer.at_close
    assert [fate(held, offset) for offset in range(4)] == [
        "done",
        AVAILABLE_AGAIN,
        AVAILABLE_AGAIN,
        ACCEPTED_ONCE,
    ]


async def test_records_waiting_for_a_slot_or_their_key_are_released_on_stop(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    watch = Watch(kafka)
    app = kafka_app(consumer_factory=watch)
    never = asyncio.Event()

    def one_per_job(msgs: list[Message[bytes]]) -> list[list[Message[bytes]]]:
        return [[m] for m in msgs]

    # Two records per fetch, one slot: the second job waits in dispatch for the slot.
    @app.handler("jobs", group_id="g", concurrency=1, jobs=one_per_job, max_messages_per_job=2)
    async def handle(msgs: list[Message[bytes]]) -> None:
        await never.wait()

    # Two records of key A: one job runs, the other waits in the key's lane.
    @app.handler("keyed", group_id="g", concurrency=2, jobs="per_key", max_messages_per_job=1)
    async def keyed(msgs: list[Message[bytes]]) -> None:
        await never.wait()

    await ready(app)
    await kafka.produce("jobs", [b"j0", b"j1"], partition=0)
    await kafka.produce("keyed", [b"a0", b"a1"], key=b"A", partition=0)
    async with app:
        by_name = {r.name: r for r in app.runners}
        jobs, keyed_runner = by_name["handle"], by_name["keyed"]
        await wait_until(lambda: jobs.held_count == 2 and jobs.running_count == 1)
        await wait_until(lambda: keyed_runner.held_count == 2 and keyed_runner.running_count == 1)
        assert jobs.slots.free == 0 and keyed_runner.slots.free == 1
        await app.stop(timeout=0.05)
    assert recorder.outcome_counts() == {"released": 4}
    assert_every_record_settled_once(recorder)
    # Explicit RELEASEs, not session-close releases: the broker confirmed every one before
    # the consumers closed.
    assert applied_acks(recorder) == {
        (topic, offset): ["release"] for topic in ("jobs", "keyed") for offset in (0, 1)
    }
    for consumer in watch.consumers:
        assert [fate(consumer.at_close, offset) for offset in (0, 1)] == [AVAILABLE_AGAIN] * 2


async def test_second_stop_request_cancels_running_handlers_at_once(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    watch = Watch(kafka)
    app = kafka_app(consumer_factory=watch, shutdown_timeout=60.0)
    never = asyncio.Event()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        await never.wait()

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    serving = asyncio.create_task(app.serve(handle_signals=False))
    await wait_until(lambda: app.running and app.runners[0].running_count == 1)
    app.request_stop()  # graceful: would wait up to 60 s for the handler
    await wait_until(lambda: app.runners[0].stopping)
    assert not serving.done()
    app.request_stop()  # impatient: cancel now
    await asyncio.wait_for(serving, 5)
    assert applied_acks(recorder) == {("jobs", 0): ["release"]}
    assert fate(watch.consumers[0].at_close, 0) == AVAILABLE_AGAIN
    assert [e.reason for e in recorder.kinds(EventKind.RELEASED)] == ["shutdown"]
    assert_every_record_settled_once(recorder)


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
async def test_sigterm_stops_serve_gracefully(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    watch = Watch(kafka)
    app = kafka_app(consumer_factory=watch)
    finish = asyncio.Event()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        await finish.wait()

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    before = signal.getsignal(signal.SIGTERM)
    serving = asyncio.create_task(app.serve())
    await wait_until(lambda: app.running and app.runners[0].running_count == 1)
    os.kill(os.getpid(), signal.SIGTERM)
    await wait_until(lambda: app.runners[0].stopping)
    finish.set()  # the running handler may finish: its record is accepted
    await asyncio.wait_for(serving, 5)
    assert applied_acks(recorder) == {("jobs", 0): ["accept"]}
    (consumer,) = watch.consumers
    assert consumer.closed and fate(consumer.at_close, 0) == "done"
    # The handler was removed again: SIGTERM is back to its previous disposition.
    assert signal.getsignal(signal.SIGTERM) == before


async def test_a_failing_consumer_stops_the_app_and_releases_everything(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    watch = Watch(kafka)
    app = kafka_app(consumer_factory=watch, shutdown_timeout=0.05)
    never = asyncio.Event()

    # A short poll: the fetch loop comes back to getmany (and meets the fault) within 0.1 s.
    @app.handler("jobs", group_id="g", concurrency=2, poll_interval=0.1)
    async def handle(msg: Message[bytes]) -> None:
        if msg.value == b"retry":
            raise Retry(delay=60)
        await never.wait()

    await ready(app)
    await kafka.produce("jobs", [b"stuck", b"retry"], partition=0)
    failure = GroupAuthorizationFailedError("not allowed in group g")
    with pytest.raises(GroupAuthorizationFailedError):
        async with app:
            runner = app.runners[0]
            await wait_until(lambda: runner.running_count == 1 and runner.delayed_count == 1)
            watch.consumers[0].fail_with = failure
            await asyncio.wait_for(app.wait(), 5)  # returns: the app asked itself to stop
            assert app.failure is failure
    assert applied_acks(recorder) == {("jobs", 0): ["release"], ("jobs", 1): ["release"]}
    (consumer,) = watch.consumers
    assert consumer.closed and [fate(consumer.at_close, offset) for offset in (0, 1)] == [AVAILABLE_AGAIN] * 2
    assert_every_record_settled_once(recorder)
    assert [e.reason for e in recorder.kinds(EventKind.ERROR) if e.offset is None] == ["consumer-failed"]


async def test_a_runtime_bug_in_a_job_stops_the_app_without_losing_records(
    kafka: ThreadedBroker,
    kafka_app: AppFactory,
    ready: Ready,
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watch = Watch(kafka)
    app = kafka_app(consumer_factory=watch)

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        pass

    await ready(app)
    with pytest.raises(ZeroDivisionError):
        async with app:
            runner = app.runners[0]

            def broken(*args: object, **kwargs: object) -> None:
                raise ZeroDivisionError("bug in settling")

            monkeypatch.setattr(runner.settler, "accept", broken)
            await kafka.produce("jobs", [b"y"], partition=0)
            await asyncio.wait_for(app.wait(), 10)
    assert isinstance(app.failure, ZeroDivisionError)
    assert recorder.outcome_counts() == {"released": 1}
    assert applied_acks(recorder) == {("jobs", 0): ["release"]}
    assert fate(watch.consumers[0].at_close, 0) == AVAILABLE_AGAIN
    assert_every_record_settled_once(recorder)


async def test_a_failing_jobs_builder_releases_the_batch(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    calls = 0

    def flaky(msgs: list[Message[bytes]]) -> list[list[Message[bytes]]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("builder bug")
        return [msgs]

    @app.handler("jobs", group_id="g", jobs=flaky, max_messages_per_job=5)
    async def handle(msgs: list[Message[bytes]]) -> None:
        pass

    await ready(app)
    # One log batch: the first fetch brings both records, so both meet the failing builder.
    await produce_one_batch(kafka.bootstrap_servers, "jobs", [b"a", b"b"])
    async with app:
        await settled_at_broker(kafka, "g", "jobs", 2)
    assert [e.reason for e in recorder.kinds(EventKind.ERROR)] == ["jobs-builder", "jobs-builder"]
    # Released by the app, redelivered (second delivery) and accepted.
    assert applied_acks(recorder) == {("jobs", 0): ["release", "accept"], ("jobs", 1): ["release", "accept"]}
    assert recorder.received() == {("jobs", 0, offset, count) for offset in (0, 1) for count in (1, 2)}
    assert recorder.terminal() == {
        ("jobs", 0, offset, count): EventKind.RELEASED if count == 1 else EventKind.ACCEPTED
        for offset in (0, 1)
        for count in (1, 2)
    }


async def test_on_start_failure_leaves_nothing_running(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready
) -> None:
    watch = Watch(kafka)
    app = kafka_app(consumer_factory=watch)

    async def on_start() -> None:
        raise RuntimeError("cannot connect to the database")

    @app.handler("a", group_id="g", priority=1)
    async def first(msg: Message[bytes]) -> None:
        pass

    @app.handler("b", group_id="g", on_start=on_start)
    async def second(msg: Message[bytes]) -> None:
        pass

    await ready(app)
    with pytest.raises(RuntimeError, match="database"):
        await app.start()
    # The first route's consumer had joined the group; it was closed again.
    assert [(c.spec.topics, c.closed) for c in watch.consumers] == [(("a",), True)]
    assert not app.running


async def test_app_lifecycle_rules(kafka_app: AppFactory) -> None:
    app = kafka_app()
    with pytest.raises(ConfigError, match="no routes"):
        await app.start()

    app = kafka_app()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        pass

    with pytest.raises(IllegalStateError):
        await app.wait()
    async with app:
        with pytest.raises(IllegalStateError):
            app.handler("late", group_id="g")(handle)
        with pytest.raises(IllegalStateError):
            await app.start()
    await app.stop()  # idempotent
    with pytest.raises(IllegalStateError, match="runs once"):
        await app.start()
