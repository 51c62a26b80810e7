"""The runtime over the real ShareConsumer when acknowledgements fail: the broker refuses one,
or the connection dies before it answers.  Each outcome reaches the record's terminal event
(``accepted`` only once the broker confirmed; ``ack_refused`` / ``ack_in_doubt`` otherwise), the
run's ``ack_committed`` event (type and status), the metrics (``acknowledgements-total{type,
status}``, ``records-ack-*-total``) and the log (one WARNING with the record's coordinates).  The leader is the scripted one of the share
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
    app.events.subscribe(events.append)

    @app.handler(TOPIC, group_id="g", concurrency=1, **route_options)
    async def handle(msg: Message[bytes]) -> None:
        if msg.value == b"bad":
            raise RuntimeError("bad record")  # with max_attempts=1: rejected

    return app, events


def kinds(events: list[Event], kind: EventKind) -> list[Event]:
    return [e for e in events if e.kind is kind]


async def test_a_refused_accept_is_reported_refused_and_logged_with_its_coordinates(
    fake: ShareFake, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_batch([b"ok"])
    fake.refuse_acks(ErrorCode.INVALID_RECORD_STATE, "not acquired by this member")
    app, events = app_on(fake)
    caplog.set_level(logging.WARNING, logger=RECORDS_LOGGER)
    async with app:
        await wait_until(lambda: kinds(events, EventKind.ACK_COMMITTED), timeout=10)
    (e,) = kinds(events, EventKind.ACK_COMMITTED)
    assert (e.topic, e.partition, e.offset, e.count, e.ack_type, e.reason) == (
        TOPIC,
        0,
        0,
        1,
        "accept",
        "refused",
    )
    assert isinstance(e.error, InvalidRecordStateError)
    # The record's one terminal event says what the broker did: not accepted, refused.
    (refused,) = kinds(events, EventKind.ACK_REFUSED)
    assert (refused.offset, refused.reason, refused.error) == (0, "accepted", e.error)
    assert kinds(events, EventKind.ACCEPTED) == []
    m = app.metrics
    assert m.value("records-ack-refused-total") == 1 and m.value("records-accepted-total") == 0
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
        # Handled and settled, the ACCEPT sent: still no ``accepted`` while the broker is silent.
        await wait_until(lambda: app.metrics.value("records-held", route="handle") == 0, timeout=10)
        assert kinds(events, EventKind.ACCEPTED) == []
        fake.cluster.brokers[1].drop_connections()
        await wait_until(lambda: kinds(events, EventKind.ACK_COMMITTED), timeout=10)
    doubt = [e for e in kinds(events, EventKind.ACK_COMMITTED) if e.reason == "in_doubt"]
    assert doubt and doubt[0].ack_type == "accept" and isinstance(doubt[0].error, AckInDoubtError)
    (record,) = kinds(events, EventKind.ACK_IN_DOUBT)
    assert (record.offset, record.reason) == (0, "accepted") and isinstance(record.error, AckInDoubtError)
    assert kinds(events, EventKind.ACCEPTED) == []
    assert app.metrics.value("records-ack-in-doubt-total") == 1
    assert app.metrics.value("acknowledgements-total", type="accept", status="in_doubt") >= 1
    assert [r for r in caplog.records if getattr(r, "event", None) == "ack_in_doubt"]


async def test_applied_acks_carry_their_type(fake: ShareFake) -> None:
    fake.add_batch([b"ok", b"bad"])
    app, events = app_on(fake, max_attempts=1)
    async with app:
        await wait_until(
            lambda: sum(e.count for e in kinds(events, EventKind.ACK_COMMITTED)) == 2, timeout=10
        )
    # Each record's terminal event is emitted with the broker's answer, just before the run's.
    terminal = [(e.kind, e.offset) for e in events if e.kind in (EventKind.ACCEPTED, EventKind.REJECTED)]
    assert sorted(terminal) == [(EventKind.ACCEPTED, 0), (EventKind.REJECTED, 1)]
    for kind, ack_type in ((EventKind.ACCEPTED, "accept"), (EventKind.REJECTED, "reject")):
        at = next(i for i, e in enumerate(events) if e.kind is kind)
        answer = next(
            i for i, e in enumerate(events) if e.kind is EventKind.ACK_COMMITTED and e.ack_type == ack_type
        )
        assert at < answer  # (same moment: the terminal event first, then the run's report)
    assert {(e.offset, e.ack_type, e.reason) for e in kinds(events, EventKind.ACK_COMMITTED)} == {
        (0, "accept", "applied"),
        (1, "reject", "applied"),
    }
    assert app.metrics.value("acknowledgements-total", type="reject", status="applied") == 1
