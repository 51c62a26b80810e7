"""``aioshare.integrations.running``: what both web integrations share - start, stop, and a
fatal error of the App while the web server keeps serving (logged at once, raised at exit)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

import aioshare
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.integrations import running
from aioshare.protocol.errors import GroupAuthorizationFailedError
from aioshare.runtime import EventKind
from aioshare.testing import prepare
from tests.kit import wait_until
from tests.runtime.kit import Watch


async def make_worker(broker: EmbeddedBroker, **kwargs: Any) -> aioshare.App:
    worker = aioshare.App(
        broker.bootstrap_servers,
        reports=False,
        shutdown_timeout=1.0,
        consumer_options={"fetch_max_wait": 0.1},
        **kwargs,
    )

    # A short poll: the fetch loop comes back to getmany (and meets a fault) within 0.1 s.
    @worker.handler("jobs", group_id="g", poll_interval=0.1)
    async def handle(msg: aioshare.Message[bytes]) -> None:
        pass

    await prepare(worker)
    return worker


async def test_the_app_runs_inside_and_stops_on_exit(broker: EmbeddedBroker) -> None:
    worker = await make_worker(broker)
    accepted: list[int | None] = []
    worker.events.subscribe(lambda e: accepted.append(e.offset), [EventKind.ACCEPTED])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        for value in (b"a", b"b"):
            await producer.send_and_wait("jobs", value, partition=0)
    finally:
        await producer.stop()
    async with running(worker) as app:
        assert app is worker and worker.running
        await wait_until(lambda: sorted(accepted) == [0, 1])
    assert not worker.running
    records = broker.share_records("g", "jobs")
    assert records is None or records.start_offset == 2  # (None: the group's session ended)


async def test_a_fatal_error_is_logged_when_it_happens_and_raised_at_exit(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    watch = Watch()
    worker = await make_worker(broker, consumer_factory=watch)
    fatal = GroupAuthorizationFailedError("group authorization failed")
    with pytest.raises(GroupAuthorizationFailedError, match="group authorization failed"):
        async with running(worker):
            await wait_until(lambda: watch.consumers)
            with caplog.at_level(logging.ERROR, logger="aioshare.integrations"):
                watch.consumers[0].fail_with = fatal
                await wait_until(lambda: "keeps serving" in caplog.text)
            assert worker.failure is fatal  # e.g. for a health endpoint, while still serving
    assert not worker.running


async def test_an_error_of_the_body_wins_over_the_app_failure(broker: EmbeddedBroker) -> None:
    worker = await make_worker(broker)
    with pytest.raises(ZeroDivisionError):
        async with running(worker):
            raise ZeroDivisionError
    assert not worker.running
