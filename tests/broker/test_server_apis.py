"""The non-share APIs over real connections with raw requests: every advertised version,
error answers (leadership, sequences, corrupt data, sizes), admin APIs, coordinators, restarts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from aioshare.broker.cluster import ConfigChange, ResourceType
from aioshare.broker.config import ConfigEntry, ConfigType
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.errors import ErrorCode, InvalidConfigError
from aioshare.protocol.messages import (
    ApiVersionsRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteRecordsRequest,
    DeleteTopicsRequest,
    DescribeClusterRequest,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    FetchResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    IncrementalAlterConfigsRequest,
    InitProducerIdRequest,
    ListOffsetsRequest,
    ListOffsetsResponse,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
    ProduceResponse,
)
from aioshare.protocol.records import (
    ControlType,
    RecordToWrite,
    encode_batch,
    iter_batches,
    transaction_marker,
)
from aioshare.protocol.types import ConfigSource, kafka_uuid_str

from .test_server_frames import RawClient, fetch_request, produce_request, records, wait_until

NOW_ISH = 1_700_000_000_000


def produced(response: ProduceResponse) -> ProduceResponse.PartitionProduceResponse:
    return response.responses[0].partition_responses[0]


def fetched(response: FetchResponse) -> FetchResponse.PartitionData:
    return response.responses[0].partitions[0]


def values(data: bytes | memoryview | None) -> list[bytes | None]:
    return [r.value for view in iter_batches(data or b"") for r in view.records()]


# --------------------------------------------------------------------------- every version


def _requests(broker: EmbeddedBroker, version: int, topic: str, topic_id: uuid.UUID) -> dict[int, ApiMessage]:
    by_id = version >= 13
    produce = produce_request(topic, 0, records(b"x"))
    if by_id:
        produce.topic_data[0].name = ""
        produce.topic_data[0].topic_id = topic_id
    fetch = fetch_request(topic, 0, 0)
    if by_id:
        fetch.topics[0].topic = ""
        fetch.topics[0].topic_id = topic_id
    return {
        0: produce,
        1: fetch,
        2: ListOffsetsRequest(
            replica_id=-1,
            topics=[
                ListOffsetsRequest.ListOffsetsTopic(
                    name=topic,
                    partitions=[ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=-1)],
                )
            ],
        ),
        3: MetadataRequest(
            topics=[
                MetadataRequest.MetadataRequestTopic(name=None, topic_id=topic_id)
                if version >= 12
                else MetadataRequest.MetadataRequestTopic(name=topic)
            ]
        ),
        10: FindCoordinatorRequest(coordinator_keys=["g1", "g2"])
        if version >= 4
        else FindCoordinatorRequest(key="g1"),
        18: ApiVersionsRequest(client_software_name="sweep", client_software_version="1")
        if version >= 3
        else ApiVersionsRequest(),
        19: CreateTopicsRequest(
            topics=[
                CreateTopicsRequest.CreatableTopic(
                    name=f"created-{version}",
                    num_partitions=2,
                    replication_factor=1,
                    configs=[CreateTopicsRequest.CreatableTopicConfig(name="retention.ms", value="1000")],
                )
            ]
        ),
        20: DeleteTopicsRequest(topics=[DeleteTopicsRequest.DeleteTopicState(name=f"doomed-{version}")])
        if version >= 6
        else DeleteTopicsRequest(topic_names=[f"doomed-{version}"]),
        21: DeleteRecordsRequest(
            topics=[
                DeleteRecordsRequest.DeleteRecordsTopic(
                    name=topic,
                    partitions=[DeleteRecordsRequest.DeleteRecordsPartition(partition_index=0, offset=0)],
                )
            ]
        ),
        22: InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=1000),
        32: DescribeConfigsRequest(
            resources=[
                DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=2, resource_name=topic, configuration_keys=None
                ),
                DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=4, resource_name=str(broker.node_ids[0])
                ),
            ],
            include_synonyms=True,
        ),
        37: CreatePartitionsRequest(
            topics=[
                CreatePartitionsRequest.CreatePartitionsTopic(
                    name=topic, count=100 + version, assignments=None
                )
            ]
        ),
        44: IncrementalAlterConfigsRequest(
            resources=[
                IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=2,
                    resource_name=topic,
                    configs=[
                        IncrementalAlterConfigsRequest.AlterableConfig(name="retention.ms", value="5000")
                    ],
                )
            ]
        ),
        60: DescribeClusterRequest(),
    }


@pytest.mark.parametrize("nodes", [1, 3])
async def test_every_advertised_version_answers(nodes: int) -> None:
    """Each version of each API, on the leader and (with 3 nodes) on a non-leader node, so the
    error paths with CurrentLeader/NodeEndpoints are encoded at every version too."""
    async with EmbeddedBroker(nodes=nodes) as broker:
        topic_id = await broker.create_topic("sweep")
        for version in range(0, 20):
            await broker.create_topic(f"doomed-{version}")
        leader = broker.partition("sweep", 0).leader
        targets = [leader, *[n for n in broker.node_ids if n != leader][:1]]
        versions = broker.registry.versions()
        known = _requests(broker, 0, "sweep", topic_id).keys()
        assert set(known) <= set(versions)
        for node_id in targets:
            client = await RawClient.connect(broker, node_id)
            for api_key in known:
                low, high = versions[api_key]
                for version in range(low, high + 1):
                    request = _requests(broker, version, "sweep", topic_id)[api_key]
                    response = await client.request(request, version)
                    assert response.API_KEY == api_key, (api_key, version)
            await client.close()


# --------------------------------------------------------------------------- produce


async def test_produce_assigns_offsets_and_fetch_reads_them() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("t", config={"message.timestamp.type": "LogAppendTime"})
        client = await RawClient.connect(broker)
        first = produced(await client.request(produce_request("t", 0, records(b"a", b"b")), 9))
        second = produced(await client.request(produce_request("t", 0, records(b"c")), 9))
        assert (first.base_offset, second.base_offset) == (0, 2)
        assert first.log_append_time_ms > 0 and first.log_start_offset == 0
        data = fetched(await client.request(fetch_request("t", 0, 1), 12))
        assert data.high_watermark == data.last_stable_offset == 3
        assert values(data.records) == [b"a", b"b", b"c"]
        await client.close()


async def test_produce_errors() -> None:
    async with EmbeddedBroker(config={"auto.create.topics.enable": "false"}) as broker:
        await broker.create_topic("t", config={"max.message.bytes": "200"})
        client = await RawClient.connect(broker)

        async def code(request: ProduceRequest, version: int = 9) -> ErrorCode:
            return ErrorCode(produced(await client.request(request, version)).error_code)

        assert (
            await code(produce_request("missing", 0, records(b"x"))) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        )
        assert await code(produce_request("t", 5, records(b"x"))) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        corrupt = bytearray(records(b"hello"))
        corrupt[-1] ^= 0xFF
        assert await code(produce_request("t", 0, bytes(corrupt))) == ErrorCode.CORRUPT_MESSAGE
        assert await code(produce_request("t", 0, records(b"x" * 300))) == ErrorCode.MESSAGE_TOO_LARGE
        two = records(b"a") + records(b"b")
        assert await code(produce_request("t", 0, two)) == ErrorCode.INVALID_RECORD
        assert await code(produce_request("t", 0, b"")) == ErrorCode.INVALID_RECORD
        assert await code(produce_request("t", 0, records(b"x"), acks=2)) == ErrorCode.INVALID_REQUIRED_ACKS
        future = encode_batch([RecordToWrite(None, b"late", (), 2**50)])
        assert await code(produce_request("t", 0, future)) == ErrorCode.INVALID_TIMESTAMP
        unknown_id = produce_request("", 0, records(b"x"))
        unknown_id.topic_data[0].topic_id = uuid.uuid4()
        assert await code(unknown_id, 13) == ErrorCode.UNKNOWN_TOPIC_ID
        zstd = encode_batch([RecordToWrite(None, b"z" * 50)], compression=4)  # type: ignore[arg-type]
        assert await code(produce_request("t", 0, zstd), 6) == ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
        assert broker.partition("t", 0).log.log_end_offset == 0
        await client.close()


async def test_idempotent_produce_deduplicates_retries() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("t")
        client = await RawClient.connect(broker)
        init = await client.request(InitProducerIdRequest(transactional_id=None), 4)
        assert init.error_code == ErrorCode.NONE and init.producer_id >= 0 and init.producer_epoch == 0
        pid = init.producer_id

        def batch(seq: int, *vals: bytes) -> bytes:
            return encode_batch(
                [RecordToWrite(None, v) for v in vals], producer_id=pid, producer_epoch=0, base_sequence=seq
            )

        assert (
            produced(await client.request(produce_request("t", 0, batch(0, b"a", b"b"), -1), 9)).base_offset
            == 0
        )
        assert produced(await client.request(produce_request("t", 0, batch(2, b"c"), -1), 9)).base_offset == 2
        retry = produced(await client.request(produce_request("t", 0, batch(0, b"a", b"b"), -1), 9))
        assert (retry.error_code, retry.base_offset) == (ErrorCode.NONE, 0)
        gap = produced(await client.request(produce_request("t", 0, batch(7, b"x"), -1), 9))
        assert gap.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert broker.partition("t", 0).log.log_end_offset == 3
        other = await client.request(InitProducerIdRequest(transactional_id=None), 4)
        assert other.producer_id != pid
        txn = await client.request(
            InitProducerIdRequest(transactional_id="tx", transaction_timeout_ms=1000), 4
        )
        assert txn.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE
        await client.close()


# --------------------------------------------------------------------------- leadership


async def test_not_leader_answers_point_at_the_leader() -> None:
    async with EmbeddedBroker(nodes=3) as broker:
        await broker.create_topic("t")
        leader = broker.partition("t", 0).leader
        other = next(n for n in broker.node_ids if n != leader)
        client = await RawClient.connect(broker, other)
        answer = await client.request(produce_request("t", 0, records(b"x")), 10)
        result = produced(answer)
        assert result.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert (result.current_leader.leader_id, result.current_leader.leader_epoch) == (leader, 0)
        assert [(e.node_id, e.port) for e in answer.node_endpoints] == [(leader, broker.address(leader)[1])]
        by_id = fetch_request("", 0, 0)
        by_id.topics[0].topic_id = broker.cluster.topics.get("t").topic_id  # type: ignore[union-attr]
        fetch_answer = await client.request(by_id, 16)
        assert fetched(fetch_answer).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert fetched(fetch_answer).current_leader.leader_id == leader
        assert [e.node_id for e in fetch_answer.node_endpoints] == [leader]

        await broker.move_leader("t", 0, other)
        assert broker.partition("t", 0).leader_epoch == 1
        assert produced(await client.request(produce_request("t", 0, records(b"y")), 10)).error_code == 0
        stale = fetch_request("t", 0, 0)
        stale.topics[0].partitions[0].current_leader_epoch = 0
        assert fetched(await client.request(stale, 12)).error_code == ErrorCode.FENCED_LEADER_EPOCH
        stale.topics[0].partitions[0].current_leader_epoch = 5
        assert fetched(await client.request(stale, 12)).error_code == ErrorCode.UNKNOWN_LEADER_EPOCH
        meta: MetadataResponse = await client.request(MetadataRequest(topics=None), 12)
        part = meta.topics[0].partitions[0]
        assert (part.leader_id, part.leader_epoch) == (other, 1)
        await client.close()


async def test_leader_move_wakes_a_long_poll_with_an_error() -> None:
    async with EmbeddedBroker(nodes=2) as broker:
        await broker.create_topic("t")
        leader = broker.partition("t", 0).leader
        client = await RawClient.connect(broker, leader)
        await client.send(fetch_request("t", 0, 0, max_wait_ms=60_000), 12)
        log = broker.partition("t", 0).log
        await wait_until(lambda: log.listener_count == 1)
        await broker.move_leader("t", 0, next(n for n in broker.node_ids if n != leader))
        _, response = await client.receive()
        assert fetched(response).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        await client.close()


async def test_stop_and_start_node_on_the_same_port() -> None:
    async with EmbeddedBroker(nodes=3, config={"default.replication.factor": 3}) as broker:
        await broker.create_topic("t", partitions=3)
        leaders = {p: broker.partition("t", p).leader for p in range(3)}
        victim = leaders[0]
        port = broker.address(victim)[1]
        await broker.stop_node(victim)
        survivor = next(n for n in broker.node_ids if n != victim)
        client = await RawClient.connect(broker, survivor)
        meta: MetadataResponse = await client.request(MetadataRequest(topics=None), 12)
        assert victim not in [b.node_id for b in meta.brokers]
        for part in meta.topics[0].partitions:
            assert part.leader_id != victim and part.error_code == 0
            assert victim in part.offline_replicas
        moved = [p for p, node in leaders.items() if node == victim]
        assert all(broker.partition("t", p).leader_epoch == 1 for p in moved)
        await broker.start_node(victim)
        assert broker.address(victim)[1] == port
        back = await RawClient.connect(broker, victim)
        assert victim in [b.node_id for b in (await back.request(MetadataRequest(topics=None), 12)).brokers]
        await client.close()
        await back.close()


async def test_single_replica_partition_goes_offline_with_its_node() -> None:
    async with EmbeddedBroker(nodes=2) as broker:
        await broker.create_topic("t", partitions=2)
        victim = broker.partition("t", 0).leader
        await broker.stop_node(victim)
        client = await RawClient.connect(broker, next(n for n in broker.node_ids if n != victim))
        meta: MetadataResponse = await client.request(MetadataRequest(topics=None), 12)
        offline = next(p for p in meta.topics[0].partitions if p.partition_index == 0)
        assert (offline.error_code, offline.leader_id) == (ErrorCode.LEADER_NOT_AVAILABLE, -1)
        await broker.start_node(victim)
        assert broker.partition("t", 0).leader == victim
        await client.close()


# --------------------------------------------------------------------------- metadata


async def test_metadata_auto_creation_and_topic_ids() -> None:
    async with EmbeddedBroker(config={"num.partitions": 4}) as broker:
        client = await RawClient.connect(broker)
        wanted = MetadataRequest(
            topics=[MetadataRequest.MetadataRequestTopic(name="auto")], allow_auto_topic_creation=False
        )
        meta: MetadataResponse = await client.request(wanted, 12)
        assert meta.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        wanted.allow_auto_topic_creation = True
        meta = await client.request(wanted, 12)
        assert meta.topics[0].error_code == 0 and len(meta.topics[0].partitions) == 4
        topic_id = meta.topics[0].topic_id
        by_id = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=None, topic_id=topic_id)])
        assert (await client.request(by_id, 12)).topics[0].name == "auto"
        by_id.topics = [MetadataRequest.MetadataRequestTopic(name=None, topic_id=uuid.uuid4())]
        assert (await client.request(by_id, 12)).topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_ID
        bad = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="bad name!")])
        assert (await client.request(bad, 12)).topics[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
        # Before v4 there is no flag and creation is implied.
        old = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="auto-v1")])
        assert (await client.request(old, 1)).topics[0].error_code == 0
        assert meta.cluster_id == broker.cluster.cluster_id and meta.controller_id == 1
        await client.close()
    async with EmbeddedBroker(config={"auto.create.topics.enable": False}) as broker:
        client = await RawClient.connect(broker)
        wanted = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="auto")])
        assert (await client.request(wanted, 12)).topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        await client.close()


# --------------------------------------------------------------------------- offsets


async def test_list_offsets_and_out_of_range_fetches() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("t")
        client = await RawClient.connect(broker)
        for ts in (1000, 2000, 3000):
            batch = encode_batch([RecordToWrite(None, b"v", (), NOW_ISH + ts)])
            await client.request(produce_request("t", 0, batch), 9)

        async def lookup(timestamp: int) -> tuple[int, int]:
            request = ListOffsetsRequest(
                replica_id=-1,
                topics=[
                    ListOffsetsRequest.ListOffsetsTopic(
                        name="t",
                        partitions=[
                            ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=timestamp)
                        ],
                    )
                ],
            )
            response: ListOffsetsResponse = await client.request(request, 8)
            result = response.topics[0].partitions[0]
            assert result.error_code == 0
            return result.offset, result.timestamp

        assert await lookup(-2) == (0, -1)
        assert await lookup(-1) == (3, -1)
        assert await lookup(-3) == (2, NOW_ISH + 3000)
        assert await lookup(NOW_ISH + 1500) == (1, NOW_ISH + 2000)
        assert await lookup(NOW_ISH + 9999) == (-1, -1)
        delete = DeleteRecordsRequest(
            topics=[
                DeleteRecordsRequest.DeleteRecordsTopic(
                    name="t",
                    partitions=[DeleteRecordsRequest.DeleteRecordsPartition(partition_index=0, offset=2)],
                )
            ]
        )
        result = (await client.request(delete, 2)).topics[0].partitions[0]
        assert (result.error_code, result.low_watermark) == (0, 2)
        assert await lookup(-2) == (2, -1)
        gone = fetched(await client.request(fetch_request("t", 0, 0), 12))
        assert (gone.error_code, gone.log_start_offset, gone.high_watermark) == (
            ErrorCode.OFFSET_OUT_OF_RANGE,
            2,
            3,
        )
        past = fetched(await client.request(fetch_request("t", 0, 9), 12))
        assert past.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
        delete.topics[0].partitions[0].offset = 10
        assert (await client.request(delete, 2)).topics[0].partitions[
            0
        ].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
        await client.close()


async def test_fetch_sessions_are_answered_sessionless() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("t")
        client = await RawClient.connect(broker)
        full = fetch_request("t", 0, 0)
        full.session_epoch = 0
        response: FetchResponse = await client.request(full, 12)
        assert (response.error_code, response.session_id) == (0, 0)
        incremental = fetch_request("t", 0, 0)
        incremental.session_id, incremental.session_epoch = 77, 1
        response = await client.request(incremental, 12)
        assert response.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        await client.close()


# --------------------------------------------------------------------------- coordinators


async def test_find_coordinator_keys() -> None:
    async with EmbeddedBroker(nodes=3) as broker:
        topic_id = await broker.create_topic("t", partitions=2)
        client = await RawClient.connect(broker)
        groups = [f"group-{i}" for i in range(12)]
        batched: FindCoordinatorResponse = await client.request(
            FindCoordinatorRequest(coordinator_keys=groups), 4
        )
        nodes = {c.key: c.node_id for c in batched.coordinators}
        assert set(nodes.values()) == set(broker.node_ids)  # groups spread over the nodes
        single: FindCoordinatorResponse = await client.request(FindCoordinatorRequest(key="group-3"), 3)
        assert single.node_id == nodes["group-3"] and single.port == broker.address(single.node_id)[1]
        assert broker.cluster.group_coordinator("group-3").node_id == nodes["group-3"]  # type: ignore[union-attr]

        share_key = f"g:{kafka_uuid_str(topic_id)}:1"
        share = await client.request(
            FindCoordinatorRequest(key_type=2, coordinator_keys=[share_key, "nope"]), 6
        )
        assert share.coordinators[0].node_id == broker.partition("t", 1).leader
        assert share.coordinators[1].error_code == ErrorCode.INVALID_REQUEST
        txn = await client.request(FindCoordinatorRequest(key_type=1, coordinator_keys=["tx"]), 4)
        assert txn.coordinators[0].error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE
        old_share = await client.request(FindCoordinatorRequest(key_type=2, coordinator_keys=[share_key]), 5)
        assert old_share.coordinators[0].error_code == ErrorCode.INVALID_REQUEST

        # When the coordinator's node stops, another live node takes the group over.
        await client.close()
        await broker.stop_node(nodes["group-3"])
        client = await RawClient.connect(broker, next(n for n in broker.node_ids if n != nodes["group-3"]))
        moved: FindCoordinatorResponse = await client.request(FindCoordinatorRequest(key="group-3"), 3)
        assert moved.error_code == 0 and moved.node_id not in (nodes["group-3"], -1)
        await client.close()


# --------------------------------------------------------------------------- admin


async def test_create_topics_validation() -> None:
    async with EmbeddedBroker(nodes=2) as broker:
        await broker.create_topic("exists")
        client = await RawClient.connect(broker)

        def topic(
            name: str, partitions: int = 1, factor: int = 1, **configs: str
        ) -> CreateTopicsRequest.CreatableTopic:
            return CreateTopicsRequest.CreatableTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=factor,
                configs=[
                    CreateTopicsRequest.CreatableTopicConfig(name=k.replace("_", "."), value=v)
                    for k, v in configs.items()
                ],
            )

        request = CreateTopicsRequest(
            topics=[
                topic("ok", 3, 2, retention_ms="1000"),
                topic("exists"),
                topic("bad/name"),
                topic("zero", 0),
                topic("too-many-replicas", 1, 3),
                topic("bad-config", 1, 1, retention_ms="soon"),
                topic("unknown-config", 1, 1, no_such_thing="1"),
                topic("dup"),
                topic("dup"),
            ],
            validate_only=True,
        )
        response: CreateTopicsResponse = await client.request(request, 7)
        codes = {r.name: r.error_code for r in response.topics}
        assert codes == {
            "ok": 0,
            "exists": ErrorCode.TOPIC_ALREADY_EXISTS,
            "bad/name": ErrorCode.INVALID_TOPIC_EXCEPTION,
            "zero": ErrorCode.INVALID_PARTITIONS,
            "too-many-replicas": ErrorCode.INVALID_REPLICATION_FACTOR,
            "bad-config": ErrorCode.INVALID_CONFIG,
            "unknown-config": ErrorCode.INVALID_CONFIG,
            "dup": ErrorCode.INVALID_REQUEST,
        }
        ok = response.topics[0]
        assert (ok.num_partitions, ok.replication_factor) == (3, 2)
        assert {c.name: c.value for c in ok.configs or []}["retention.ms"] == "1000"
        assert broker.cluster.topics.get("ok") is None  # validate_only
        request.validate_only = False
        request.topics = request.topics[:1]
        created = (await client.request(request, 7)).topics[0]
        assert created.error_code == 0 and created.topic_id == broker.cluster.topics.get("ok").topic_id  # type: ignore[union-attr]
        assert [len(p.replicas) for p in broker.cluster.topics.get("ok").partitions] == [2, 2, 2]  # type: ignore[union-attr]
        await client.close()


async def test_delete_topics_and_create_partitions() -> None:
    async with EmbeddedBroker() as broker:
        a_id = await broker.create_topic("a")
        await broker.create_topic("b")
        client = await RawClient.connect(broker)
        by_id = DeleteTopicsRequest(
            topics=[
                DeleteTopicsRequest.DeleteTopicState(name=None, topic_id=a_id),
                DeleteTopicsRequest.DeleteTopicState(name=None, topic_id=uuid.uuid4()),
                DeleteTopicsRequest.DeleteTopicState(name="missing"),
            ]
        )
        results = (await client.request(by_id, 6)).responses
        assert [(r.name, r.error_code) for r in results] == [
            ("a", 0),
            (None, ErrorCode.UNKNOWN_TOPIC_ID),
            ("missing", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ]
        assert broker.cluster.topics.by_id(a_id) is None
        grow = CreatePartitionsRequest(
            topics=[
                CreatePartitionsRequest.CreatePartitionsTopic(name="b", count=3, assignments=None),
                CreatePartitionsRequest.CreatePartitionsTopic(name="a", count=3, assignments=None),
            ]
        )
        results = (await client.request(grow, 3)).results
        assert [(r.name, r.error_code) for r in results] == [
            ("b", 0),
            ("a", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ]
        assert len(broker.cluster.topics.get("b").partitions) == 3  # type: ignore[union-attr]
        shrink = CreatePartitionsRequest(
            topics=[CreatePartitionsRequest.CreatePartitionsTopic(name="b", count=2)]
        )
        assert (await client.request(shrink, 3)).results[0].error_code == ErrorCode.INVALID_PARTITIONS
        by_name = DeleteTopicsRequest(topic_names=["b"])
        assert (await client.request(by_name, 4)).responses[0].error_code == 0
        await client.close()


def _config_request(resource_type: int, name: str, keys: list[str] | None) -> DescribeConfigsRequest:
    return DescribeConfigsRequest(
        resources=[
            DescribeConfigsRequest.DescribeConfigsResource(
                resource_type=resource_type, resource_name=name, configuration_keys=keys
            )
        ],
        include_synonyms=True,
    )


async def test_topic_and_broker_configs() -> None:
    async with EmbeddedBroker(config={"message.max.bytes": 5000}) as broker:
        await broker.create_topic("t", config={"cleanup.policy": "compact"})
        client = await RawClient.connect(broker)
        described: DescribeConfigsResponse = await client.request(_config_request(2, "t", None), 4)
        rows = {c.name: c for c in described.results[0].configs}
        assert (
            rows["cleanup.policy"].value == "compact"
            and rows["cleanup.policy"].config_source == ConfigSource.TOPIC_CONFIG
        )
        assert (
            rows["retention.ms"].value == "604800000"
            and rows["retention.ms"].config_source == ConfigSource.DEFAULT_CONFIG
        )
        limit = rows["max.message.bytes"]
        assert (limit.value, limit.config_source) == ("5000", ConfigSource.STATIC_BROKER_CONFIG)
        assert [s.name for s in limit.synonyms] == ["message.max.bytes", "message.max.bytes"]
        assert limit.config_type == ConfigType.INT

        alter = IncrementalAlterConfigsRequest(
            resources=[
                IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=2,
                    resource_name="t",
                    configs=[
                        IncrementalAlterConfigsRequest.AlterableConfig(
                            name="retention.ms", config_operation=0, value="99"
                        ),
                        IncrementalAlterConfigsRequest.AlterableConfig(
                            name="cleanup.policy", config_operation=2, value="delete"
                        ),
                    ],
                ),
                IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=2,
                    resource_name="missing",
                    configs=[IncrementalAlterConfigsRequest.AlterableConfig(name="retention.ms", value="1")],
                ),
                IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=4,
                    resource_name="",
                    configs=[
                        IncrementalAlterConfigsRequest.AlterableConfig(name="num.partitions", value="3")
                    ],
                ),
            ]
        )
        codes = [r.error_code for r in (await client.request(alter, 1)).responses]
        assert codes == [0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.INVALID_CONFIG]
        topic = broker.cluster.topics.get("t")
        assert topic is not None
        assert topic.config("retention.ms") == "99" and topic.config("cleanup.policy") == "compact,delete"
        bad = IncrementalAlterConfigsRequest(
            resources=[
                IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=2,
                    resource_name="t",
                    configs=[
                        IncrementalAlterConfigsRequest.AlterableConfig(
                            name="retention.ms", config_operation=2, value="1"
                        )
                    ],
                )
            ]
        )
        assert (await client.request(bad, 1)).responses[0].error_code == ErrorCode.INVALID_CONFIG
        delete = IncrementalAlterConfigsRequest(
            resources=[
                IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=2,
                    resource_name="t",
                    configs=[
                        IncrementalAlterConfigsRequest.AlterableConfig(
                            name="retention.ms", config_operation=1
                        )
                    ],
                )
            ]
        )
        assert (await client.request(delete, 1)).responses[0].error_code == 0
        assert topic.config("retention.ms") == "604800000"

        node = str(broker.node_ids[0])
        broker_rows = (
            await client.request(_config_request(4, node, ["message.max.bytes", "num.partitions"]), 4)
        ).results[0]
        assert {c.name: (c.value, c.config_source, c.read_only) for c in broker_rows.configs} == {
            "message.max.bytes": ("5000", ConfigSource.STATIC_BROKER_CONFIG, True),
            "num.partitions": ("1", ConfigSource.DEFAULT_CONFIG, True),
        }
        wrong = (await client.request(_config_request(4, "42", None), 4)).results[0]
        assert wrong.error_code == ErrorCode.INVALID_REQUEST
        missing = (await client.request(_config_request(2, "missing", None), 4)).results[0]
        assert missing.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        group = (await client.request(_config_request(32, "g", None), 4)).results[0]
        # GROUP resources exist whether or not the group does, with the broker's defaults.
        assert group.error_code == 0
        lock = {c.name: c.value for c in group.configs}["share.record.lock.duration.ms"]
        assert lock == "30000"
        await client.close()


class FakeGroupConfigs:
    """Stands in for the share step's GROUP resource handler."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, str]] = {}

    def describe(self, resource_name: str, names: Sequence[str] | None) -> list[ConfigEntry]:
        stored = self.values.get(resource_name, {})
        return [
            ConfigEntry(
                name=name,
                value=value,
                is_default=False,
                read_only=False,
                source=ConfigSource.GROUP_CONFIG,
                config_type=ConfigType.STRING,
            )
            for name, value in stored.items()
            if names is None or name in names
        ]

    def alter(self, resource_name: str, changes: Sequence[ConfigChange], validate_only: bool) -> None:
        for change in changes:
            if not change.name.startswith("share."):
                raise InvalidConfigError(f"Unknown group config name: {change.name}")
        if not validate_only:
            stored = self.values.setdefault(resource_name, {})
            for change in changes:
                stored[change.name] = change.value or ""


