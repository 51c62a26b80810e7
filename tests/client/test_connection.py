"""Connection against the in-test fake broker: negotiation, pipelining, timeouts, failures."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest

from aioshare.client.connection import Connection
from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    ProtocolError,
    UnsupportedVersionError,
)
from aioshare.protocol.messages import (
    ApiVersionsRequest,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
    RequestHeader,
)

from .fakes import FakeBroker, FakeConn, Raw, all_versions, owned_tasks

FIND = FindCoordinatorRequest.API_KEY
# FindCoordinator up to v3 carries a single Key, which the echo handler below answers by.
SINGLE_KEY = all_versions() | {FIND: (0, 3)}


async def echo_key(conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
    """FindCoordinator answered with node_id = int(key): tells responses apart."""
    return FindCoordinatorResponse(node_id=int(body.key), host="h", port=1)


async def open_to(broker: FakeBroker, **kwargs: Any) -> Connection:
    return await Connection.open(broker.host, broker.port, **kwargs)


async def test_negotiates_versions() -> None:
    versions = all_versions() | {FIND: (0, 2), 3: (5, 20)}
    del versions[ProduceRequest.API_KEY]
    async with FakeBroker(api_versions=versions) as broker:
        conn = await open_to(broker)
        try:
            assert [r.version for r in broker.requests(18)] == [4]
            assert conn.api_versions[FIND] == (0, 2)
            assert conn.version_for(FIND) == 2
            assert conn.version_for(3) == MetadataRequest.MAX_VERSION  # ours is the lower max
            assert conn.version_for(3, max_supported=7) == 7
            with pytest.raises(UnsupportedVersionError):
                conn.version_for(3, max_supported=4)  # the broker's floor is 5
            with pytest.raises(UnsupportedVersionError):
                conn.version_for(ProduceRequest.API_KEY)  # not advertised
            with pytest.raises(UnsupportedVersionError):
                conn.version_for(9999)  # no codec
        finally:
            await conn.close()


@pytest.mark.parametrize("garbled", [False, True])
async def test_api_versions_fallback(garbled: bool) -> None:
    async with FakeBroker(api_versions_max=2, garbled_unsupported=garbled) as broker:
        conn = await open_to(broker)
        try:
            # A proper v0 error body names the broker's max (2); the mock-style one cannot
            # be read, so the client goes straight to v0.
            assert [r.version for r in broker.requests(18)] == [4, 0 if garbled else 2]
            assert conn.version_for(FIND) == FindCoordinatorRequest.MAX_VERSION
            first = broker.requests(18)[0].body
            assert isinstance(first, ApiVersionsRequest) and first.client_software_name == "aioshare"
        finally:
            await conn.close()


async def test_pipelined_requests_complete_out_of_order() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:
        release_first = asyncio.Event()

        async def handler(conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
            if body.key == "1":
                await release_first.wait()
            return await echo_key(conn, header, body)

        broker.handlers[FIND] = handler
        conn = await open_to(broker)
        try:
            first = asyncio.create_task(
                conn.send(FindCoordinatorRequest(key="1"), response_type=FindCoordinatorResponse)
            )
            await broker.wait_for(lambda: len(broker.requests(FIND)) == 1)
            others = await asyncio.gather(
                *(
                    conn.send(FindCoordinatorRequest(key=str(i)), response_type=FindCoordinatorResponse)
                    for i in (2, 3)
                )
            )
            assert [r.node_id for r in others] == [2, 3]
            assert not first.done() and conn.in_flight == 1
            release_first.set()
            assert (await first).node_id == 1
            ids = [r.correlation_id for r in broker.requests(FIND)]
            assert broker.answered[-3:] == [ids[1], ids[2], ids[0]]
            assert len(set(ids)) == 3
        finally:
            await conn.close()


async def test_timeout_keeps_connection_and_drops_late_response() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:
        release = asyncio.Event()

        async def handler(conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
            if body.key == "1":
                await release.wait()
            return await echo_key(conn, header, body)

        broker.handlers[FIND] = handler
        conn = await open_to(broker)
        try:
            with pytest.raises(KafkaTimeoutError):
                await conn.send(FindCoordinatorRequest(key="1"), timeout=0.05)
            assert not conn.closed and conn.in_flight == 0
            late_id = broker.requests(FIND)[0].correlation_id
            release.set()
            await broker.wait_for(lambda: late_id in broker.answered)
            response = await conn.send(FindCoordinatorRequest(key="7"), response_type=FindCoordinatorResponse)
            assert response.node_id == 7 and not conn.closed
        finally:
            await conn.close()


async def test_cancelled_send_leaves_connection_usable() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:
        release = asyncio.Event()

        async def handler(conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
            if body.key == "1":
                await release.wait()
            return await echo_key(conn, header, body)

        broker.handlers[FIND] = handler
        conn = await open_to(broker)
        try:
            task = asyncio.create_task(conn.send(FindCoordinatorRequest(key="1")))
            await broker.wait_for(lambda: len(broker.requests(FIND)) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            release.set()
            await broker.wait_for(lambda: len(broker.answered) == 2)  # ApiVersions + the late one
            response = await conn.send(FindCoordinatorRequest(key="5"), response_type=FindCoordinatorResponse)
            assert response.node_id == 5
        finally:
            await conn.close()


async def test_peer_disconnect_fails_pending_requests() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:
        never = asyncio.Event()

        async def hang(conn: FakeConn, header: RequestHeader, body: Any) -> None:
            await never.wait()

        broker.handlers[FIND] = hang
        conn = await open_to(broker)
        pending = [asyncio.create_task(conn.send(FindCoordinatorRequest(key=str(i)))) for i in range(2)]
        await broker.wait_for(lambda: len(broker.requests(FIND)) == 2)
        broker.drop_connections()
        for task in pending:
            with pytest.raises(KafkaConnectionError):
                await task
        assert conn.closed and conn.in_flight == 0
        with pytest.raises(KafkaConnectionError):
            await conn.send(FindCoordinatorRequest(key="1"))
        await conn.close()  # idempotent after a peer close


async def test_close_fails_pending_and_leaves_no_task() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:
        never = asyncio.Event()

        async def hang(conn: FakeConn, header: RequestHeader, body: Any) -> None:
            await never.wait()

        broker.handlers[FIND] = hang
        conn = await open_to(broker)
        task = asyncio.create_task(conn.send(FindCoordinatorRequest(key="1")))
        await broker.wait_for(lambda: len(broker.requests(FIND)) == 1)
        await conn.close()
        with pytest.raises(KafkaConnectionError, match="closed"):
            await task
        assert conn.closed
        assert not owned_tasks()


async def test_unknown_correlation_id_breaks_connection() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:

        async def stray(conn: FakeConn, header: RequestHeader, body: Any) -> Raw:
            payload = struct.pack(">i", header.correlation_id + 1000) + b"\0" * 8
            return Raw(struct.pack(">i", len(payload)) + payload)

        broker.handlers[FIND] = stray
        conn = await open_to(broker)
        with pytest.raises(KafkaConnectionError, match="unknown correlation id"):
            await conn.send(FindCoordinatorRequest(key="1"))
        assert conn.closed
        await conn.close()


async def test_frame_over_max_fails_connection() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:

        async def big(conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
            return MetadataResponse(cluster_id="x" * 4000)

        broker.handlers[3] = big
        conn = await open_to(broker, max_frame=1024)
        with pytest.raises(KafkaConnectionError, match="exceeds the limit"):
            await conn.send(MetadataRequest(topics=[]))
        assert conn.closed
        await conn.close()


async def test_malformed_response_fails_only_that_request() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:

        async def short(conn: FakeConn, header: RequestHeader, body: Any) -> Raw | ApiMessage:
            if body.key == "bad":
                payload = struct.pack(">i", header.correlation_id) + b"\x00"  # header tags, no body
                return Raw(struct.pack(">i", len(payload)) + payload)
            return await echo_key(conn, header, body)

        broker.handlers[FIND] = short
        conn = await open_to(broker)
        try:
            with pytest.raises(ProtocolError):
                await conn.send(FindCoordinatorRequest(key="bad"))
            assert (
                await conn.send(FindCoordinatorRequest(key="3"), response_type=FindCoordinatorResponse)
            ).node_id == 3
        finally:
            await conn.close()


async def test_encoding_error_does_not_touch_the_stream() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:
        broker.handlers[FIND] = echo_key
        conn = await open_to(broker)
        try:
            with pytest.raises(ProtocolError):
                await conn.send(FindCoordinatorRequest(key="1", key_type=1), 0)  # v0 has no KeyType
            assert conn.in_flight == 0 and not broker.requests(FIND)
            assert (
                await conn.send(FindCoordinatorRequest(key="2"), response_type=FindCoordinatorResponse)
            ).node_id == 2
        finally:
            await conn.close()


async def test_send_without_response() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:

        async def no_answer(conn: FakeConn, header: RequestHeader, body: Any) -> None:
            return None

        broker.handlers[ProduceRequest.API_KEY] = no_answer
        broker.handlers[FIND] = echo_key
        conn = await open_to(broker)
        try:
            await conn.send(ProduceRequest(acks=0), expect_response=False)
            assert conn.in_flight == 0
            assert (
                await conn.send(FindCoordinatorRequest(key="4"), response_type=FindCoordinatorResponse)
            ).node_id == 4
            assert [r.api_key for r in broker.received] == [18, 0, FIND]
        finally:
            await conn.close()


async def test_response_type_is_checked() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:
        broker.handlers[FIND] = echo_key
        conn = await open_to(broker)
        try:
            with pytest.raises(TypeError):
                await conn.send(FindCoordinatorRequest(key="1"), response_type=MetadataResponse)
        finally:
            await conn.close()


async def test_connect_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(KafkaConnectionError, match="cannot connect"):
        await Connection.open("127.0.0.1", port)


async def test_broker_that_never_answers_api_versions() -> None:
    async with FakeBroker(api_versions=SINGLE_KEY) as broker:
        never = asyncio.Event()

        async def hang(conn: FakeConn, header: RequestHeader, body: Any) -> None:
            await never.wait()

        broker.handlers[18] = hang
        with pytest.raises(KafkaTimeoutError):
            await open_to(broker, request_timeout=0.05)
        # The half-open connection was closed, not leaked.
        await broker.wait_for(lambda: all(c.closed for c in broker.conns))
