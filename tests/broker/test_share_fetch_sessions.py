"""ShareFetch / ShareAcknowledge session handling over real sockets (semantics doc 3.2-3.5):
epochs, session errors, the session limit, incremental responses, unknown topics, renew rules."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import ShareFetchResponse

from .share_fetch_support import (
    TIMEOUT,
    ShareClient,
    acquired,
    alter_group_config,
    leader_of,
    partition_data,
    produce,
    record_offsets,
    share_partition,
)


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as running:
        yield running


async def setup(broker: EmbeddedBroker, partitions: int = 1, records: int = 10) -> uuid.UUID:
    topic_id = await broker.create_topic("t", partitions)
    await alter_group_config(broker, "g", share_auto_offset_reset="earliest")
    for partition in range(partitions):
        produce(broker, "t", records, partition=partition, per_batch=5)
    return topic_id


async def test_epochs_open_advance_and_reject(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        # No session yet: incremental and final epochs are refused.
        for epoch in (1, 7, -1):
            response = await client.fetch(epoch=epoch)
            assert response.error_code == ErrorCode.SHARE_SESSION_NOT_FOUND
            assert response.responses == []
        response = await client.fetch()
        assert response.error_code == ErrorCode.NONE
        assert response.acquisition_lock_timeout_ms == 30000
        assert acquired(response) == [(0, 9, 1)]
        assert client.epoch == 1
        # The wrong epoch is refused and does not move the session.
        assert (await client.fetch(epoch=5)).error_code == ErrorCode.INVALID_SHARE_SESSION_EPOCH
        response = await client.fetch(epoch=1, acks={0: [(0, 9, [1])]})
        assert response.error_code == ErrorCode.NONE
        assert partition_data(response).acknowledge_error_code == ErrorCode.NONE
        # Epoch 2 is next; epoch 1 again is stale.
        assert (await client.fetch(epoch=1)).error_code == ErrorCode.INVALID_SHARE_SESSION_EPOCH
        assert (await client.fetch(epoch=2)).error_code == ErrorCode.NONE
    finally:
        await client.close()


async def test_acknowledgements_on_epoch_zero_are_invalid_and_keep_the_session(
    broker: EmbeddedBroker,
) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        response = await client.fetch(acks={0: [(0, 0, [1])]}, epoch=0)
        assert response.error_code == ErrorCode.INVALID_REQUEST
        # The existing session is untouched: epoch 1 still works and the records are still ours.
        client.epoch = 1
        response = await client.fetch(acks={0: [(0, 9, [1])]})
        assert response.error_code == ErrorCode.NONE
        assert partition_data(response).acknowledge_error_code == ErrorCode.NONE
    finally:
        await client.close()


async def test_share_acknowledge_session_rules(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        assert (await client.acknowledge({0: [(0, 0, [1])]}, epoch=1)).error_code == (
            ErrorCode.SHARE_SESSION_NOT_FOUND
        )
        assert (await client.acknowledge({0: [(0, 0, [1])]}, epoch=-1)).error_code == (
            ErrorCode.SHARE_SESSION_NOT_FOUND
        )
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        # Epoch 0 can never be used by ShareAcknowledge.
        response = await client.acknowledge({0: [(0, 0, [1])]}, epoch=0)
        assert response.error_code == ErrorCode.INVALID_SHARE_SESSION_EPOCH
        assert (await client.acknowledge({0: [(0, 0, [1])]}, epoch=3)).error_code == (
            ErrorCode.INVALID_SHARE_SESSION_EPOCH
        )
        response = await client.acknowledge({0: [(0, 4, [1])]})
        assert response.error_code == ErrorCode.NONE
        assert [p.error_code for t in response.responses for p in t.partitions] == [ErrorCode.NONE]
        assert response.acquisition_lock_timeout_ms == 30000
        # ShareAcknowledge advanced the epoch just like a fetch.
        assert client.epoch == 2
        assert (await client.fetch(epoch=2)).error_code == ErrorCode.NONE
        # v1 has no AcquisitionLockTimeoutMs: the codec leaves the field out.
        response = await client.acknowledge({0: [(5, 5, [1])]}, version=1)
        assert response.error_code == ErrorCode.NONE
        assert response.acquisition_lock_timeout_ms == 0
    finally:
        await client.close()


async def test_null_group_and_empty_member_are_invalid(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        request = client.fetch_request((0,))
        request.group_id = None
        response = await client.connection.send(request, response_type=ShareFetchResponse)
        assert response.error_code == ErrorCode.INVALID_REQUEST
        request = client.fetch_request((0,))
        request.member_id = ""
        response = await client.connection.send(request, response_type=ShareFetchResponse)
        assert response.error_code == ErrorCode.INVALID_REQUEST
    finally:
        await client.close()


async def test_session_limit_holds_the_request_for_max_wait_then_refuses() -> None:
    config = {"group.share.max.share.sessions": 1, "group.share.max.size": 1}
    async with EmbeddedBroker(config=config) as broker:
        topic_id = await setup(broker)
        first = await ShareClient.open(broker, topic_id, member="m1")
        second = await ShareClient.open(broker, topic_id, member="m2")
        try:
            assert (await first.fetch()).error_code == ErrorCode.NONE
            loop = asyncio.get_running_loop()
            started = loop.time()
            response = await second.fetch(max_wait_ms=300)
            assert response.error_code == ErrorCode.SHARE_SESSION_LIMIT_REACHED
            assert loop.time() - started >= 0.29
            # An epoch-0 request of the member that holds the slot replaces its own session.
            first.epoch = 0
            assert (await first.fetch()).error_code == ErrorCode.NONE
            # Once the first session ends, the second member gets in.
            assert (await first.fetch(epoch=-1)).error_code == ErrorCode.NONE
            assert (await second.fetch()).error_code == ErrorCode.NONE
        finally:
            await first.close()
            await second.close()


async def test_incremental_responses_omit_quiet_partitions(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker, partitions=3, records=0)
    produce(broker, "t", 5, partition=1)
    client = await ShareClient.open(broker, topic_id)
    try:
        # A full response lists every requested partition, even empty ones.
        response = await client.fetch([0, 1])
        assert sorted(p.partition_index for t in response.responses for p in t.partitions) == [0, 1]
        assert acquired(response, 1) == [(0, 4, 1)]
        assert record_offsets(partition_data(response, 1).records) == [0, 1, 2, 3, 4]
        assert partition_data(response, 0).records == b""
        # Incremental: nothing to report -> nothing listed; a newly added partition is listed.
        response = await client.fetch([2])
        assert [p.partition_index for t in response.responses for p in t.partitions] == [2]
        response = await client.fetch()
        assert response.responses == []
        # New data on one partition: only that one is listed; acks make a partition appear too.
        produce(broker, "t", 2, partition=0)
        response = await client.fetch(acks={1: [(0, 4, [1])]})
        listed = {p.partition_index: p for t in response.responses for p in t.partitions}
        assert sorted(listed) == [0, 1]
        assert acquired(response, 0) == [(0, 1, 1)]
        assert listed[1].acknowledge_error_code == ErrorCode.NONE and listed[1].acquired_records == []
        # A forgotten partition is no longer fetched.
        produce(broker, "t", 2, partition=2)
        response = await client.fetch(forgotten=[2])
        assert response.responses == []
    finally:
        await client.close()


async def test_unknown_topic_and_partition(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, uuid.uuid4())
    try:
        response = await client.fetch(max_wait_ms=5000)
        # All partitions failed: answered at once, with the error per partition.
        assert partition_data(response).error_code == ErrorCode.UNKNOWN_TOPIC_ID
        client.topic_id = topic_id
        response = await client.fetch([7])
        assert partition_data(response, 7).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        response = await client.fetch(acks={9: [(0, 0, [1])]})
        data = partition_data(response, 9)
        assert data.acknowledge_error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert data.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    finally:
        await client.close()


async def test_max_records_is_shared_and_the_start_partition_rotates(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker, partitions=2, records=20)
    client = await ShareClient.open(broker, topic_id)
    try:
        response = await client.fetch([0, 1], max_records=5, batch_size=5)
        got = {
            p.partition_index: acquired(response, p.partition_index)
            for t in response.responses
            for p in t.partitions
        }
        # The budget went to the first partition; the other one got nothing this time.
        assert got == {0: [(0, 4, 1)], 1: []}
        # The next epoch (1) starts at index 1 % 2: partition 1 gets the budget.
        response = await client.fetch(max_records=5, batch_size=5)
        assert acquired(response, 1) == [(0, 4, 1)]
        assert acquired(response, 0) == []
        response = await client.fetch(max_records=5, batch_size=5)
        assert acquired(response, 0) == [(5, 9, 1)]
    finally:
        await client.close()


async def test_max_records_zero_or_empty_session_answers_at_once(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker, records=0)
    client = await ShareClient.open(broker, topic_id)
    try:
        async with asyncio.timeout(TIMEOUT / 4):
            response = await client.fetch(max_records=0, max_wait_ms=60_000)
            assert response.error_code == ErrorCode.NONE
            response = await client.fetch([], forgotten=[0], max_wait_ms=60_000)
            assert response.error_code == ErrorCode.NONE and response.responses == []
    finally:
        await client.close()


async def test_renew_request_rules(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        # IsRenewAck needs zero fetch sizes.
        response = await client.fetch(
            acks={0: [(0, 0, [4])]}, renew=True, max_bytes=0, max_records=0, max_wait_ms=1
        )
        assert response.error_code == ErrorCode.INVALID_REQUEST
        # Refused before the session was looked at (KafkaApis): the epoch did not move.
        client.epoch -= 1
        # RENEW without IsRenewAck is a bad batch.
        response = await client.fetch(acks={0: [(0, 0, [4])]}, max_records=0, max_bytes=0)
        assert partition_data(response).acknowledge_error_code == ErrorCode.INVALID_REQUEST
        # RENEW in v1 does not exist (nor does IsRenewAck).
        response = await client.fetch(acks={0: [(0, 0, [4])]}, max_records=0, max_bytes=0, version=1)
        assert partition_data(response).acknowledge_error_code == ErrorCode.INVALID_REQUEST
        sp = share_partition(broker, "g", "t")
        assert sp is not None
        before = sp.in_flight()[0].lock_deadline_ms
        assert before is not None
        await wait_for_clock_to_pass(broker, before - 30000)
        response = await client.fetch(
            acks={0: [(0, 4, [4]), (5, 9, [4, 1, 4, 2, 4])]},
            renew=True,
            max_bytes=0,
            max_records=0,
            min_bytes=0,
        )
        assert response.error_code == ErrorCode.NONE
        assert response.acquisition_lock_timeout_ms == 30000
        assert partition_data(response).acknowledge_error_code == ErrorCode.NONE
        assert partition_data(response).acquired_records == []
        ranges = sp.in_flight()
        renewed = [r for r in ranges if r.state.name == "ACQUIRED"]
        assert [(r.first_offset, r.last_offset) for r in renewed] == [(0, 5), (7, 7), (9, 9)]
        assert all(r.lock_deadline_ms is not None and r.lock_deadline_ms > before for r in renewed)
        # Still ours: the renewed records can be accepted.
        acked = await client.acknowledge({0: [(0, 5, [1]), (7, 7, [1]), (9, 9, [1])]})
        assert [p.error_code for t in acked.responses for p in t.partitions] == [ErrorCode.NONE]
    finally:
        await client.close()


async def wait_for_clock_to_pass(broker: EmbeddedBroker, ms: int) -> None:
    """Wait until the broker clock is past `ms` (a few milliseconds at most in these tests)."""
    async with asyncio.timeout(TIMEOUT):
        while broker.cluster.now_ms() <= ms:  # noqa: ASYNC110 - wall clock, no event to wait on
            await asyncio.sleep(0.002)


async def test_share_acknowledge_renew_in_v2_only(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        response = await client.acknowledge({0: [(0, 9, [4])]}, renew=False)
        assert [p.error_code for t in response.responses for p in t.partitions] == [ErrorCode.INVALID_REQUEST]
        response = await client.acknowledge({0: [(0, 9, [4])]}, version=1)
        assert [p.error_code for t in response.responses for p in t.partitions] == [ErrorCode.INVALID_REQUEST]
        response = await client.acknowledge({0: [(0, 9, [4])]}, renew=True)
        assert [p.error_code for t in response.responses for p in t.partitions] == [ErrorCode.NONE]
    finally:
        await client.close()


async def test_unknown_acquire_mode_is_invalid(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        response = await client.fetch(mode=7)
        assert response.error_code == ErrorCode.INVALID_REQUEST
    finally:
        await client.close()


async def test_group_empty_disconnect_drops_cached_share_partitions(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    assert acquired(await client.fetch()) == [(0, 9, 1)]
    assert share_partition(broker, "g", "t") is not None
    await client.close()
    leader = leader_of(broker)
    async with asyncio.timeout(TIMEOUT):
        while share_partition(broker, "g", "t") is not None:  # noqa: ASYNC110 - disconnect has no event
            await asyncio.sleep(0.005)
    assert len(leader.sessions(1)) == 0
    # Reloaded from the store on the next fetch: the released records come back. The release
    # kept their delivery count (Kafka 4.2+) and was persisted before the drop: count 2.
    client = await ShareClient.open(broker, topic_id, member="m2")
    try:
        assert acquired(await client.fetch()) == [(0, 9, 2)]
    finally:
        await client.close()
