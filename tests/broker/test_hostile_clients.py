"""The embedded broker against hostile clients: Metadata v10/v11 topic ids, request memory
(queued.max.request.bytes), idle connections (connections.max.idle.ms), max.connections."""

from __future__ import annotations

import asyncio
import gc
import logging
import struct
import time
import tracemalloc
import uuid

import pytest

from aioshare.broker.config import BrokerConfig, InvalidBrokerConfig
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.server import SMALL_REQUEST_HEADROOM
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import MetadataRequest, MetadataResponse, ProduceResponse
from tests.broker.test_server_frames import RawClient, produce_request, records

MiB = 1 << 20


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


@pytest.mark.parametrize("version", [10, 11])
@pytest.mark.parametrize("by", ["null-name", "id-and-name"])
async def test_metadata_v10_v11_with_topic_ids_is_invalid_request_like_kafka(
    version: int, by: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("t1", partitions=1)
        client = await RawClient.connect(broker)
        topic_id = uuid.uuid4()
        wanted = MetadataRequest.MetadataRequestTopic(
            topic_id=topic_id, name=None if by == "null-name" else "t1"
        )
        with caplog.at_level(logging.DEBUG, logger="aioshare.broker"):
            response: MetadataResponse = await client.request(
                MetadataRequest(topics=[wanted, MetadataRequest.MetadataRequestTopic(name="t1")]), version
            )
        # MetadataRequest.getErrorResponse: every topic INVALID_REQUEST, a null name as "".
        assert [(t.error_code, t.name, t.partitions) for t in response.topics] == [
            (ErrorCode.INVALID_REQUEST, "" if by == "null-name" else "t1", []),
            (ErrorCode.INVALID_REQUEST, "t1", []),
        ]
        assert response.topics[0].topic_id == topic_id
        assert response.brokers == []
        _no_tracebacks(caplog)
        # The connection stays usable.
        again: MetadataResponse = await client.request(
            MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="t1")]), version
        )
        assert again.topics[0].error_code == ErrorCode.NONE and again.topics[0].partitions
        await client.close()


def test_connection_configs_have_kafka_names_defaults_and_rules() -> None:
    config = BrokerConfig()
    assert config.get("queued.max.request.bytes") == 100 * MiB  # Kafka: -1 (deliberate)
    assert config.get("connections.max.idle.ms") == 600000
    assert config.get("max.connections") == 2147483647
    parsed = BrokerConfig.from_mapping(
        {"queued.max.request.bytes": "-1", "connections.max.idle.ms": "-1", "max.connections": "0"}
    )
    assert (parsed.queued_max_request_bytes, parsed.connections_max_idle_ms, parsed.max_connections) == (
        -1,
        -1,
        0,
    )
    with pytest.raises(InvalidBrokerConfig, match=r"must be larger or equal to socket\.request\.max\.bytes"):
        BrokerConfig.from_mapping({"queued.max.request.bytes": "1000", "socket.request.max.bytes": "2000"})
    with pytest.raises(InvalidBrokerConfig, match="Value must be at least 0"):
        BrokerConfig.from_mapping({"max.connections": "-1"})
    # The embedded default does not reject a larger frame limit.
    assert BrokerConfig.from_mapping({"socket.request.max.bytes": str(200 * MiB)})


async def _hostile(broker: EmbeddedBroker, announce: int, send: int) -> RawClient:
    client = await RawClient.connect(broker)
    client.writer.write(struct.pack(">i", announce) + b"\0" * send)  # no drain: the broker may stop reading
    return client


async def test_hostile_partial_frames_are_bounded_and_others_are_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cap = 8 * MiB
    config = {"queued.max.request.bytes": str(cap), "socket.request.max.bytes": str(cap)}
    async with EmbeddedBroker(config=config) as broker:
        await broker.create_topic("t1", partitions=1)
        pool = broker.memory_pool
        with caplog.at_level(logging.WARNING, logger="aioshare.broker"):
            hostile = [await _hostile(broker, cap, cap - MiB) for _ in range(8)]
            await asyncio.sleep(0.5)
            assert 0 < pool.in_use <= cap + SMALL_REQUEST_HEADROOM
            good = await RawClient.connect(broker)
            started = time.monotonic()
            metadata: MetadataResponse = await good.request(MetadataRequest(topics=None), 12)
            produced: ProduceResponse = await good.request(produce_request("t1", 0, records(b"v")), 9)
            assert time.monotonic() - started < 2.0
            assert metadata.brokers
            assert produced.responses[0].partition_responses[0].error_code == ErrorCode.NONE
            assert pool.peak <= cap + SMALL_REQUEST_HEADROOM
            for client in hostile:
                client.writer.transport.abort()
            await asyncio.sleep(0.2)
        for _ in range(100):
            if pool.in_use == 0 and broker._servers[broker.node_ids[0]].connection_count == 1:
                break
            await asyncio.sleep(0.02)
        assert pool.in_use == 0
        assert (await good.request(MetadataRequest(topics=None), 12)).brokers
        await good.close()
        _no_tracebacks(caplog)


def _broker_bytes() -> int:
    # Memory allocated by the listener (frame buffers); the clients share this process.
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, "*aioshare/broker/server.py")]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def test_memory_of_closed_hostile_connections_is_freed() -> None:

    cap = 16 * MiB
    config = {"queued.max.request.bytes": str(cap), "socket.request.max.bytes": str(cap)}
    async with EmbeddedBroker(config=config) as broker:
        gc.collect()
        tracemalloc.start()
        try:
            before = _broker_bytes()
            hostile = [await _hostile(broker, cap, cap - MiB) for _ in range(4)]
            await asyncio.sleep(0.5)
            during = _broker_bytes()
            for client in hostile:
                client.writer.transport.abort()
            for _ in range(100):
                if broker.memory_pool.in_use == 0:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            gc.collect()
            after = _broker_bytes()
        finally:
            tracemalloc.stop()
        # One frame admitted (about 15 MiB read), the others wait with at most a read's worth.
        assert during - before < cap + 4 * MiB
        assert during - before > 8 * MiB
        assert after - before < MiB


async def test_idle_connections_are_closed(caplog: pytest.LogCaptureFixture) -> None:
    async with EmbeddedBroker(config={"connections.max.idle.ms": "200"}) as broker:
        with caplog.at_level(logging.WARNING, logger="aioshare.broker"):
            idle = await RawClient.connect(broker)
            partial = await _hostile(broker, 1000, 10)
            active = await RawClient.connect(broker)
            started = time.monotonic()
            for _ in range(10):
                assert (await active.request(MetadataRequest(topics=None), 12)).brokers
                await asyncio.sleep(0.05)
            assert await idle.closed_by_peer()
            assert await partial.closed_by_peer()
            assert time.monotonic() - started < 3
            assert (await active.request(MetadataRequest(topics=None), 12)).brokers
        assert "connections.max.idle.ms" in caplog.text
        for client in (idle, partial, active):
            await client.close()


async def test_max_connections_refuses_the_extra_connection() -> None:
    async with EmbeddedBroker(config={"max.connections": "2"}) as broker:
        first = await RawClient.connect(broker)
        second = await RawClient.connect(broker)
        third = await RawClient.connect(broker)
        assert await third.closed_by_peer()
        assert (await second.request(MetadataRequest(topics=None), 12)).brokers
        first.writer.transport.abort()
        await asyncio.sleep(0.1)
        fourth = await RawClient.connect(broker)
        assert (await fourth.request(MetadataRequest(topics=None), 12)).brokers
        for client in (first, second, third, fourth):
            await client.close()