async def test_group_config_resources_go_to_the_plugged_in_handler() -> None:
    async with EmbeddedBroker() as broker:
        handler = FakeGroupConfigs()
        broker.cluster.config_resources[ResourceType.GROUP] = handler
        client = await RawClient.connect(broker)

        def alter(name: str, value: str) -> IncrementalAlterConfigsRequest:
            return IncrementalAlterConfigsRequest(
                resources=[
                    IncrementalAlterConfigsRequest.AlterConfigsResource(
                        resource_type=32,
                        resource_name="g",
                        configs=[IncrementalAlterConfigsRequest.AlterableConfig(name=name, value=value)],
                    )
                ]
            )

        assert (await client.request(alter("share.auto.offset.reset", "earliest"), 1)).responses[
            0
        ].error_code == 0
        failed = (await client.request(alter("bogus", "1"), 1)).responses[0]
        assert (failed.error_code, failed.error_message) == (
            ErrorCode.INVALID_CONFIG,
            "Unknown group config name: bogus",
        )
        rows = (await client.request(_config_request(32, "g", None), 4)).results[0].configs
        assert [(r.name, r.value, r.config_source) for r in rows] == [
            ("share.auto.offset.reset", "earliest", ConfigSource.GROUP_CONFIG)
        ]
        await client.close()


