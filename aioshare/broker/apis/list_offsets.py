"""ListOffsets (2): earliest, latest, max timestamp and by-timestamp lookups."""

from __future__ import annotations

from aioshare.broker.apis._common import leader_error
from aioshare.broker.cluster import Cluster
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.broker.topics import Partition
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import ListOffsetsRequest, ListOffsetsResponse

API_KEY = 2
LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5
EARLIEST_PENDING_UPLOAD = -6
READ_COMMITTED = 1

PartitionResult = ListOffsetsResponse.ListOffsetsPartitionResponse


def register(registry: ApiRegistry, cluster: Cluster) -> None:
    async def list_offsets(context: RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse:
        return handle(cluster, context, request)

    registry.register(API_KEY, list_offsets)


def handle(cluster: Cluster, context: RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse:
    version = context.api_version
    read_committed = version >= 2 and request.isolation_level == READ_COMMITTED
    topics = []
    for wanted in request.topics:
        topic = cluster.topics.get(wanted.name)
        results = []
        for asked in wanted.partitions:
            partition = topic.partition(asked.partition_index) if topic is not None else None
            if partition is None:
                result = PartitionResult(
                    partition_index=asked.partition_index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                )
            else:
                epoch = asked.current_leader_epoch if version >= 4 else -1
                error = leader_error(partition, context.node_id, epoch)
                if error:
                    result = PartitionResult(partition_index=asked.partition_index, error_code=error)
                else:
                    result = lookup(partition, asked.timestamp, read_committed)
            if version < 4:
                result.leader_epoch = -1
            results.append(result)
        topics.append(ListOffsetsResponse.ListOffsetsTopicResponse(name=wanted.name, partitions=results))
    return ListOffsetsResponse(topics=topics)


def lookup(partition: Partition, timestamp: int, read_committed: bool) -> PartitionResult:
    log = partition.log
    result = PartitionResult(partition_index=partition.index)
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        result.offset = log.log_start_offset
        result.leader_epoch = log.leader_epoch_for(log.log_start_offset)
        if result.leader_epoch < 0:
            result.leader_epoch = partition.leader_epoch
    elif timestamp == LATEST:
        result.offset = log.upper_bound(read_committed)
        result.leader_epoch = partition.leader_epoch
    elif timestamp == MAX_TIMESTAMP:
        result.offset, result.timestamp = log.max_timestamp()
        result.leader_epoch = log.leader_epoch_for(result.offset) if result.offset >= 0 else -1
    elif timestamp >= 0:
        found = log.offset_for_timestamp(timestamp)
        # Data past the last stable offset is invisible to read_committed consumers.
        if found is not None and not (read_committed and found[0] >= log.last_stable_offset):
            result.offset, result.timestamp = found
            result.leader_epoch = log.leader_epoch_for(found[0])
    # LATEST_TIERED, EARLIEST_PENDING_UPLOAD: no tiered storage, so no such offset (-1).
    return result
