"""The order a multi-partition share session serves its partitions in, as Kafka 4.2/4.4 do
(tests/differential/test_session_limits.py::test_session_order compares it with real Kafka)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from aioshare.broker import _codes
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.share_sessions import ShareSessionCache
from aioshare.protocol.types import TopicIdPartition

from .share_fetch_support import ShareClient, acquired, alter_group_config, produce

TOPIC = uuid.UUID(int=7)
P0, P1, P2 = (TopicIdPartition(TOPIC, index) for index in range(3))
G, M = "group", "member"


class TestSessionOrder:
    def test_a_partition_that_returned_records_moves_to_the_end(self) -> None:
        cache = ShareSessionCache(10)
        cache.open_fetch(G, M, 0, connection_id="c1", topics=[P0, P1, P2])
        context = cache.open_fetch(G, M, 1, connection_id="c1")
        assert context.partitions == [P1, P2, P0]
        assert context.session is not None
        assert context.session.respond(P1, has_records=True, has_error=False)
        assert not context.session.respond(P2, has_records=False, has_error=False)
        # Session order [P0, P2, P1], rotated by epoch 2.
        assert cache.open_fetch(G, M, 2, connection_id="c1").partitions == [P1, P0, P2]

    def test_added_and_failed_partitions_are_listed_once_more(self) -> None:
        """CachedSharePartition.requiresUpdateInResponse: a partition added by an incremental
        request is listed by the first response that reads it; one that failed is listed again
        by the next one, so the client sees the error go."""
        cache = ShareSessionCache(10)
        cache.open_fetch(G, M, 0, connection_id="c1", topics=[P0])
        session = cache.open_fetch(G, M, 1, connection_id="c1", topics=[P1]).session
        assert session is not None
        assert [session.respond(p, has_records=False, has_error=False) for p in (P0, P1)] == [False, True]
        assert not session.respond(P1, has_records=False, has_error=False)
        assert session.respond(P0, has_records=False, has_error=True)
        assert session.respond(P0, has_records=False, has_error=False)
        assert not session.respond(P0, has_records=False, has_error=False)

    def test_moving_ignores_partitions_the_session_forgot(self) -> None:
        cache = ShareSessionCache(10)
        cache.open_fetch(G, M, 0, connection_id="c1", topics=[P0, P1])
        context = cache.open_fetch(G, M, 1, connection_id="c1", forgotten=[P0])
        assert context.session is not None
        context.session.respond(P0, has_records=True, has_error=False)
        assert list(context.session.partitions) == [P1]

    def test_a_full_request_has_no_session_to_reorder(self) -> None:
        context = ShareSessionCache(10).open_fetch(G, M, 0, connection_id="c1", topics=[P0, P1])
        assert (context.error_code, context.is_full, context.session) == (_codes.NONE, True, None)

    def test_only_partitions_the_broker_knows_are_rotated(self) -> None:
        cache = ShareSessionCache(10)
        cache.open_fetch(G, M, 0, connection_id="c1", topics=[P0, P1, P2])
        # KafkaApis answers an unknown partition before fetchMessages rotates the others.
        context = cache.open_fetch(G, M, 1, connection_id="c1", fetchable=lambda p: p != P1)
        assert context.partitions == [P2, P0, P1]


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as running:
        yield running


async def test_max_records_reaches_every_partition_in_kafkas_order(broker: EmbeddedBroker) -> None:
    """Three partitions of six one-record batches, MaxRecords 2: the partitions each fetch
    served on Kafka 4.2.2 and 4.4.0. Besides the epoch rotation and the move to the end of the
    session, a partition whose fetch offset moved since its last read is read after the others
    within a request (Kafka's cached fetch-offset metadata)."""
    topic_id = await broker.create_topic("t", 3)
    await alter_group_config(broker, "g", share_auto_offset_reset="earliest")
    for partition in range(3):
        produce(broker, "t", 6, partition=partition)
    client = await ShareClient.open(broker, topic_id)
    try:
        full = await client.fetch([0, 1, 2], max_records=2)
        assert [acquired(full, p) for p in range(3)] == [[(0, 1, 1)], [], []]
        served = []
        for _ in range(9):
            response = await client.fetch(max_records=2)
            served.append([(p, acquired(response, p)) for p in range(3) if acquired(response, p)])
    finally:
        await client.close()
    assert served == [
        [(1, [(0, 1, 1)])],
        [(0, [(2, 3, 1)])],
        [(2, [(0, 1, 1)])],
        [(0, [(4, 5, 1)])],
        [(1, [(2, 3, 1)])],
        [(2, [(2, 3, 1)])],
        [(1, [(4, 5, 1)])],
        [(2, [(4, 5, 1)])],
        [],
    ]


async def test_a_full_response_lists_the_partitions_it_read() -> None:
    """Kafka's full response lists every partition the fetch read, with records or not, but not
    one at its in-flight limit (not read), nor any when MaxRecords is 0 (nothing read)."""
    config = {
        "group.share.partition.max.record.locks": 100,
        "group.share.min.partition.max.record.locks": 100,
    }
    async with EmbeddedBroker(config=config) as limited:
        topic_id = await limited.create_topic("t", 3)
        await alter_group_config(limited, "g", share_auto_offset_reset="earliest")
        produce(limited, "t", 150, partition=0, per_batch=50)
        produce(limited, "t", 1, partition=1)
        client = await ShareClient.open(limited, topic_id)
        try:
            nothing = await client.fetch([0, 1, 2], max_records=0)
            assert nothing.responses == []
            client.epoch = 0
            first = await client.fetch([0], max_records=100)
            assert acquired(first, 0) == [(0, 99, 1)]
            client.epoch = 0
            full = await client.fetch([0, 1, 2], max_records=10)
        finally:
            await client.close()
    listed = {
        p.partition_index: acquired(full, p.partition_index) for t in full.responses for p in t.partitions
    }
    assert listed == {1: [(0, 0, 1)], 2: []}
