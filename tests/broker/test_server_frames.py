"""The node listener with raw frames: bad input closes only the offending connection, Kafka's
answers to unknown APIs and versions, per-connection ordering, disconnect callbacks, delays."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.server import ConnectionInfo
from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.framing import decode_response, encode_request, peek_correlation_id
from aioshare.protocol.messages import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    FetchRequest,
    FetchResponse,
    JoinGroupRequest,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
    ProduceResponse,
)
from aioshare.protocol.records import RecordToWrite, encode_batch, iter_batches
from tests.kit import wait_until

TIMEOUT = 10


class RawClient:
    """A bare Kafka connection: frames in, frames out, nothing else."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._correlation = 0
        self._sent: dict[int, tuple[int, int]] = {}

    @classmethod
    async def connect(cls, broker: EmbeddedBroker, node_id: int | None = None) -> RawClient:
        host, port = broker.address(node_id if node_id is not None else broker.node_ids[0])
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, message: ApiMessage, version: int) -> int:
        self._correlation += 1
        self._sent[self._correlation] = (message.API_KEY, version)
        self.writer.write(encode_request(message, version, self._correlation, "raw-test"))
        await self.writer.drain()
        return self._correlation

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self) -> bytes:
        async with asyncio.timeout(TIMEOUT):
            (size,) = struct.unpack(">i", await self.reader.readexactly(4))
            return await self.reader.readexactly(size)

    async def receive(self) -> tuple[int, Any]:
        frame = await self.read_frame()
        correlation = peek_correlation_id(frame)
        api_key, version = self._sent.pop(correlation)
        return correlation, decode_response(frame, api_key, version)

    async def request(self, message: ApiMessage, version: int) -> Any:
        correlation = await self.send(message, version)
        got, response = await self.receive()
        assert got == correlation
        return response

    async def closed_by_peer(self) -> bool:
        async with asyncio.timeout(TIMEOUT):
            return await self.reader.read(1) == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def records(*values: bytes) -> bytes:
    return encode_batch([RecordToWrite(None, v) for v in values])


def produce_request(topic: str, partition: int, data: bytes, acks: int = 1) -> ProduceRequest:
    return ProduceRequest(
        acks=acks,
        timeout_ms=1000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.PartitionProduceData(index=partition, records=data)],
            )
        ],
    )


def fetch_request(topic: str, partition: int, offset: int, max_wait_ms: int = 0) -> FetchRequest:
    return FetchRequest(
        max_wait_ms=max_wait_ms,
        min_bytes=1,
        topics=[
            FetchRequest.FetchTopic(
                topic=topic,
                partitions=[
                    FetchRequest.FetchPartition(
                        partition=partition, fetch_offset=offset, partition_max_bytes=1 << 20
                    )
                ],
            )
        ],
    )


async def test_api_versions_lists_the_registry() -> None:
    async with EmbeddedBroker() as broker:
        client = await RawClient.connect(broker)
        request = ApiVersionsRequest(client_software_name="raw-test", client_software_version="1.0")
        response: ApiVersionsResponse = await client.request(request, 3)
        assert response.error_code == ErrorCode.NONE
        advertised = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
        assert advertised == broker.registry.versions()
        # Kafka 4.4's ranges (the default emulated release; kafka_versions.py, pinned against
        # the real brokers by tests/differential/test_versions.py).
        assert advertised[0] == (3, 13) and advertised[1] == (4, 18) and advertised[18] == (0, 5)
        assert {f.name for f in response.finalized_features} >= {"share.version"}
        bad = ApiVersionsRequest(client_software_name="-bad-", client_software_version="1")
        assert (await client.request(bad, 3)).error_code == ErrorCode.INVALID_REQUEST
        await client.close()


