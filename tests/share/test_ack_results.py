"""``on_ack_result``: every acknowledgement reported with its partition, offsets, ack type and
what became of it - applied (on the embedded broker and real Kafka), refused with the broker's
error, in doubt, not sent (fault injection through the scripted leader of consumer_fake.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aioshare.protocol.errors import ErrorCode, InvalidRecordStateError, KafkaTimeoutError
from aioshare.share import AckInDoubtError, AckResult, AckStatus, AckType, ShareConsumer, TopicPartition
from tests.client.fakes import FakeCluster
from tests.kit import wait_until

from .consumer_clusters import EmbeddedCluster, RealKafkaCluster
from .consumer_fake import TOPIC, ShareFake, carries_acks
from .test_consumer_demand import group_with_lock


async def test_applied_acks_carry_their_type_and_offsets(cluster: EmbeddedCluster | RealKafkaCluster) -> None:
    topic = "ack-results"
    await cluster.create_topic(topic, 1)
    await cluster.produce(topic, [b"accept", b"release", b"reject", b"accept-too"])
    group = await group_with_lock(cluster, 30_000)
    results: list[AckResult] = []
    async with ShareConsumer(
        topic,
        group_id=group,
        bootstrap_servers=cluster.bootstrap,
        ack_mode="explicit",
        fetch_max_wait=0.1,
        on_ack_result=results.extend,
    ) as c:
        got: list[Any] = []
        async with asyncio.timeout(30):
            while len(got) < 4:
                got += await c.getmany(max_records=4 - len(got), timeout=1.0)
        by_value = {m.value: m for m in got}
        by_value[b"accept"].accept()
        by_value[b"release"].release()
        by_value[b"reject"].reject()
        by_value[b"accept-too"].accept()
        assert all(r is None for r in (await c.commit()).values())
    tp = TopicPartition(topic, 0)
    assert {r.status for r in results} == {AckStatus.APPLIED}
    assert all(r.error is None and r.topic_partition == tp for r in results)
    typed = {o: r.ack_type for r in results for o in range(r.first_offset, r.last_offset + 1)}
    assert typed == {0: AckType.ACCEPT, 1: AckType.RELEASE, 2: AckType.REJECT, 3: AckType.ACCEPT}


@pytest.fixture
async def fake() -> AsyncIterator[ShareFake]:
    async with FakeCluster() as cluster:
        yield ShareFake(cluster)


def scripted(fake: ShareFake, results: list[AckResult], **kwargs: Any) -> ShareConsumer:
    return ShareConsumer(
        TOPIC,
        group_id="g",
        bootstrap_servers=fake.cluster.bootstrap,
        ack_mode="explicit",
        fetch_max_wait=0.05,
        max_in_flight=1,
        on_ack_result=results.extend,
        **kwargs,
    )


async def test_an_ack_the_broker_refuses_is_refused_with_its_error(fake: ShareFake) -> None:
    fake.add_batch([b"a", b"b"])
    fake.refuse_acks(ErrorCode.INVALID_RECORD_STATE, "the record is not acquired by this member")
    results: list[AckResult] = []
    async with scripted(fake, results) as c:
        (a,) = await c.getmany(timeout=5)
        a.accept()
        await wait_until(lambda: results, timeout=5)
        committed = await c.commit()
    (r,) = results
    assert (r.status, r.ack_type, r.first_offset, r.last_offset) == (
        AckStatus.REFUSED,
        AckType.ACCEPT,
        a.offset,
        a.offset,
    )
    assert isinstance(r.error, InvalidRecordStateError)
    assert "not acquired by this member" in str(r.error)
    assert isinstance(committed[TopicPartition(TOPIC, 0)], InvalidRecordStateError)


async def test_an_ack_sent_and_never_answered_is_in_doubt(fake: ShareFake) -> None:
    fake.add_batch([b"a", b"b"])
    sent = fake.hold_acks()
    results: list[AckResult] = []
    async with scripted(fake, results) as c:
        (a,) = await c.getmany(timeout=5)
        a.release()
        async with asyncio.timeout(5):
            await sent.wait()
        fake.cluster.brokers[1].drop_connections()
        await wait_until(lambda: results, timeout=5)
    (r,) = results
    assert (r.status, r.ack_type, r.first_offset) == (AckStatus.IN_DOUBT, AckType.RELEASE, a.offset)
    assert isinstance(r.error, AckInDoubtError)


async def test_an_ack_for_a_lock_that_ran_out_here_is_not_sent() -> None:
    async with FakeCluster() as cluster:
        fake = ShareFake(cluster, lock_ms=1000)
        fake.add_batch([b"a"])
        results: list[AckResult] = []
        async with scripted(fake, results) as c:
            (a,) = await c.getmany(timeout=5)
            await wait_until(lambda: c.held == 0, timeout=5)  # the lease timer expired it
            a.reject()
            assert results, "reported at once: nothing could be sent"
            assert fake.acknowledges == [] and not any(carries_acks(f) for f in fake.fetches)
    (r,) = results
    assert (r.status, r.ack_type, r.first_offset) == (AckStatus.NOT_SENT, AckType.REJECT, a.offset)
    assert isinstance(r.error, InvalidRecordStateError)


async def test_commit_gives_up_after_its_timeout_and_the_late_answer_is_still_reported(
    fake: ShareFake,
) -> None:
    """commit(timeout) maps what was not answered in time to KafkaTimeoutError; the ack is not
    lost: its real outcome (here: in doubt, the connection dies unanswered) is reported later."""
    fake.add_batch([b"a", b"b"])
    sent = fake.hold_acks()
    results: list[AckResult] = []
    async with scripted(fake, results) as c:
        (a,) = await c.getmany(timeout=5)
        a.accept()
        loop = asyncio.get_running_loop()
        began = loop.time()
        committed = await c.commit(timeout=0.5)
        assert 0.5 <= loop.time() - began < 5
        assert isinstance(committed[TopicPartition(TOPIC, 0)], KafkaTimeoutError)
        assert "0.5" in str(committed[TopicPartition(TOPIC, 0)])
        assert sent.is_set() and results == []
        fake.cluster.brokers[1].drop_connections()
        await wait_until(lambda: results, timeout=5)
    (r,) = results
    assert (r.status, r.ack_type, r.first_offset) == (AckStatus.IN_DOUBT, AckType.ACCEPT, a.offset)
