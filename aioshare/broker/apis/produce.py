"""Produce (0) and InitProducerId (22).

Per-partition validation follows Kafka's ProduceRequest.validateRecords and LogValidator:
exactly one magic-v2 batch per partition (INVALID_RECORD otherwise), ZStandard only from v7
(UNSUPPORTED_COMPRESSION_TYPE), batch CRC (CORRUPT_MESSAGE), batch size against the topic's
max.message.bytes (MESSAGE_TOO_LARGE), CreateTime timestamps within
message.timestamp.{before,after}.max.ms (INVALID_TIMESTAMP), no client-written control batches.
Sequence checks of idempotent producers live in the partition log.

Produce to an unknown topic answers UNKNOWN_TOPIC_OR_PARTITION as Kafka does: topics are
auto-created by the Metadata request every producer sends before producing.
"""

from __future__ import annotations

from aioshare.broker.apis._common import LeaderHints, leader_error, live_replicas
from aioshare.broker.cluster import Cluster
from aioshare.broker.server import ApiRegistry, CloseConnection, RequestContext
from aioshare.broker.topics import Partition, Topic
from aioshare.protocol.errors import BrokerError, ErrorCode
from aioshare.protocol.messages import (
    InitProducerIdRequest,
    InitProducerIdResponse,
    ProduceRequest,
    ProduceResponse,
)
from aioshare.protocol.records import Compression, RecordBatchView, TimestampType, iter_batches

PRODUCE = 0
INIT_PRODUCER_ID = 22
_MAGIC_AT = 16

PartitionResult = ProduceResponse.PartitionProduceResponse


class _Rejected(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def register(registry: ApiRegistry, cluster: Cluster) -> None:
    async def produce(context: RequestContext, request: ProduceRequest) -> ProduceResponse | None:
        return handle_produce(cluster, context, request)

    async def init_producer_id(
        context: RequestContext, request: InitProducerIdRequest
    ) -> InitProducerIdResponse:
        if request.transactional_id is not None:
            # No transaction coordinator (see coordinator.py): a transactional producer cannot
            # be initialised, as with a broker whose __transaction_state is unavailable.
            return InitProducerIdResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE)
        # Without a transactional id Kafka always hands out a fresh producer id at epoch 0,
        # also when the client asks to bump the epoch of its current one (KIP-360).
        return InitProducerIdResponse(producer_id=cluster.allocate_producer_id(), producer_epoch=0)

    registry.register(PRODUCE, produce)
    registry.register(INIT_PRODUCER_ID, init_producer_id)


def handle_produce(
    cluster: Cluster, context: RequestContext, request: ProduceRequest
) -> ProduceResponse | None:
    version = context.api_version
    hints = LeaderHints(cluster)
    failures: list[str] = []
    responses = []
    for topic_data in request.topic_data:
        topic = (
            cluster.topics.by_id(topic_data.topic_id)
            if version >= 13
            else cluster.topics.get(topic_data.name)
        )
        unknown = ErrorCode.UNKNOWN_TOPIC_ID if version >= 13 else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        results = []
        for data in topic_data.partition_data:
            partition = topic.partition(data.index) if topic is not None else None
            try:
                if request.acks not in (0, 1, -1):
                    raise _Rejected(ErrorCode.INVALID_REQUIRED_ACKS, "Invalid required acks")
                if topic is None or partition is None:
                    raise _Rejected(
                        unknown if topic is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        "This server does not host this topic-partition.",
                    )
                result = _append(cluster, context, request.acks, topic, partition, data.records)
            except _Rejected as rejected:
                result = PartitionResult(
                    index=data.index, error_code=rejected.code, base_offset=-1, log_start_offset=-1
                )
                if version >= 8:
                    result.error_message = rejected.message
                if (
                    rejected.code == ErrorCode.NOT_LEADER_OR_FOLLOWER
                    and partition is not None
                    and version >= 10
                ):
                    result.current_leader = ProduceResponse.LeaderIdAndEpoch(
                        leader_id=partition.leader, leader_epoch=partition.leader_epoch
                    )
                    hints.add(partition)
                failures.append(
                    f"{topic_data.name or topic_data.topic_id}-{data.index}: {rejected.code.name}"
                )
            if version < 5:
                result.log_start_offset = -1
            results.append(result)
        response_topic = ProduceResponse.TopicProduceResponse(partition_responses=results)
        if version >= 13:
            response_topic.topic_id = topic_data.topic_id
        else:
            response_topic.name = topic_data.name
        responses.append(response_topic)
    if request.acks == 0:
        # No response for acks=0. On failure Kafka closes the connection: the producer's only
        # way to learn that something went wrong.
        if failures:
            raise CloseConnection(f"acks=0 produce failed: {', '.join(failures)}")
        return None
    response = ProduceResponse(responses=responses)
    if version >= 10:
        response.node_endpoints = [
            ProduceResponse.NodeEndpoint(node_id=node.node_id, host=node.host, port=node.port, rack=node.rack)
            for node in hints.endpoints()
        ]
    return response


