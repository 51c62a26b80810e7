"""The runtime over the real ShareConsumer when acknowledgements fail: the broker refuses one,
or the connection dies before it answers.  Each outcome reaches the events (``ack_committed``
with its type and status), the metrics (``acknowledgements-total{type, status}``) and the log
(one WARNING with the record's coordinates).  The leader is the scripted one of the share
tests (tests/share/consumer_fake.py): the embedded broker cannot be told to refuse an ack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aioshare.protocol.errors import ErrorCode, InvalidRecordStateError
from aioshare.runtime import App, Event, EventKind, Message
from aioshare.runtime.logs import RECORDS_LOGGER
from aioshare.share import AckInDoubtError
from tests.client.fakes import FakeCluster
from tests.kit import wait_until
from tests.share.consumer_fake import TOPIC, ShareFake


@pytest.fixture
async def fake() -> AsyncIterator[ShareFake]:
    async with FakeCluster() as cluster:
        yield ShareFake(cluster)


def app_on(fake: ShareFake, **route_options: Any) -> tuple[App, list[Event]]:
    app = App(fake.cluster.bootstrap, reports=False, consumer_options={"fetch_max_wait": 0.05})
    events: list[Event] = []
    app.events.subscribe(events.append, [EventKind.ACK_COMMITTED])

    @app.handler(TOPIC, group_id="g", concurrency=1, **route_options)
    async def handle(msg: Message[bytes]) -> None:
        if msg.value == b"bad":
            raise RuntimeError("bad record")  # with max_attempts=1: rejected

    return app, events


async def test_a_refused_accept_is_reported_refused_and_logged_with_its_coordinates(
    fake: ShareFake, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_batch([b"ok"])
    fake.refuse_acks(ErrorCode.INVALID_RECORD_STATE, "not acquired by this member")
    app, events = app_on(fake)
    caplog.set_level(logging.WARNING, logger=RECORDS_LOGGER)
    async with app:
        await wait_until(lambda: events, timeout=10)
    (e,) = events
    assert (e.topic, e.partition, e.offset, e.count, e.ack_type, e.reason) == (
        TOPIC,
        0,
        0,
        1,
        "accept",
        "refused",
    )
    assert isinstance(e.error, InvalidRecordStateError)
    m = app.metrics
    assert m.value("acknowledgements-total", type="accept", status="refused") == 1
    assert m.value("acknowledgements-error-total") == 1 and m.value("acknowledgements-send-total") == 0
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "ack_refused"]
    assert (line.topic, line.partition, line.offset, line.ack_type, line.group_id) == (  # type: ignore[attr-defined]
        TOPIC,
        0,
        0,
        "accept",
        "g",
    )
    assert "refused by the broker" in line.getMessage() and "not acquired" in line.getMessage()


async def test_an_accept_sent_and_never_answered_is_reported_in_doubt(
    fake: ShareFake, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_batch([b"ok"])
    sent = fake.hold_acks()
    app, events = app_on(fake)
    caplog.set_level(logging.WARNING, logger=RECORDS_LOGGER)
    async with app:
        async with asyncio.timeout(10):
            await sent.wait()
        fake.cluster.brokers[1].drop_connections()
        await wait_until(lambda: events, timeout=10)
    doubt = [e for e in events if e.reason == "in_doubt"]
    assert doubt and doubt[0].ack_type == "accept" and isinstance(doubt[0].error, AckInDoubtError)
    assert app.metrics.value("acknowledgements-total", type="accept", status="in_doubt") >= 1
    assert [r for r in caplog.records if getattr(r, "event", None) == "ack_in_doubt"]


async def test_applied_acks_carry_their_type(fake: ShareFake) -> None:
    fake.add_batch([b"ok", b"bad"])
    app, events = app_on(fake, max_attempts=1)
    async with app:
        await wait_until(lambda: sum(e.count for e in events) == 2, timeout=10)
    assert {(e.offset, e.ack_type, e.reason) for e in events} == {
        (0, "accept", "applied"),
        (1, "reject", "applied"),
    }
    assert app.metrics.value("acknowledgements-total", type="reject", status="applied") == 1
