"""Acknowledgements and record states through ShareFetch / ShareAcknowledge over real sockets:
batch validation, ownership, all-or-nothing, RELEASE / REJECT / ACCEPT / GAP, delivery-count
limit, lock expiry, session close and disconnect releases (semantics doc 3.5, 4.2-4.8)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import ProduceRequest, ProduceResponse, ShareAcknowledgeResponse
from aioshare.protocol.records import ControlType, RecordToWrite, encode_batch, transaction_marker

from .share_fetch_support import (
    TIMEOUT,
    Ack,
    ShareClient,
    acquired,
    alter_group_config,
    fetch_until,
    leader_of,
    offsets,
    partition_data,
    produce,
    record_offsets,
)

# The shortest lock Kafka allows (group.share.min.record.lock.duration.ms >= 1000).
SHORT_LOCKS = {"group.share.min.record.lock.duration.ms": 1000, "group.share.record.lock.duration.ms": 1000}


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as running:
        yield running


async def setup(broker: EmbeddedBroker, records: int = 10, per_batch: int = 5) -> uuid.UUID:
    topic_id = await broker.create_topic("t", 1)
    await alter_group_config(broker, "g", share_auto_offset_reset="earliest")
    produce(broker, "t", records, per_batch=per_batch)
    return topic_id


def ack_codes(response: ShareAcknowledgeResponse) -> list[int]:
    return [p.error_code for t in response.responses for p in t.partitions]


INVALID_BATCHES: list[tuple[str, Sequence[Ack]]] = [
    ("first offset after last", [(5, 4, [1])]),
    ("batches out of order", [(5, 6, [1]), (0, 1, [1])]),
    ("batches overlap", [(0, 5, [1]), (4, 6, [1])]),
    ("no types", [(0, 1, [])]),
    ("type count mismatch", [(0, 3, [1, 1])]),
    ("unknown type", [(0, 1, [5])]),
    ("negative type", [(0, 1, [-1])]),
    ("renew without IsRenewAck", [(0, 1, [4])]),
]


@pytest.mark.parametrize(("case", "batches"), INVALID_BATCHES, ids=[case for case, _ in INVALID_BATCHES])
async def test_batch_validation_on_share_fetch(
    broker: EmbeddedBroker, case: str, batches: Sequence[Ack]
) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        response = await client.fetch(acks={0: batches})
        assert response.error_code == ErrorCode.NONE
        data = partition_data(response)
        assert data.acknowledge_error_code == ErrorCode.INVALID_REQUEST, case
        assert data.error_code == ErrorCode.NONE
        # Nothing was applied: every record is still ours to accept.
        assert ack_codes(await client.acknowledge({0: [(0, 9, [1])]})) == [ErrorCode.NONE]
    finally:
        await client.close()


@pytest.mark.parametrize(("case", "batches"), INVALID_BATCHES, ids=[case for case, _ in INVALID_BATCHES])
async def test_batch_validation_on_share_acknowledge(
    broker: EmbeddedBroker, case: str, batches: Sequence[Ack]
) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        response = await client.acknowledge({0: batches})
        assert response.error_code == ErrorCode.NONE
        assert ack_codes(response) == [ErrorCode.INVALID_REQUEST], case
    finally:
        await client.close()


async def test_offsets_past_the_window_are_invalid_requests(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        assert ack_codes(await client.acknowledge({0: [(8, 12, [1])]})) == [ErrorCode.INVALID_REQUEST]
        assert ack_codes(await client.acknowledge({0: [(20, 22, [1])]})) == [ErrorCode.INVALID_REQUEST]
    finally:
        await client.close()


async def test_records_of_another_member_or_not_acquired_are_invalid_record_state(
    broker: EmbeddedBroker,
) -> None:
    topic_id = await setup(broker)
    first = await ShareClient.open(broker, topic_id, member="m1")
    second = await ShareClient.open(broker, topic_id, member="m2")
    try:
        assert acquired(await first.fetch(max_records=5)) == [(0, 4, 1)]
        assert acquired(await second.fetch(max_records=5)) == [(5, 9, 1)]
        # m2 cannot touch m1's records, and vice versa.
        assert ack_codes(await second.acknowledge({0: [(0, 4, [1])]})) == [ErrorCode.INVALID_RECORD_STATE]
        assert ack_codes(await first.acknowledge({0: [(4, 5, [1])]})) == [ErrorCode.INVALID_RECORD_STATE]
        # Accepted records are no longer acquired: a second ack fails (while SPSO is below them;
        # below SPSO Kafka skips acknowledgements silently).
        assert ack_codes(await first.acknowledge({0: [(1, 4, [1])]})) == [ErrorCode.NONE]
        assert ack_codes(await first.acknowledge({0: [(2, 2, [1])]})) == [ErrorCode.INVALID_RECORD_STATE]
        assert ack_codes(await first.acknowledge({0: [(0, 0, [1])]})) == [ErrorCode.NONE]
        assert ack_codes(await first.acknowledge({0: [(2, 2, [1])]})) == [ErrorCode.NONE]
    finally:
        await first.close()
        await second.close()


async def test_acknowledgements_are_all_or_nothing_per_partition(broker: EmbeddedBroker) -> None:
    topic_id = await broker.create_topic("t", 2)
    await alter_group_config(broker, "g", share_auto_offset_reset="earliest")
    produce(broker, "t", 10, partition=0, per_batch=5)
    produce(broker, "t", 10, partition=1, per_batch=5)
    client = await ShareClient.open(broker, topic_id)
    other = await ShareClient.open(broker, topic_id, member="m2")
    try:
        assert acquired(await client.fetch([0, 1], max_records=5), 0) == [(0, 4, 1)]
        assert acquired(await client.fetch(max_records=5), 1) == [(0, 4, 1)]
        assert acquired(await other.fetch([0], max_records=5)) == [(5, 9, 1)]
        # Partition 0: the first batch is fine, the second names records m2 holds.
        response = await client.fetch(acks={0: [(0, 1, [1]), (5, 6, [1])], 1: [(0, 4, [1])]}, max_records=0)
        assert partition_data(response, 0).acknowledge_error_code == ErrorCode.INVALID_RECORD_STATE
        assert partition_data(response, 1).acknowledge_error_code == ErrorCode.NONE
        # Offsets 0-1 were not accepted: still acquired by us, so they can be released now.
        assert ack_codes(await client.acknowledge({0: [(0, 4, [2])]})) == [ErrorCode.NONE]
        assert acquired(await other.fetch(max_records=5)) == [(0, 4, 2)]
    finally:
        await client.close()
        await other.close()


async def test_release_redelivers_with_delivery_count_two_and_reject_never(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        # Per-offset types: 0-2 accept, 3-4 release, 5 reject, 6 gap, 7-9 release.
        types = [1, 1, 1, 2, 2, 3, 0, 2, 2, 2]
        response = await client.fetch(acks={0: [(0, 9, types)]})
        assert partition_data(response).acknowledge_error_code == ErrorCode.NONE
        # The released ones come straight back in the same response, delivery count 2.
        assert acquired(response) == [(3, 4, 2), (7, 9, 2)]
        response = await client.fetch(acks={0: [(3, 4, [3]), (7, 9, [1])]}, max_wait_ms=50)
        assert acquired(response) == []
        sp = leader_of(broker).cached(1, "g", broker.partition("t", 0))
        assert sp is not None and sp.start_offset == 10
    finally:
        await client.close()


async def test_delivery_count_limit_archives() -> None:
    async with EmbeddedBroker(config={"group.share.delivery.count.limit": 2}) as broker:
        topic_id = await setup(broker, records=5)
        client = await ShareClient.open(broker, topic_id)
        try:
            assert acquired(await client.fetch()) == [(0, 4, 1)]
            response = await client.fetch(acks={0: [(0, 4, [2])]})
            assert acquired(response) == [(0, 4, 2)]
            # Second release at the limit: archived, never delivered again.
            response = await client.fetch(acks={0: [(0, 4, [2])]}, max_wait_ms=50)
            assert partition_data(response).acknowledge_error_code == ErrorCode.NONE
            assert acquired(response) == []
            produce(broker, "t", 1)
            assert acquired(await client.fetch(max_wait_ms=1000)) == [(5, 5, 1)]
        finally:
            await client.close()


async def test_lock_expiry_redelivers_and_late_acks_fail() -> None:
    async with EmbeddedBroker(config=SHORT_LOCKS) as broker:
        topic_id = await setup(broker, records=5)
        first = await ShareClient.open(broker, topic_id, member="m1")
        second = await ShareClient.open(broker, topic_id, member="m2")
        try:
            response = await first.fetch()
            assert acquired(response) == [(0, 4, 1)]
            assert response.acquisition_lock_timeout_ms == 1000
            # m2 long-polls: woken when m1's locks expire, gets the records with count 2.
            response = await fetch_until(second, lambda r: bool(acquired(r)), max_wait_ms=5000)
            assert acquired(response) == [(0, 4, 2)]
            assert ack_codes(await first.acknowledge({0: [(0, 4, [1])]})) == [ErrorCode.INVALID_RECORD_STATE]
            assert ack_codes(await second.acknowledge({0: [(0, 4, [1])]})) == [ErrorCode.NONE]
        finally:
            await first.close()
            await second.close()


async def test_lock_expiry_at_the_delivery_limit_archives() -> None:
    config = {**SHORT_LOCKS, "group.share.delivery.count.limit": 2}
    async with EmbeddedBroker(config=config) as broker:
        topic_id = await setup(broker, records=3)
        client = await ShareClient.open(broker, topic_id)
        try:
            assert acquired(await client.fetch()) == [(0, 2, 1)]
            response = await fetch_until(client, lambda r: bool(acquired(r)), max_wait_ms=5000)
            assert acquired(response) == [(0, 2, 2)]
            sp = leader_of(broker).cached(1, "g", broker.partition("t", 0))
            assert sp is not None
            # Second expiry at the limit: archived, SPSO moves past them.
            async with asyncio.timeout(TIMEOUT):
                while sp.start_offset != 3:
                    await client.fetch(max_wait_ms=200)
            assert sp.in_flight() == []
        finally:
            await client.close()


async def test_final_epoch_releases_with_delivery_count_kept(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    other = await ShareClient.open(broker, topic_id, member="m2")
    try:
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        response = await client.fetch(acks={0: [(0, 1, [1])]}, epoch=-1, max_wait_ms=10_000)
        # Final: acks only, nothing fetched, session gone.
        assert partition_data(response).acknowledge_error_code == ErrorCode.NONE
        assert partition_data(response).acquired_records == []
        assert leader_of(broker).sessions(1).get("g", "m1") is None
        # Kafka 4.2+ (KAFKA-19972): the cut-short delivery counts, redelivered with count 2.
        assert acquired(await other.fetch()) == [(2, 9, 2)]
        # ShareAcknowledge with the final epoch does the same.
        assert ack_codes(await other.acknowledge({0: [(2, 3, [1])]}, epoch=-1)) == [ErrorCode.NONE]
        assert leader_of(broker).sessions(1).get("g", "m2") is None
        client.epoch = 0
        assert acquired(await client.fetch()) == [(4, 9, 3)]
    finally:
        await client.close()
        await other.close()


async def test_disconnect_releases_with_delivery_count_kept(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    other = await ShareClient.open(broker, topic_id, member="m2")
    try:
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        assert acquired(await other.fetch()) == []
        waiting = asyncio.ensure_future(fetch_until(other, lambda r: bool(acquired(r)), max_wait_ms=5000))
        await client.close()
        response = await waiting
        assert acquired(response) == [(0, 9, 2)]
    finally:
        await client.close()
        await other.close()


@pytest.mark.parametrize("ending", ["final-fetch", "final-acknowledge", "disconnect"])
async def test_session_end_at_the_delivery_limit_archives(ending: str) -> None:
    """A member whose session ends holding records on their last permitted delivery: the
    records are ARCHIVED, not released (Kafka 4.2+), and SPSO moves past them."""
    async with EmbeddedBroker(config={"group.share.delivery.count.limit": 2}) as broker:
        topic_id = await setup(broker, records=10)
        client = await ShareClient.open(broker, topic_id)
        other = await ShareClient.open(broker, topic_id, member="m2")
        try:
            assert acquired(await client.fetch()) == [(0, 9, 1)]
            # Release the first batch: it comes straight back on its last delivery (count 2).
            response = await client.fetch(acks={0: [(0, 4, [2])]})
            assert acquired(response) == [(0, 4, 2)]
            if ending == "final-fetch":
                response = await client.fetch(epoch=-1, max_wait_ms=10_000)
                assert response.error_code == ErrorCode.NONE
                assert [p.acquired_records for t in response.responses for p in t.partitions] in ([], [[]])
            elif ending == "final-acknowledge":
                assert ack_codes(await client.acknowledge({0: [(5, 5, [1])]}, epoch=-1)) == [ErrorCode.NONE]
            else:
                await client.close()
                async with asyncio.timeout(TIMEOUT):
                    while leader_of(broker).sessions(1).get("g", "m1") is not None:  # noqa: ASYNC110 - disconnect has no event
                        await asyncio.sleep(0.01)
            # 0-4 used up their deliveries: archived, so SPSO is past them; 5-9 are released
            # with their count kept (5 was accepted by the final ShareAcknowledge).
            redelivered = [(6, 9, 2)] if ending == "final-acknowledge" else [(5, 9, 2)]
            assert acquired(await other.fetch()) == redelivered
            # (Reloaded from the store when m1's session was the group's last on the node.)
            sp = leader_of(broker).cached(1, "g", broker.partition("t", 0))
            assert sp is not None and sp.start_offset == redelivered[0][0]
            assert ack_codes(await other.acknowledge({0: [(redelivered[0][0], 9, [1])]})) == [ErrorCode.NONE]
            assert sp.start_offset == 10 and sp.in_flight() == []
        finally:
            await client.close()
            await other.close()


async def test_epoch_zero_replacing_a_session_keeps_records_acquired(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker)
    client = await ShareClient.open(broker, topic_id)
    try:
        assert acquired(await client.fetch()) == [(0, 9, 1)]
        client.epoch = 0
        response = await client.fetch(max_wait_ms=50)
        assert acquired(response) == []
        assert ack_codes(await client.acknowledge({0: [(0, 9, [1])]})) == [ErrorCode.NONE]
    finally:
        await client.close()


async def test_record_limit_splits_batches_and_batch_optimized_completes_them(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker, records=20, per_batch=10)
    client = await ShareClient.open(broker, topic_id)
    other = await ShareClient.open(broker, topic_id, member="m2")
    try:
        # batch_optimized: MaxRecords is soft, the log batch is completed.
        assert acquired(await client.fetch(max_records=3)) == [(0, 9, 1)]
        # record_limit: exactly MaxRecords, even inside a log batch.
        response = await other.fetch(max_records=3, mode=1)
        assert acquired(response) == [(10, 12, 1)]
        # The whole batch is returned in Records; only the acquired offsets may be delivered.
        assert offsets(acquired(response)) == [10, 11, 12]
        assert record_offsets(partition_data(response).records) == list(range(10, 20))
        response = await other.fetch(max_records=4, mode=1)
        assert acquired(response) == [(13, 16, 1)]
    finally:
        await client.close()
        await other.close()


async def test_batch_size_cuts_acquired_ranges_at_batch_boundaries(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker, records=20, per_batch=5)
    client = await ShareClient.open(broker, topic_id)
    try:
        response = await client.fetch(max_records=20, batch_size=10)
        assert acquired(response) == [(0, 9, 1), (10, 19, 1)]
    finally:
        await client.close()


async def test_max_record_locks_limits_the_in_flight_window() -> None:
    async with EmbeddedBroker(config={"group.share.partition.max.record.locks": 100}) as broker:
        topic_id = await setup(broker, records=150, per_batch=10)
        client = await ShareClient.open(broker, topic_id)
        try:
            assert acquired(await client.fetch(max_records=500)) == [(0, 99, 1)]
            # Window full, nothing to redeliver: no data, no error (after MaxWaitMs).
            response = await client.fetch(max_wait_ms=50)
            assert response.error_code == ErrorCode.NONE and acquired(response) == []
            # Records released inside the window can still be handed out.
            response = await client.fetch(acks={0: [(90, 99, [2])]})
            assert acquired(response) == [(90, 99, 2)]
            # Accepting the head moves SPSO and makes room for 10 new offsets.
            response = await client.fetch(acks={0: [(0, 9, [1])]})
            assert acquired(response) == [(100, 109, 1)]
        finally:
            await client.close()


async def test_long_poll_is_woken_by_produce(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker, records=0)
    client = await ShareClient.open(broker, topic_id)
    try:
        assert acquired(await client.fetch()) == []
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiting = asyncio.ensure_future(client.fetch(max_wait_ms=30_000))
        partition = broker.partition("t", 0)
        async with asyncio.timeout(TIMEOUT):
            while partition.log.listener_count == 0:  # noqa: ASYNC110 - parked fetch, no event
                await asyncio.sleep(0.002)
        producer = await ShareClient.open(broker, topic_id, member="producer")
        try:
            produced = await producer.connection.send(
                ProduceRequest(
                    acks=1,
                    timeout_ms=1000,
                    topic_data=[
                        ProduceRequest.TopicProduceData(
                            name="t",
                            topic_id=topic_id,
                            partition_data=[
                                ProduceRequest.PartitionProduceData(
                                    index=0, records=encode_batch([RecordToWrite(None, b"x")])
                                )
                            ],
                        )
                    ],
                ),
                response_type=ProduceResponse,
            )
            assert produced.responses[0].partition_responses[0].error_code == ErrorCode.NONE
        finally:
            await producer.close()
        response = await waiting
        assert acquired(response) == [(0, 0, 1)]
        assert loop.time() - started < 10
    finally:
        await client.close()


async def test_long_poll_is_woken_by_a_release_of_another_member(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker, records=5)
    first = await ShareClient.open(broker, topic_id, member="m1")
    second = await ShareClient.open(broker, topic_id, member="m2")
    try:
        assert acquired(await first.fetch()) == [(0, 4, 1)]
        assert acquired(await second.fetch()) == []
        waiting = asyncio.ensure_future(second.fetch(max_wait_ms=30_000))
        assert ack_codes(await first.acknowledge({0: [(2, 3, [2])]})) == [ErrorCode.NONE]
        async with asyncio.timeout(TIMEOUT):
            response = await waiting
        assert acquired(response) == [(2, 3, 2)]
    finally:
        await first.close()
        await second.close()


async def test_read_committed_archives_aborted_transactions(broker: EmbeddedBroker) -> None:
    topic_id = await broker.create_topic("t", 1)
    await alter_group_config(
        broker, "g", share_auto_offset_reset="earliest", share_isolation_level="read_committed"
    )
    log = broker.partition("t", 0).log
    now = broker.cluster.now_ms()

    def txn(producer_id: int, record: RecordToWrite, *, control: bool = False, sequence: int = -1) -> bytes:
        return encode_batch(
            [record],
            producer_id=producer_id,
            producer_epoch=0,
            base_sequence=sequence,
            transactional=True,
            is_control=control,
        )

    log.append(txn(1, RecordToWrite(None, b"aborted"), sequence=0), leader_epoch=0, now_ms=now)  # 0
    log.append(txn(2, RecordToWrite(None, b"committed"), sequence=0), leader_epoch=0, now_ms=now)  # 1
    log.append(txn(1, transaction_marker(ControlType.ABORT), control=True), leader_epoch=0, now_ms=now)  # 2
    log.append(encode_batch([RecordToWrite(None, b"plain")]), leader_epoch=0, now_ms=now)  # 3
    client = await ShareClient.open(broker, topic_id)
    try:
        # Producer 2's transaction is open: the LSO is 1. Offset 0 is aborted: archived, not sent.
        response = await client.fetch()
        assert acquired(response) == []
        sp = leader_of(broker).cached(1, "g", broker.partition("t", 0))
        assert sp is not None and sp.start_offset == 1
        log.append(
            txn(2, transaction_marker(ControlType.COMMIT), control=True), leader_epoch=0, now_ms=now
        )  # 4
        response = await client.fetch(max_wait_ms=1000)
        # The committed record, the markers (the client acknowledges them as GAP) and the plain one.
        assert acquired(response) == [(1, 4, 1)]
        assert record_offsets(partition_data(response).records) == [1, 2, 3, 4]
        response = await client.fetch(acks={0: [(1, 4, [1, 0, 1, 0])]})
        assert partition_data(response).acknowledge_error_code == ErrorCode.NONE
        assert sp.start_offset == 5
    finally:
        await client.close()


async def test_min_bytes_waits_for_enough_data_or_max_wait(broker: EmbeddedBroker) -> None:
    topic_id = await setup(broker, records=1)
    client = await ShareClient.open(broker, topic_id)
    other = await ShareClient.open(broker, topic_id, member="m2")
    try:
        loop = asyncio.get_running_loop()
        # Not enough bytes: held for MaxWaitMs, then whatever is there is acquired.
        started = loop.time()
        response = await client.fetch(min_bytes=100_000, max_wait_ms=300)
        assert loop.time() - started >= 0.29
        assert acquired(response) == [(0, 0, 1)]
        # Enough bytes arriving during the wait complete it early.
        waiting = asyncio.ensure_future(other.fetch(min_bytes=1_000, max_wait_ms=30_000))
        log = broker.partition("t", 0).log
        async with asyncio.timeout(TIMEOUT):
            while log.listener_count == 0:  # noqa: ASYNC110 - parked fetch, no event
                await asyncio.sleep(0.002)
        produce(broker, "t", 5)
        # A round trip on another connection lets the woken fetch re-check (and park again).
        barrier = await ShareClient.open(broker, topic_id, member="m3")
        try:
            await barrier.fetch(max_records=0)
        finally:
            await barrier.close()
        assert not waiting.done()
        produce(broker, "t", 100, per_batch=100)
        async with asyncio.timeout(TIMEOUT):
            response = await waiting
        assert offsets(acquired(response)) == list(range(1, 106))
    finally:
        await client.close()
        await other.close()