# --------------------------------------------------------------------------- persistence


async def test_data_dir_survives_a_restart(tmp_path: Path) -> None:
    async with EmbeddedBroker(nodes=2, data_dir=tmp_path) as broker:
        topic_id = await broker.create_topic("kept", partitions=2, config={"retention.ms": "123456789"})
        await broker.move_leader("kept", 1, 2)
        cluster_id = broker.cluster.cluster_id
        client = await RawClient.connect(broker, broker.partition("kept", 0).leader)
        for value in (b"one", b"two"):
            assert (
                produced(await client.request(produce_request("kept", 0, records(value)), 9)).error_code == 0
            )
        pid = (await client.request(InitProducerIdRequest(transactional_id=None), 4)).producer_id
        await client.close()
    async with EmbeddedBroker(nodes=2, data_dir=tmp_path) as broker:
        assert broker.cluster.cluster_id == cluster_id
        topic = broker.cluster.topics.get("kept")
        assert (
            topic is not None and topic.topic_id == topic_id and topic.config("retention.ms") == "123456789"
        )
        assert (broker.partition("kept", 1).leader, broker.partition("kept", 1).leader_epoch) == (2, 1)
        client = await RawClient.connect(broker, broker.partition("kept", 0).leader)
        data = fetched(await client.request(fetch_request("kept", 0, 0), 12))
        assert values(data.records) == [b"one", b"two"]
        assert (
            produced(await client.request(produce_request("kept", 0, records(b"three")), 9)).base_offset == 2
        )
        assert (await client.request(InitProducerIdRequest(transactional_id=None), 4)).producer_id > pid
        await client.close()


