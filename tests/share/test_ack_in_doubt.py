"""Truthful ack outcomes: accepted, refused with Kafka's error, or in doubt (sent, no answer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aioshare.client.connection import RequestNotSentError
from aioshare.protocol.errors import InvalidRecordStateError, KafkaConnectionError, KafkaTimeoutError
from aioshare.protocol.messages import ShareFetchRequest, ShareFetchResponse
from aioshare.share import AckInDoubtError, ShareConsumer, TopicPartition
from aioshare.share.leader_session import unanswered_error
from tests.client.fakes import FakeCluster
from tests.kit import wait_until

from .consumer_fake import TOPIC, ShareFake

TP = TopicPartition(TOPIC, 0)


@pytest.fixture
async def fake() -> AsyncIterator[ShareFake]:
    async with FakeCluster() as cluster:
        yield ShareFake(cluster)


def consumer(fake: ShareFake, **kwargs: Any) -> ShareConsumer:
    return ShareConsumer(
        TOPIC,
        group_id="g",
        bootstrap_servers=fake.cluster.bootstrap,
        ack_mode="explicit",
        fetch_max_wait=0.05,
        **kwargs,
    )


def test_in_doubt_is_a_connection_error() -> None:
    assert issubclass(AckInDoubtError, KafkaConnectionError)
    assert AckInDoubtError.retriable


async def test_acks_sent_and_not_answered_are_in_doubt(fake: ShareFake) -> None:
    fake.add_batch([b"a", b"b"])
    held = asyncio.Event()
    never = asyncio.Event()

    async def hook(req: ShareFetchRequest) -> ShareFetchResponse | None:
        if any(p.acknowledgement_batches for t in req.topics for p in t.partitions) and not held.is_set():
            held.set()  # the broker has the acks ... and the connection dies before it answers
            await never.wait()
        return None

    fake.fetch_hook = hook
    reports: list[BaseException | None] = []
    async with consumer(fake, max_in_flight=1, on_ack_commit=lambda o, exc: reports.append(exc)) as c:
        async with asyncio.timeout(5):
            (a,) = await c.getmany(timeout=5)
        a.accept()
        async with asyncio.timeout(5):
            await held.wait()
        fake.cluster.brokers[1].drop_connections()
        await wait_until(lambda: reports, timeout=5)
        assert len(reports) == 1 and isinstance(reports[0], AckInDoubtError), reports
        assert isinstance(reports[0].__cause__, KafkaConnectionError)
        assert "node 1" in str(reports[0])
        results = await c.commit()
        assert isinstance(results[TP], AckInDoubtError)
        # The consumer goes on: the record comes back (the fake never applied the accept).
        async with asyncio.timeout(5):
            got = await c.getmany(timeout=5)
        assert got


async def test_acks_never_sent_are_not_in_doubt(fake: ShareFake) -> None:
    fake.add_batch([b"a"])
    reports: list[BaseException | None] = []
    async with consumer(fake, max_in_flight=1, on_ack_commit=lambda o, exc: reports.append(exc)) as c:
        (a,) = await c.getmany(timeout=5)
        fake.cluster.brokers[1].drop_connections()  # session gone before the ack is sent
        await asyncio.sleep(0.05)
        a.accept()
        await wait_until(lambda: reports, timeout=5)
    assert reports and not any(isinstance(r, AckInDoubtError) for r in reports), reports
    assert all(isinstance(r, (KafkaConnectionError, InvalidRecordStateError)) for r in reports)


def test_classification() -> None:
    not_sent = RequestNotSentError("connection closed")
    assert unanswered_error("ShareAcknowledgeRequest", 7, not_sent) is not_sent
    for exc in (KafkaConnectionError("reset"), KafkaTimeoutError("slow"), asyncio.CancelledError()):
        doubt = unanswered_error("ShareAcknowledgeRequest", 7, exc)
        assert isinstance(doubt, AckInDoubtError) and doubt.__cause__ is exc
        assert "ShareAcknowledgeRequest to node 7" in str(doubt)
