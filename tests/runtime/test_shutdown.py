"""Graceful shutdown, signals and crashes: every record accounted for, no task left behind."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from aioshare.protocol.errors import ConfigError, GroupAuthorizationFailedError, IllegalStateError
from aioshare.runtime import App, EventKind, Message, Retry

from .fakes import FakeBroker, Recorder, wait_until

AppFactory = Callable[..., App]


def assert_every_record_settled_once(recorder: Recorder) -> None:
    """Each delivery the runtime received has exactly one terminal event (and no more)."""
    assert set(recorder.terminal()) == recorder.received()


async def test_graceful_stop_accepts_what_finishes_and_releases_the_rest(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app()
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

    fast, stuck, retry, slow_rec = broker.produce("jobs", [b"fast", b"stuck", b"retry", b"slow"])
    async with app:
        runner = app.runners[0]
        await wait_until(lambda: fast.state == "acknowledged" and runner.delayed_count == 1)
        await wait_until(lambda: runner.running_count == 2)
        stopping = asyncio.create_task(app.stop(timeout=0.5))
        await wait_until(lambda: runner.stopping and runner.fetching == 0)
        slow.set()  # finishes within the timeout: accepted
        await stopping
        assert not app.running
    assert cancelled == [b"stuck"]
    assert events == ["done fast", "done slow", "on_shutdown"]
    assert fast.history == ["acquired#1", "ACCEPT"]
    assert slow_rec.history == ["acquired#1", "ACCEPT"]
    assert stuck.history == ["acquired#1", "RELEASE"]
    assert retry.history == ["acquired#1", "RELEASE"]
    released = {e.offset: e.reason for e in recorder.kinds(EventKind.RELEASED)}
    assert released == {1: "shutdown", 2: "shutdown"}
    assert_every_record_settled_once(recorder)
    (consumer,) = broker.consumers
    assert consumer.commits == 1 and consumer.closed and consumer.held == {}
    assert broker.states() == {"acknowledged": 2, "available": 2}


async def test_records_waiting_for_a_slot_or_their_key_are_released_on_stop(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app()
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

    broker.produce("jobs", [b"j0", b"j1"])
    broker.produce("keyed", [b"a0", b"a1"], key=b"A")
    async with app:
        by_name = {r.name: r for r in app.runners}
        jobs, keyed_runner = by_name["handle"], by_name["keyed"]
        await wait_until(lambda: jobs.held_count == 2 and jobs.running_count == 1)
        await wait_until(lambda: keyed_runner.held_count == 2 and keyed_runner.running_count == 1)
        assert jobs.slots.free == 0 and keyed_runner.slots.free == 1
        await app.stop(timeout=0.05)
    assert broker.states() == {"available": 4}
    assert recorder.outcome_counts() == {"released": 4}
    assert_every_record_settled_once(recorder)
    # Explicit RELEASEs, not session-close releases: the broker saw every one.
    assert len(broker.acks) == 4 and {t.name for _, t, _ in broker.acks} == {"RELEASE"}


async def test_second_stop_request_cancels_running_handlers_at_once(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app(shutdown_timeout=60.0)
    never = asyncio.Event()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        await never.wait()

    (rec,) = broker.produce("jobs", [b"x"])
    serving = asyncio.create_task(app.serve(handle_signals=False))
    await wait_until(lambda: app.running and app.runners[0].running_count == 1)
    app.request_stop()  # graceful: would wait up to 60 s for the handler
    await wait_until(lambda: app.runners[0].stopping)
    assert not serving.done()
    app.request_stop()  # impatient: cancel now
    await asyncio.wait_for(serving, 5)
    assert rec.history == ["acquired#1", "RELEASE"]
    assert_every_record_settled_once(recorder)


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
async def test_sigterm_stops_serve_gracefully(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app()
    finish = asyncio.Event()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        await finish.wait()

    (rec,) = broker.produce("jobs", [b"x"])
    before = signal.getsignal(signal.SIGTERM)
    serving = asyncio.create_task(app.serve())
    await wait_until(lambda: app.running and app.runners[0].running_count == 1)
    os.kill(os.getpid(), signal.SIGTERM)
    await wait_until(lambda: app.runners[0].stopping)
    finish.set()  # the running handler may finish: its record is accepted
    await asyncio.wait_for(serving, 5)
    assert rec.history == ["acquired#1", "ACCEPT"]
    assert broker.consumers[0].closed
    # The handler was removed again: SIGTERM is back to its previous disposition.
    assert signal.getsignal(signal.SIGTERM) == before


async def test_a_failing_consumer_stops_the_app_and_releases_everything(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app(shutdown_timeout=0.05)
    never = asyncio.Event()

    @app.handler("jobs", group_id="g", concurrency=2)
    async def handle(msg: Message[bytes]) -> None:
        if msg.value == b"retry":
            raise Retry(delay=60)
        await never.wait()

    stuck, retry = broker.produce("jobs", [b"stuck", b"retry"])
    failure = GroupAuthorizationFailedError("not allowed in group g")
    with pytest.raises(GroupAuthorizationFailedError):
        async with app:
            runner = app.runners[0]
            await wait_until(lambda: runner.running_count == 1 and runner.delayed_count == 1)
            broker.consumers[0].fail_with = failure
            broker.notify()  # wake its getmany
            await app.wait()  # returns: the app asked itself to stop
            assert app.failure is failure
    assert stuck.history == ["acquired#1", "RELEASE"]
    assert retry.history == ["acquired#1", "RELEASE"]
    assert_every_record_settled_once(recorder)
    assert [e.reason for e in recorder.kinds(EventKind.ERROR) if e.offset is None] == ["consumer-failed"]
    assert broker.consumers[0].closed


async def test_a_runtime_bug_in_a_job_stops_the_app_without_losing_records(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        pass

    with pytest.raises(ZeroDivisionError):
        async with app:
            runner = app.runners[0]

            def broken(*args: object, **kwargs: object) -> None:
                raise ZeroDivisionError("bug in settling")

            monkeypatch.setattr(runner.settler, "accept", broken)
            broker.produce("jobs", [b"y"])
            async with asyncio.timeout(10):
                await app.wait()
    assert isinstance(app.failure, ZeroDivisionError)
    assert recorder.outcome_counts() == {"released": 1}
    assert broker.states()["acquired"] == 0
    assert_every_record_settled_once(recorder)


async def test_a_failing_jobs_builder_releases_the_batch(
    make_app: AppFactory, broker: FakeBroker, recorder: Recorder
) -> None:
    app = make_app()
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

    recs = broker.produce("jobs", [b"a", b"b"])
    async with app:
        await wait_until(lambda: all(r.state == "acknowledged" for r in recs))
    assert [e.reason for e in recorder.kinds(EventKind.ERROR)] == ["jobs-builder", "jobs-builder"]
    assert all(r.history == ["acquired#1", "RELEASE", "acquired#2", "ACCEPT"] for r in recs)


async def test_on_start_failure_leaves_nothing_running(make_app: AppFactory, broker: FakeBroker) -> None:
    app = make_app()

    async def on_start() -> None:
        raise RuntimeError("cannot connect to the database")

    @app.handler("a", group_id="g", priority=1)
    async def first(msg: Message[bytes]) -> None:
        pass

    @app.handler("b", group_id="g", on_start=on_start)
    async def second(msg: Message[bytes]) -> None:
        pass

    with pytest.raises(RuntimeError, match="database"):
        await app.start()
    assert [c.closed for c in broker.consumers] == [True]  # the first route's consumer was closed
    assert not app.running


async def test_app_lifecycle_rules(make_app: AppFactory) -> None:
    app = make_app()
    with pytest.raises(ConfigError, match="no routes"):
        await app.start()

    app = make_app()

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