async def test_api_versions_with_a_too_high_version_gets_a_v0_answer() -> None:
    async with EmbeddedBroker() as broker:
        client = await RawClient.connect(broker)
        # Version 99 with a body nobody can parse: only the header's first fields are read.
        frame = struct.pack(">hhih", 18, 99, 4242, 3) + b"abc" + b"\x00\xff\xfe"
        await client.send_bytes(struct.pack(">i", len(frame)) + frame)
        answer = await client.read_frame()
        assert peek_correlation_id(answer) == 4242
        response = decode_response(answer, 18, 0)
        assert isinstance(response, ApiVersionsResponse)
        assert response.error_code == ErrorCode.UNSUPPORTED_VERSION
        assert [(k.api_key, k.min_version, k.max_version) for k in response.api_keys] == [(18, 0, 5)]
        # The connection stays usable.
        assert (await client.request(MetadataRequest(topics=None), 12)).brokers
        await client.close()


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(struct.pack(">hhih", 3, 12, 1, -1) + b"\x05\x00", id="truncated-body"),
        pytest.param(b"\x00\x03", id="shorter-than-a-header"),
        pytest.param(struct.pack(">hhih", 3, 12, 1, 300), id="client-id-past-the-end"),
    ],
)
async def test_malformed_frame_closes_only_that_connection(
    frame: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with EmbeddedBroker() as broker:
        good = await RawClient.connect(broker)
        bad = await RawClient.connect(broker)
        with caplog.at_level(logging.WARNING, logger="aioshare.broker"):
            await bad.send_bytes(struct.pack(">i", len(frame)) + frame)
            assert await bad.closed_by_peer()
        assert "malformed request" in caplog.text
        response: MetadataResponse = await good.request(MetadataRequest(topics=None), 12)
        assert [b.node_id for b in response.brokers] == broker.node_ids
        third = await RawClient.connect(broker)
        assert (await third.request(MetadataRequest(topics=None), 1)).brokers
        for client in (good, bad, third):
            await client.close()


async def test_oversized_and_negative_frames_close_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    async with EmbeddedBroker(config={"socket.request.max.bytes": 1024}) as broker:
        with caplog.at_level(logging.WARNING, logger="aioshare.broker"):
            big = await RawClient.connect(broker)
            await big.send_bytes(struct.pack(">i", 1025) + b"x" * 100)
            assert await big.closed_by_peer()
            negative = await RawClient.connect(broker)
            await negative.send_bytes(struct.pack(">i", -5))
            assert await negative.closed_by_peer()
        assert "unreadable frame" in caplog.text
        good = await RawClient.connect(broker)
        assert (await good.request(MetadataRequest(topics=None), 12)).brokers
        for client in (big, negative, good):
            await client.close()


async def test_unknown_api_key_and_unsupported_versions_close_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with EmbeddedBroker() as broker:
        with caplog.at_level(logging.WARNING, logger="aioshare.broker"):
            unknown = await RawClient.connect(broker)
            frame = struct.pack(">hhih", 999, 0, 1, -1)
            await unknown.send_bytes(struct.pack(">i", len(frame)) + frame)
            assert await unknown.closed_by_peer()
            # Known to the codec, but not served by this broker (classic groups).
            unserved = await RawClient.connect(broker)
            await unserved.send(JoinGroupRequest(group_id="g", member_id="", protocol_type="consumer"), 5)
            assert await unserved.closed_by_peer()
            # Produce v2 is below Kafka 4's minimum.
            old = await RawClient.connect(broker)
            frame = (
                struct.pack(">hhih", 0, 2, 1, -1) + b"\x00\x01" + b"\x00\x00\x03\xe8" + b"\x00\x00\x00\x00"
            )
            await old.send_bytes(struct.pack(">i", len(frame)) + frame)
            assert await old.closed_by_peer()
        assert (
            "API key 999" in caplog.text
            and "API key 11" in caplog.text
            and "API key 0 version 2" in caplog.text
        )
        good = await RawClient.connect(broker)
        assert (await good.request(MetadataRequest(topics=None), 12)).brokers
        for client in (unknown, unserved, old, good):
            await client.close()


async def test_trailing_bytes_after_a_body_are_ignored_like_kafka() -> None:
    async with EmbeddedBroker() as broker:
        client = await RawClient.connect(broker)
        frame = encode_request(MetadataRequest(topics=None), 13, 9, "rdkafka")[4:] + b"\x01\x00\x00"
        await client.send_bytes(struct.pack(">i", len(frame)) + frame)
        answer = await client.read_frame()
        assert peek_correlation_id(answer) == 9
        response = decode_response(answer, 3, 13)
        assert isinstance(response, MetadataResponse) and response.brokers
        await client.close()


async def test_responses_keep_request_order_behind_a_long_poll() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("t")
        client = await RawClient.connect(broker)
        fetch_id = await client.send(fetch_request("t", 0, 0, max_wait_ms=30_000), 12)
        meta_id = await client.send(MetadataRequest(topics=None), 12)
        # Wake the long poll with a produce on another connection.
        producer = await RawClient.connect(broker)
        produced: ProduceResponse = await producer.request(produce_request("t", 0, records(b"a", b"b")), 9)
        assert produced.responses[0].partition_responses[0].error_code == ErrorCode.NONE
        first_id, fetched = await client.receive()
        second_id, _ = await client.receive()
        assert (first_id, second_id) == (fetch_id, meta_id)
        assert isinstance(fetched, FetchResponse)
        data = fetched.responses[0].partitions[0].records
        assert [r.value for view in iter_batches(data or b"") for r in view.records()] == [b"a", b"b"]
        await client.close()
        await producer.close()


async def test_long_poll_times_out_empty() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("t")
        client = await RawClient.connect(broker)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response: FetchResponse = await client.request(fetch_request("t", 0, 0, max_wait_ms=200), 12)
        assert loop.time() - started >= 0.19
        assert response.responses[0].partitions[0].records == b""
        await client.close()


async def test_acks_zero_sends_nothing_and_closes_on_error() -> None:
    async with EmbeddedBroker(config={"auto.create.topics.enable": False}) as broker:
        await broker.create_topic("t")
        client = await RawClient.connect(broker)
        await client.send(produce_request("t", 0, records(b"x"), acks=0), 9)
        meta: MetadataResponse = await client.request(MetadataRequest(topics=None), 12)
        assert [t.name for t in meta.topics] == ["t"]
        assert broker.partition("t", 0).log.log_end_offset == 1
        await client.send(produce_request("missing", 0, records(b"x"), acks=0), 9)
        assert await client.closed_by_peer()
        await client.close()


async def test_disconnect_listeners_get_the_connection() -> None:
    async with EmbeddedBroker(nodes=2) as broker:
        closed: list[ConnectionInfo] = []
        event = asyncio.Event()

        def listener(info: ConnectionInfo) -> None:
            closed.append(info)
            event.set()

        broker.registry.add_disconnect_listener(listener)
        client = await RawClient.connect(broker, node_id=2)
        await client.request(MetadataRequest(topics=None), 12)
        assert broker.server(2).connection_count == 1
        await client.close()
        async with asyncio.timeout(TIMEOUT):
            await event.wait()
        assert closed[0].node_id == 2 and closed[0].client_port > 0
        # Connections dropped by the broker are reported too.
        event.clear()
        client = await RawClient.connect(broker, node_id=1)
        await client.request(MetadataRequest(topics=None), 12)
        await broker.drop_connections(1)
        assert len(closed) == 2 and closed[1].node_id == 1
        assert closed[0].connection_id != closed[1].connection_id
        assert await client.closed_by_peer()
        await client.close()


async def test_delay_responses_holds_back_selected_apis() -> None:
    async with EmbeddedBroker() as broker:
        client = await RawClient.connect(broker)
        loop = asyncio.get_running_loop()
        broker.delay_responses(0.3, api_keys=[3])
        started = loop.time()
        await client.request(ApiVersionsRequest(), 0)
        assert loop.time() - started < 0.3
        await client.request(MetadataRequest(topics=None), 12)
        assert loop.time() - started >= 0.29
        broker.delay_responses(0)
        started = loop.time()
        await client.request(MetadataRequest(topics=None), 12)
        assert loop.time() - started < 0.3
        await client.close()


async def test_close_leaves_no_tasks_behind() -> None:
    before = asyncio.all_tasks()
    async with EmbeddedBroker(nodes=3) as broker:
        await broker.create_topic("t", partitions=3)
        clients = [await RawClient.connect(broker, node_id) for node_id in broker.node_ids]
        for client in clients:
            await client.send(fetch_request("t", 0, 0, max_wait_ms=60_000), 12)
        log = broker.partition("t", 0).log
        await wait_until(lambda: log.listener_count == 1, timeout=TIMEOUT)  # the leader's fetch is parked
    assert asyncio.all_tasks() == before
    assert log.listener_count == 0
    for client in clients:
        await client.close()