def _append(
    cluster: Cluster,
    context: RequestContext,
    acks: int,
    topic: Topic,
    partition: Partition,
    records: bytes | memoryview | None,
) -> PartitionResult:
    error = leader_error(partition, context.node_id)
    if error:
        raise _Rejected(error, f"This server is not the leader for {topic.name}-{partition.index}.")
    batch = _single_batch(context.api_version, records)
    max_bytes = topic.int_config("max.message.bytes")
    if batch.size > max_bytes:
        raise _Rejected(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"The record batch size in the append to {topic.name}-{partition.index} is {batch.size} bytes "
            f"which exceeds the maximum configured value of {max_bytes}.",
        )
    try:
        batch.validate()
    except BrokerError as exc:
        raise _Rejected(ErrorCode.CORRUPT_MESSAGE, exc.message) from None
    if batch.is_control:
        raise _Rejected(ErrorCode.INVALID_RECORD, "Clients are not allowed to write control records")
    now = cluster.now_ms()
    log_append_time = topic.config("message.timestamp.type") == "LogAppendTime"
    if not log_append_time:
        _check_timestamps(topic, batch, now)
    if acks == -1 and len(live_replicas(cluster, partition.replicas)) < topic.int_config(
        "min.insync.replicas"
    ):
        raise _Rejected(
            ErrorCode.NOT_ENOUGH_REPLICAS,
            f"The size of the current ISR is insufficient to satisfy the min.isr requirement of "
            f"{topic.int_config('min.insync.replicas')} for partition {topic.name}-{partition.index}",
        )
    try:
        appended = partition.log.append(
            batch.raw, leader_epoch=partition.leader_epoch, now_ms=now, log_append_time=log_append_time
        )
    except BrokerError as exc:
        raise _Rejected(ErrorCode(exc.code), exc.message) from None
    return PartitionResult(
        index=partition.index,
        base_offset=appended.base_offset,
        log_append_time_ms=appended.log_append_time,
        log_start_offset=appended.log_start_offset,
    )


def _single_batch(version: int, records: bytes | memoryview | None) -> RecordBatchView:
    if not records:
        raise _Rejected(
            ErrorCode.INVALID_RECORD,
            f"Produce requests with version {version} must have at least one record batch per partition",
        )
    if len(records) > _MAGIC_AT and records[_MAGIC_AT] != 2:
        raise _Rejected(
            ErrorCode.INVALID_RECORD,
            f"Produce requests with version {version} are only allowed to contain record batches with magic version 2",
        )
    try:
        batches = list(iter_batches(records, strict=True))
    except BrokerError as exc:
        raise _Rejected(ErrorCode.CORRUPT_MESSAGE, exc.message) from None
    if not batches:
        raise _Rejected(ErrorCode.CORRUPT_MESSAGE, "Record batch is incomplete")
    if len(batches) > 1:
        raise _Rejected(
            ErrorCode.INVALID_RECORD,
            f"Produce requests with version {version} are only allowed to contain exactly one record batch per partition",
        )
    batch = batches[0]
    if version < 7 and batch.compression == Compression.ZSTD:
        raise _Rejected(
            ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
            f"Produce requests with version {version} are not allowed to use ZStandard compression",
        )
    return batch


def _check_timestamps(topic: Topic, batch: RecordBatchView, now: int) -> None:
    if batch.timestamp_type != TimestampType.CREATE_TIME:
        return
    before = topic.int_config("message.timestamp.before.max.ms")
    after = topic.int_config("message.timestamp.after.max.ms")
    # Only the batch header is read: first and max timestamps bound the records in practice.
    for timestamp in (batch.first_timestamp, batch.max_timestamp):
        if timestamp < 0:
            continue
        if now - timestamp > before or timestamp - now > after:
            raise _Rejected(
                ErrorCode.INVALID_TIMESTAMP,
                f"Timestamp {timestamp} of message with offset 0 is out of range. The timestamp should be "
                f"within [{now - before if before < now else 0}, {now + after}]",
            )
