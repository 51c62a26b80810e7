"""Outcomes when the real stack misbehaves: faults the embedded broker produces for real.

Counted from both sides, as in test_outcomes.py: the runtime's events and the broker's own
record states; dead-letter copies are read back from the dead-letter topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.errors import InvalidRecordStateError, KafkaConnectionError
from aioshare.protocol.messages import ProduceRequest
from aioshare.runtime import EventKind, Message
from aioshare.testing import ThreadedBroker
from tests.kit import wait_until

from .kit import AppFactory, Ready, Recorder, header, read_topic, settled_at_broker, trail


def produce_answered_after(seconds: float) -> Callable[[EmbeddedBroker], Awaitable[None]]:
    """Hold back the broker's answers to Produce (the record is written, the answer is late)."""

    async def delay(broker: EmbeddedBroker) -> None:
        broker.delay_responses(seconds, [ProduceRequest.API_KEY])

    return delay


async def drop_connections(broker: EmbeddedBroker) -> None:
    await broker.drop_connections()


async def test_a_dead_letter_copy_that_times_out_releases_the_record_and_may_still_land(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app(dead_letter_timeout=0.4)

    @app.handler("jobs", group_id="g", max_attempts=1, dead_letter_topic="jobs.dlq")
    async def handle(msg: Message[bytes]) -> None:
        if msg.delivery_count == 2:
            await kafka.acall(produce_answered_after(0.0))  # the dead-letter topic answers again
        raise RuntimeError("boom")

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    await kafka.acall(produce_answered_after(0.6))
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "REJECT"])
        await settled_at_broker(kafka, "g", "jobs", 1)
    # No confirmed copy within the timeout: RELEASE, not REJECT - the record came back ...
    failures = [e for e in recorder.kinds(EventKind.ERROR) if e.reason == "dead-letter-failed"]
    assert [(e.offset, e.delivery_count) for e in failures] == [(0, 1)]
    assert isinstance(failures[0].error, TimeoutError)
    assert recorder.outcome_counts() == {"released": 1, "dead_lettered": 1}
    # ... while the unconfirmed copy was written all the same: one copy per attempt, the
    # duplicate's cause named by its delivery count.
    copies = await read_topic(kafka.bootstrap_servers, "jobs.dlq", 2)
    assert [header(c, "aioshare.dlq.delivery.count") for c in copies] == ["1", "2"]
    assert {c.value for c in copies} == {b"x"}


async def test_a_release_on_the_groups_last_delivery_becomes_a_reject(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    # The broker archives a record released on its last delivery (the group's
    # share.delivery.count.limit) without a word; the runtime knows the limit and rejects it
    # itself - a terminal event, and the dead-letter copy where the route has one
    # (test_delivery_limit.py) - even when the handler asked for the RELEASE explicitly.
    app = kafka_app()
    deliveries: list[int] = []

    @app.handler("jobs", group_id="g", ack_mode="explicit")
    async def handle(msg: Message[bytes]) -> None:
        deliveries.append(msg.delivery_count)
        if msg.value == b"bad":
            msg.release()
        else:
            msg.accept()

    await ready(app, delivery_count_limit="2")
    await kafka.produce("jobs", [b"bad", b"good"], partition=0)
    async with app:
        await wait_until(lambda: trail(recorder, 0) == ["acquired#1", "RELEASE", "acquired#2", "REJECT"])
        await wait_until(lambda: trail(recorder, 1) == ["acquired#1", "ACCEPT"])
        await settled_at_broker(kafka, "g", "jobs", 2)
    assert sorted(deliveries) == [1, 1, 2]
    assert recorder.outcome_counts() == {"released": 1, "rejected": 1, "accepted": 1}
    (rejected,) = recorder.kinds(EventKind.REJECTED)
    assert (rejected.offset, rejected.delivery_count, rejected.reason) == (0, 2, "exhausted")
    assert recorder.kinds(EventKind.LOCK_EXPIRED) == []


async def test_a_record_whose_session_dies_while_its_handler_runs_is_redelivered(
    kafka: ThreadedBroker, kafka_app: AppFactory, ready: Ready, recorder: Recorder
) -> None:
    app = kafka_app()
    running = asyncio.Event()
    finish = asyncio.Event()
    deliveries: list[tuple[int, int]] = []

    @app.handler("jobs", group_id="g")
    async def handle(msg: Message[bytes]) -> None:
        deliveries.append((msg.offset, msg.delivery_count))
        if msg.delivery_count == 1:
            running.set()
            await finish.wait()

    await ready(app)
    await kafka.produce("jobs", [b"x"], partition=0)
    async with app:
        await wait_until(running.is_set)
        # The connection closes: the broker ends its share session and takes the record back
        # (delivery count kept), so the handler's ACCEPT has no session left to go to.
        await kafka.acall(drop_connections)
        finish.set()
        await wait_until(lambda: recorder.outcome_counts() == {"released": 1, "accepted": 1})
        await settled_at_broker(kafka, "g", "jobs", 1)
    assert deliveries == [(0, 1), (0, 2)]  # the duplicate: the first delivery's session died
    assert recorder.terminal() == {
        ("jobs", 0, 0, 1): EventKind.RELEASED,
        ("jobs", 0, 0, 2): EventKind.ACCEPTED,
    }
    (released,) = recorder.kinds(EventKind.RELEASED)
    # Named either way round: the consumer saw the connection go, or the record's session gone.
    assert released.reason == "ack-not-sent"
    assert isinstance(released.error, InvalidRecordStateError | KafkaConnectionError), released.error
    acks = [(e.offset, e.count, e.ack_type, e.reason) for e in recorder.kinds(EventKind.ACK_COMMITTED)]
    assert acks == [(0, 1, "accept", "not_sent"), (0, 1, "accept", "applied")]
