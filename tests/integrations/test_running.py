"""``aioshare.integrations.running``: what both web integrations share - start, stop, and a
fatal error of the App while the web server keeps serving (logged at once, raised at exit)."""

from __future__ import annotations

import logging

import pytest

import aioshare
from aioshare.integrations import running
from aioshare.protocol.errors import KafkaError
from aioshare.runtime import ManualClock
from tests.runtime.fakes import FakeBroker, FakeDeadLetterSink

from .conftest import wait_until


def make_worker(broker: FakeBroker) -> aioshare.App:
    worker = aioshare.App(
        "fake:9092",
        consumer_factory=broker.factory,
        dead_letter_sink=FakeDeadLetterSink(),
        clock=broker.clock,
        shutdown_timeout=1.0,
    )

    @worker.handler("jobs", group_id="g")
    async def handle(msg: aioshare.Message[bytes]) -> None:
        pass

    return worker


async def test_the_app_runs_inside_and_stops_on_exit() -> None:
    broker = FakeBroker(ManualClock())
    worker = make_worker(broker)
    broker.produce("jobs", [b"a", b"b"])
    async with running(worker) as app:
        assert app is worker and worker.running
        await wait_until(lambda: broker.states()["acknowledged"] == 2)
    assert not worker.running
    assert all(c.closed for c in broker.consumers)


async def test_a_fatal_error_is_logged_when_it_happens_and_raised_at_exit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = FakeBroker(ManualClock())
    worker = make_worker(broker)
    fatal = KafkaError("group authorization failed")
    with pytest.raises(KafkaError, match="group authorization failed"):
        async with running(worker):
            await wait_until(lambda: broker.consumers and broker.consumers[0].in_getmany)
            with caplog.at_level(logging.ERROR, logger="aioshare.integrations"):
                broker.consumers[0].fail_with = fatal
                broker.notify()
                await wait_until(lambda: "keeps serving" in caplog.text)
            assert worker.failure is fatal  # e.g. for a health endpoint, while still serving
    assert not worker.running


async def test_an_error_of_the_body_wins_over_the_app_failure() -> None:
    broker = FakeBroker(ManualClock())
    worker = make_worker(broker)
    with pytest.raises(ZeroDivisionError):
        async with running(worker):
            raise ZeroDivisionError
    assert not worker.running