async def test_invalid_broker_config_is_rejected_up_front() -> None:
    from aioshare.broker.config import InvalidBrokerConfig

    with pytest.raises(InvalidBrokerConfig):
        EmbeddedBroker(config={"num.partitions": 0})
    with pytest.raises(InvalidBrokerConfig):
        EmbeddedBroker(config={"no.such.config": 1})


# --------------------------------------------------------------------------- transactions


def transactional(pid: int, seq: int, *vals: bytes) -> bytes:
    return encode_batch(
        [RecordToWrite(None, v) for v in vals],
        producer_id=pid,
        producer_epoch=0,
        base_sequence=seq,
        transactional=True,
    )


def end_marker(pid: int, control: ControlType) -> bytes:
    return encode_batch(
        [transaction_marker(control)], is_control=True, transactional=True, producer_id=pid, producer_epoch=0
    )


async def test_read_committed_fetch_and_list_offsets() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("t")
        client = await RawClient.connect(broker)
        assert (
            produced(
                await client.request(produce_request("t", 0, transactional(50, 0, b"t1", b"t2")), 9)
            ).error_code
            == 0
        )
        assert produced(await client.request(produce_request("t", 0, records(b"plain")), 9)).base_offset == 2
        committed = fetch_request("t", 0, 0)
        committed.isolation_level = 1
        part = fetched(await client.request(committed, 12))
        assert (part.high_watermark, part.last_stable_offset, part.records) == (3, 0, b"")
        assert part.aborted_transactions == []

        async def latest(isolation: int) -> int:
            request = ListOffsetsRequest(
                replica_id=-1,
                isolation_level=isolation,
                topics=[
                    ListOffsetsRequest.ListOffsetsTopic(
                        name="t",
                        partitions=[ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=-1)],
                    )
                ],
            )
            response: ListOffsetsResponse = await client.request(request, 5)
            return response.topics[0].partitions[0].offset

        assert (await latest(0), await latest(1)) == (3, 0)
        # No transaction coordinator writes markers here; the log accepts them directly.
        log = broker.partition("t", 0).log
        log.append(end_marker(50, ControlType.ABORT), leader_epoch=0, now_ms=NOW_ISH)
        part = fetched(await client.request(committed, 12))
        assert part.last_stable_offset == 4
        assert values(part.records) == [b"t1", b"t2", b"plain", b"\x00\x00\x00\x00\x00\x00"]
        assert [(t.producer_id, t.first_offset) for t in part.aborted_transactions or []] == [(50, 0)]
        uncommitted = fetched(await client.request(fetch_request("t", 0, 0), 12))
        assert uncommitted.aborted_transactions is None
        assert await latest(1) == 4
        await client.close()
