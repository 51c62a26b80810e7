"""Fetch (1): reads from partition logs with MaxWaitMs long polling woken by appends.

Fetch sessions (KIP-227) are implemented minimally, which the protocol allows: every full
request (epoch 0 or -1) is served sessionless and answered with SessionId 0, which tells the
client to keep sending full requests; an incremental request (epoch > 0) for a session id we
never handed out gets FETCH_SESSION_ID_NOT_FOUND, after which clients fall back to full ones.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from aioshare.broker.apis._common import LeaderHints, leader_error
from aioshare.broker.cluster import Cluster, wait_for_change
from aioshare.broker.log import PartitionLog
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.broker.topics import Partition
from aioshare.protocol.errors import BrokerError, ErrorCode
from aioshare.protocol.messages import FetchRequest, FetchResponse

API_KEY = 1
READ_COMMITTED = 1
_SESSION_FULL_EPOCHS = (0, -1)

PartitionData = FetchResponse.PartitionData


class _Attempt(NamedTuple):
    response: FetchResponse
    bytes_read: int
    has_error: bool
    logs: list[PartitionLog]


def register(registry: ApiRegistry, cluster: Cluster) -> None:
    async def fetch(context: RequestContext, request: FetchRequest) -> FetchResponse:
        return await handle(cluster, context, request)

    registry.register(API_KEY, fetch)


async def handle(cluster: Cluster, context: RequestContext, request: FetchRequest) -> FetchResponse:
    version = context.api_version
    if version >= 7 and request.session_epoch not in _SESSION_FULL_EPOCHS:
        return FetchResponse(error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0, request.max_wait_ms) / 1000
    while True:
        attempt = _read(cluster, context, request)
        # DelayedFetch completes at once on errors, on enough data, or without a wait time.
        if attempt.has_error or attempt.bytes_read >= request.min_bytes or not attempt.logs:
            return attempt.response
        remaining = deadline - loop.time()
        if remaining <= 0:
            return attempt.response
        await wait_for_change(attempt.logs, remaining)


def _read(cluster: Cluster, context: RequestContext, request: FetchRequest) -> _Attempt:
    version = context.api_version
    read_committed = request.isolation_level == READ_COMMITTED
    hints = LeaderHints(cluster)
    # The broker's fetch.max.bytes caps what a client may ask for (KafkaApis.handleFetchRequest).
    remaining = min(request.max_bytes, cluster.config.fetch_max_bytes)
    # KIP-74: the first non-empty partition may exceed the limits by one batch, so a consumer
    # can always make progress whatever max bytes it asked for.
    min_one = True
    bytes_read = 0
    has_error = False
    logs: list[PartitionLog] = []
    responses = []
    for wanted in request.topics:
        if version >= 13:
            topic = cluster.topics.by_id(wanted.topic_id)
            unknown = ErrorCode.UNKNOWN_TOPIC_ID
        else:
            topic = cluster.topics.get(wanted.topic)
            unknown = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        results = []
        for asked in wanted.partitions:
            partition = topic.partition(asked.partition) if topic is not None else None
            if partition is None:
                code = unknown if topic is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                results.append(_error(asked.partition, code))
                has_error = True
                continue
            epoch = asked.current_leader_epoch if version >= 9 else -1
            error = leader_error(partition, context.node_id, epoch)
            if error:
                result = _error(asked.partition, error)
                if version >= 12:
                    result.current_leader = FetchResponse.LeaderIdAndEpoch(
                        leader_id=partition.leader, leader_epoch=partition.leader_epoch
                    )
                if error == ErrorCode.NOT_LEADER_OR_FOLLOWER:
                    hints.add(partition)
                results.append(result)
                has_error = True
                continue
            limit = max(0, min(asked.partition_max_bytes, remaining))
            result = _read_partition(partition, asked.fetch_offset, limit, read_committed, min_one)
            if result.error_code:
                has_error = True
            size = len(result.records or b"")
            if size:
                min_one = False
                remaining = max(0, remaining - size)
                bytes_read += size
            logs.append(partition.log)
            results.append(result)
        response_topic = FetchResponse.FetchableTopicResponse(partitions=results)
        if version >= 13:
            response_topic.topic_id = wanted.topic_id
        else:
            response_topic.topic = wanted.topic
        responses.append(response_topic)
    response = FetchResponse(responses=responses)
    if version >= 16:
        response.node_endpoints = [
            FetchResponse.NodeEndpoint(node_id=node.node_id, host=node.host, port=node.port, rack=node.rack)
            for node in hints.endpoints()
        ]
    return _Attempt(response, bytes_read, has_error, logs)


def _read_partition(
    partition: Partition, offset: int, max_bytes: int, read_committed: bool, min_one: bool
) -> PartitionData:
    log = partition.log
    result = PartitionData(
        partition_index=partition.index,
        high_watermark=log.high_watermark,
        last_stable_offset=log.last_stable_offset,
        log_start_offset=log.log_start_offset,
        aborted_transactions=None,
        records=b"",
    )
    upper_bound = log.upper_bound(read_committed)
    try:
        read = log.read(offset, max_bytes, upper_bound=upper_bound, min_one=min_one)
    except BrokerError as exc:
        result.error_code = exc.code
        return result
    result.records = read.records
    if read_committed:
        end = read.batches[-1].next_offset if read.batches else offset
        result.aborted_transactions = [
            FetchResponse.AbortedTransaction(producer_id=txn.producer_id, first_offset=txn.first_offset)
            for txn in log.aborted_transactions(offset, end)
        ]
    return result


def _error(index: int, code: ErrorCode) -> PartitionData:
    return PartitionData(
        partition_index=index,
        error_code=code,
        high_watermark=-1,
        last_stable_offset=-1,
        log_start_offset=-1,
        aborted_transactions=None,
        records=b"",
    )
