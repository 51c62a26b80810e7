"""Requests that race on one share session, as Kafka answers them (compared with real Kafka in
tests/differential/test_session_limits.py), and top-level errors without ErrorMessage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.client.connection import Connection
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import ShareAcknowledgeResponse, ShareFetchResponse

from .share_fetch_support import TIMEOUT, ShareClient, acquired, alter_group_config, produce, share_partition


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as running:
        yield running


async def test_a_long_poll_whose_session_moved_on_is_answered_invalid_epoch(broker: EmbeddedBroker) -> None:
    topic_id = await broker.create_topic("t")
    await alter_group_config(broker, "g", share_auto_offset_reset="earliest")
    produce(broker, "t", 2)
    client = await ShareClient.open(broker, topic_id)
    other = await ShareClient.open(broker, topic_id)  # the same member, another connection
    try:
        assert acquired(await client.fetch()) == [(0, 1, 1)]
        poll = asyncio.create_task(
            client.connection.send(
                client.fetch_request((), max_wait_ms=10_000),
                timeout=TIMEOUT,
                response_type=ShareFetchResponse,
            )
        )
        async with asyncio.timeout(TIMEOUT):
            while True:
                if (await other.acknowledge({0: [(0, 1, [1])]}, epoch=2)).error_code == ErrorCode.NONE:
                    break
                await asyncio.sleep(0.01)  # the poll has not taken epoch 1 yet
        produce(broker, "t", 1)
        response = await poll
        # The session is at epoch 3 now, not 2: Kafka's ShareSessionContext refuses the response.
        assert (response.error_code, response.error_message, response.responses) == (
            ErrorCode.INVALID_SHARE_SESSION_EPOCH,
            None,
            [],
        )
        sp = share_partition(broker, "g", "t")
        assert sp is not None and sp.in_flight_count == 1  # offset 2 stays acquired
        client.epoch = 3
        assert (await client.fetch()).error_code == ErrorCode.NONE
    finally:
        await client.close()
        await other.close()


async def test_request_level_errors_carry_no_message(broker: EmbeddedBroker) -> None:
    topic_id = await broker.create_topic("t")
    client = await ShareClient.open(broker, topic_id)
    try:
        not_found = await client.fetch(epoch=4)
        assert (not_found.error_code, not_found.error_message) == (ErrorCode.SHARE_SESSION_NOT_FOUND, None)
        ack = await client.acknowledge({0: [(0, 0, [1])]}, epoch=4)
        assert (ack.error_code, ack.error_message) == (ErrorCode.SHARE_SESSION_NOT_FOUND, None)
        client.member = "x" * 37
        invalid = await client.fetch()
        assert (invalid.error_code, invalid.error_message) == (ErrorCode.INVALID_REQUEST, None)
        renew = await client.fetch(renew=True, max_records=5, epoch=1)
        assert (renew.error_code, renew.error_message) == (ErrorCode.INVALID_REQUEST, None)
    finally:
        await client.close()


async def test_an_invalid_member_id_on_share_acknowledge_has_no_message(broker: EmbeddedBroker) -> None:
    host, port = broker.address(broker.node_ids[0])
    connection = await Connection.open(host, port)
    client = ShareClient(connection, "g", "", await broker.create_topic("t"))
    try:
        response: ShareAcknowledgeResponse = await client.acknowledge({}, epoch=1)
        assert (response.error_code, response.error_message) == (ErrorCode.INVALID_REQUEST, None)
    finally:
        await connection.close()
