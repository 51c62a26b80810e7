"""ShareFetch (78) v1-2: share sessions, piggy-backed acknowledgements, acquisition, long polling.

Processing order (KafkaApis.handleShareFetchRequest): null group id, or a member id that is
empty or longer than 36 characters → INVALID_REQUEST; a renew request (v2 IsRenewAck) must
carry zero MaxBytes, MinBytes, MaxRecords and MaxWaitMs (checked before the session, so a
refused request does not move the session epoch); the share session is resolved from its epoch
(top-level session errors end the request; a full session cache holds the request for
MaxWaitMs, then answers SHARE_SESSION_LIMIT_REACHED); acknowledgements are applied per
partition (unknown topic/partition, batch rules → AcknowledgeErrorCode); a final-epoch request
then closes the session and releases the member's records, a renew request stops there;
otherwise every partition of the session is fetched, starting at the partition the session
epoch rotates to, sharing MaxRecords and MaxBytes, and the request waits up to MaxWaitMs
until something can be acquired (woken by produce, releases, lock expiry, acknowledgements and
leader moves); the partitions that returned records in an incremental response move to the end
of the session's order.

The isolation level and lock duration come from the group's configs, not from the request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
import weakref
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import TypeGuard

from aioshare.broker.apis._common import LeaderHints
from aioshare.broker.cluster import Cluster
from aioshare.broker.config import IsolationLevel
from aioshare.broker.log import PartitionLog
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.broker.share_leader import AckOutcome, Fetched, ShareLeader, leader_for
from aioshare.broker.share_partition import AckBatch, SharePartition
from aioshare.broker.share_sessions import FetchContext, next_epoch
from aioshare.broker.share_state import ShareStateKey
from aioshare.broker.topics import Partition
from aioshare.protocol.errors import BrokerError, ErrorCode
from aioshare.protocol.messages import ShareFetchRequest, ShareFetchResponse
from aioshare.protocol.types import AcquireMode, TopicIdPartition

API_KEY = 78
# KafkaApis.isMemberIdValid: clients send Uuid.toString (22 characters) or a UUID (36).
MAX_MEMBER_ID_LENGTH = 36

PartitionData = ShareFetchResponse.PartitionData

# Kafka's SharePartition caches the log position of one fetch offset (fetchOffsetMetadata).
# DelayedShareFetch.tryComplete reads the partitions whose next fetch offset is not the cached
# one (and caches it), and combineLogReadResponse puts those reads after the partitions read at
# completion; records are acquired in that order. So within one request, a partition whose
# fetch offset moved since its last read (typically the one that returned records last time)
# is served after the others. The fetch offset last read, per loaded share-partition:
_read_fetch_offsets: weakref.WeakKeyDictionary[SharePartition, int] = weakref.WeakKeyDictionary()


def register(registry: ApiRegistry, cluster: Cluster) -> ShareLeader | None:
    leader, created = leader_for(registry, cluster)

    async def share_fetch(context: RequestContext, request: ShareFetchRequest) -> ShareFetchResponse:
        return await handle(leader, context, request)

    registry.register(API_KEY, share_fetch, min_version=1, max_version=2)
    # The ShareLeader's timer is started once, by whichever share module created it.
    return leader if created else None


@dataclasses.dataclass(slots=True)
class _Outcome:
    """One partition's part of the response."""

    partition: Partition | None = None
    error_code: int = ErrorCode.NONE
    error_message: str | None = None
    fetched: Fetched | None = None
    ack: AckOutcome | None = None
    # Read from the log by the last attempt (Kafka's acquirablePartitions: not at its in-flight
    # limit): the partitions a response may list besides the failed ones.
    read: bool = False


def top_level_error(code: int) -> ShareFetchResponse:
    """A request-level error: Kafka's getErrorResponse (ShareFetchResponse.of) sends no
    ErrorMessage, whatever the exception said (it logs that)."""
    return ShareFetchResponse(error_code=code)


def member_id_valid(member_id: str | None) -> TypeGuard[str]:
    """KafkaApis.isMemberIdValid: present, not empty, at most 36 characters."""
    return member_id is not None and 0 < len(member_id) <= MAX_MEMBER_ID_LENGTH


def renew_parameters_are_zero(request: ShareFetchRequest) -> bool:
    """KIP-1222: a renew request carries zero MaxBytes, MinBytes, MaxRecords and MaxWaitMs
    (KafkaApis logs which are not, "maxBytes must be set to 0, ... if isRenewAck is true.")."""
    return request.max_bytes == request.min_bytes == request.max_records == request.max_wait_ms == 0


def acknowledgements_of(request: ShareFetchRequest) -> dict[TopicIdPartition, list[AckBatch]]:
    acknowledgements: dict[TopicIdPartition, list[AckBatch]] = {}
    for topic in request.topics:
        for asked in topic.partitions:
            if asked.acknowledgement_batches:
                acknowledgements[TopicIdPartition(topic.topic_id, asked.partition_index)] = [
                    AckBatch(batch.first_offset, batch.last_offset, batch.acknowledge_types)
                    for batch in asked.acknowledgement_batches
                ]
    return acknowledgements


async def handle(
    leader: ShareLeader, context: RequestContext, request: ShareFetchRequest
) -> ShareFetchResponse:
    version = context.api_version
    group_id, member_id = request.group_id, request.member_id
    if group_id is None:
        return top_level_error(ErrorCode.INVALID_REQUEST)  # "Invalid group id in the request."
    if not member_id_valid(member_id):
        # Sessions and record locks are keyed by member id: a request without one is malformed.
        return top_level_error(ErrorCode.INVALID_REQUEST)  # "Invalid member id in the request."
    is_renew = version >= 2 and request.is_renew_ack
    if is_renew:
        # KIP-1222; KafkaApis checks this before newContext, so the session epoch stays.
        if not renew_parameters_are_zero(request):
            return top_level_error(ErrorCode.INVALID_REQUEST)
    requested = [
        TopicIdPartition(topic.topic_id, asked.partition_index)
        for topic in request.topics
        for asked in topic.partitions
    ]
    forgotten = [
        TopicIdPartition(topic.topic_id, index)
        for topic in request.forgotten_topics_data
        for index in topic.partitions
    ]
    acknowledgements = acknowledgements_of(request)
    session = leader.sessions(context.node_id).open_fetch(
        group_id,
        member_id,
        request.share_session_epoch,
        connection_id=context.connection.connection_id,
        topics=requested,
        forgotten=forgotten,
        has_acknowledgements=bool(acknowledgements),
        fetchable=lambda partition: leader.resolve(partition.topic_id, partition.partition)[0] is not None,
    )
    if session.error_code == ErrorCode.SHARE_SESSION_LIMIT_REACHED:
        # Kafka parks the request in an idle timer task for MaxWaitMs before refusing it, so
        # clients that retry at once do not hammer a full cache.
        await asyncio.sleep(max(0, request.max_wait_ms) / 1000)
        return top_level_error(session.error_code)
    if session.error_code:
        return top_level_error(session.error_code)
    mode_id = request.share_acquire_mode if version >= 2 else AcquireMode.BATCH_OPTIMIZED
    if mode_id not in (AcquireMode.BATCH_OPTIMIZED, AcquireMode.RECORD_LIMIT):
        return top_level_error(ErrorCode.INVALID_REQUEST)  # an unknown share acquire mode
    lock_duration_ms = leader.lock_duration_ms(group_id)
    outcomes: dict[TopicIdPartition, _Outcome] = {}
    acked = leader.acknowledge_all(
        context.node_id,
        group_id,
        member_id,
        acknowledgements,
        version=version,
        is_renew_ack=is_renew,
        lock_duration_ms=lock_duration_ms,
    )
    for topic_partition, ack in acked.items():
        outcomes[topic_partition] = _Outcome(ack=ack)
    if session.is_final:
        # FinalContext: acknowledgements only, then the session goes and its records return.
        closed = leader.sessions(context.node_id).close(group_id, member_id)
        if closed is not None:
            leader.release_session(context.node_id, closed)
        return _response(leader, outcomes, list(acked), set(), lock_duration_ms)
    if is_renew:
        return _response(leader, outcomes, list(acked), set(), lock_duration_ms)
    await _fetch(leader, context, request, group_id, member_id, session, AcquireMode(mode_id), outcomes)
    # A response lists the partitions the fetch read or failed on: all of them when full, and
    # when incremental those the session says must be (records, errors, pending updates).
    answered = [
        (partition, outcome)
        for partition in session.partitions
        if (outcome := outcomes.get(partition)) is not None and (outcome.read or outcome.error_code)
    ]
    if session.session is None:
        listed = {partition for partition, _outcome in answered}
    elif session.session.epoch != next_epoch(request.share_session_epoch):
        # Another request used the session while this one waited: Kafka answers this one
        # INVALID_SHARE_SESSION_EPOCH ("possible duplicate request"), and what it acquired
        # stays acquired until the locks expire.
        return top_level_error(ErrorCode.INVALID_SHARE_SESSION_EPOCH)
    else:
        listed = {
            partition
            for partition, outcome in answered
            if session.session.respond(
                partition, has_records=_has_records(outcome), has_error=bool(outcome.error_code)
            )
        }
    # Partitions acknowledged and forgotten in the same request still get their ack result.
    order = list(dict.fromkeys([*session.partitions, *acked]))
    return _response(leader, outcomes, order, listed, lock_duration_ms)


def _has_records(outcome: _Outcome) -> bool:
    return outcome.fetched is not None and outcome.fetched.acquired_count > 0


async def _fetch(
    leader: ShareLeader,
    context: RequestContext,
    request: ShareFetchRequest,
    group_id: str,
    member_id: str,
    session: FetchContext,
    mode: AcquireMode,
    outcomes: dict[TopicIdPartition, _Outcome],
) -> None:
    """Acquire from the session's partitions, waiting up to MaxWaitMs for something to acquire."""
    cluster = leader.cluster
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0, request.max_wait_ms) / 1000
    node_id = context.node_id
    while True:
        # Group configs may change between attempts (IncrementalAlterConfigs), as in Kafka.
        configs = cluster.group_configs.get(group_id)
        isolation = configs.share_isolation_level
        lock_duration_ms = configs.share_record_lock_duration_ms
        viable: list[tuple[TopicIdPartition, Partition, SharePartition]] = []
        logs: list[PartitionLog] = []
        known: list[tuple[TopicIdPartition, Partition]] = []
        for topic_partition in session.partitions:
            outcome = outcomes.setdefault(topic_partition, _Outcome())
            outcome.error_code, outcome.error_message, outcome.partition = ErrorCode.NONE, None, None
            partition, error = leader.resolve(topic_partition.topic_id, topic_partition.partition)
            if partition is None:
                # KafkaApis answers it before the share-partition manager sees the request.
                outcome.error_code = error
                continue
            known.append((topic_partition, partition))
        if request.max_records <= 0 or request.max_bytes <= 0:
            # SharePartitionManager.processShareFetch: nothing asked for, complete at once
            # (no share-partition is loaded, nothing read).
            return
        for topic_partition, partition in known:
            outcome = outcomes[topic_partition]
            logs.append(partition.log)
            if partition.leader != node_id:
                outcome.error_code, outcome.partition = ErrorCode.NOT_LEADER_OR_FOLLOWER, partition
                continue
            try:
                share_partition = leader.load(node_id, group_id, partition)
            except BrokerError as exc:
                outcome.error_code, outcome.error_message = exc.code, exc.message
                continue
            viable.append((topic_partition, partition, share_partition))
        remaining = deadline - loop.time()
        if not viable:
            # Every partition failed: DelayedShareFetch is not even created.
            return
        read_committed = isolation is IsolationLevel.READ_COMMITTED
        if remaining > 0 and request.min_bytes > 1:
            available = 0
            for _tp, partition, share_partition in viable:
                bound = partition.log.upper_bound(read_committed)
                available += leader.has_acquirable(share_partition, partition.log, bound)
            if available < request.min_bytes and not leader.closed:
                _read_order(viable)  # Kafka's attempt reads (and caches) the moved partitions too
                await _wait(leader, group_id, viable, logs, remaining)
                continue
        if _acquire_all(
            leader, node_id, group_id, member_id, request, mode, viable, outcomes, isolation, lock_duration_ms
        ):
            return
        remaining = deadline - loop.time()
        if remaining <= 0 or leader.closed:
            return
        await _wait(leader, group_id, viable, logs, remaining)


def _acquire_all(
    leader: ShareLeader,
    node_id: int,
    group_id: str,
    member_id: str,
    request: ShareFetchRequest,
    mode: AcquireMode,
    viable: Sequence[tuple[TopicIdPartition, Partition, SharePartition]],
    outcomes: dict[TopicIdPartition, _Outcome],
    isolation: IsolationLevel,
    lock_duration_ms: int,
) -> bool:
    """One pass over the partitions in session order; True if anything was acquired."""
    records_left = request.max_records
    # The broker's fetch.max.bytes caps MaxBytes; Kafka's UNIFORM strategy gives each
    # partition an equal share of it.
    bytes_left = min(request.max_bytes, leader.cluster.config.fetch_max_bytes)
    per_partition = max(1, bytes_left // len(viable))
    batch_size = request.batch_size if request.batch_size > 0 else request.max_records
    # KIP-74: the first partition with data may exceed the byte limits by one batch.
    min_one = True
    acquired_any = False
    for topic_partition, _partition, share_partition in viable:
        outcomes[topic_partition].read = share_partition.can_acquire_records()
    for topic_partition, partition, share_partition in _read_order(viable):
        if records_left <= 0:
            break
        fetched = leader.acquire(
            node_id,
            group_id,
            member_id,
            partition,
            share_partition,
            max_records=records_left,
            batch_size=batch_size,
            mode=mode,
            max_bytes=min(per_partition, bytes_left),
            min_one=min_one,
            isolation=isolation,
            lock_duration_ms=lock_duration_ms,
        )
        outcome = outcomes[topic_partition]
        if fetched.error_code:
            outcome.error_code, outcome.error_message = fetched.error_code, fetched.error_message
            continue
        if fetched.acquired_count:
            acquired_any = True
            outcome.fetched = fetched
            records_left -= fetched.acquired_count
            size = len(fetched.records)
            if size:
                min_one = False
                bytes_left = max(0, bytes_left - size)
    return acquired_any


def _read_order(
    viable: Sequence[tuple[TopicIdPartition, Partition, SharePartition]],
) -> list[tuple[TopicIdPartition, Partition, SharePartition]]:
    """The order Kafka acquires in: partitions read at the offset read last time first, then
    those whose fetch offset moved (each in the rotated order); see _read_fetch_offsets."""
    unmoved = []
    moved = []
    for entry in viable:
        share_partition = entry[2]
        if not share_partition.can_acquire_records():
            # Kafka does not fetch (nor read) a share-partition at its in-flight limit.
            unmoved.append(entry)
            continue
        offset = share_partition.next_fetch_offset()
        if _read_fetch_offsets.get(share_partition) == offset:
            unmoved.append(entry)
        else:
            _read_fetch_offsets[share_partition] = offset
            moved.append(entry)
    return unmoved + moved


async def _wait(
    leader: ShareLeader,
    group_id: str,
    viable: Sequence[tuple[TopicIdPartition, Partition, SharePartition]],
    logs: list[PartitionLog],
    remaining: float,
) -> None:
    keys = [ShareStateKey(group_id, tp.topic_id, tp.partition) for tp, _p, _sp in viable]
    await leader.wait(keys, logs, remaining)


def _response(
    leader: ShareLeader,
    outcomes: dict[TopicIdPartition, _Outcome],
    order: Sequence[TopicIdPartition],
    listed: AbstractSet[TopicIdPartition],
    lock_duration_ms: int,
) -> ShareFetchResponse:
    """The partitions in `listed`, and those with an acknowledgement result, in `order`."""
    hints = LeaderHints(leader.cluster)
    topics: dict[uuid.UUID, list[PartitionData]] = {}
    for topic_partition in order:
        outcome = outcomes.get(topic_partition)
        if outcome is None:
            outcome = _Outcome()
        data = PartitionData(partition_index=topic_partition.partition, records=b"")
        moved: Partition | None = None
        if outcome.error_code:
            data.error_code, data.error_message = outcome.error_code, outcome.error_message
            moved = outcome.partition if outcome.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER else None
        if outcome.fetched is not None and outcome.fetched.acquired_count:
            data.records = outcome.fetched.records
            data.acquired_records = [
                ShareFetchResponse.AcquiredRecords(
                    first_offset=piece.first_offset,
                    last_offset=piece.last_offset,
                    delivery_count=piece.delivery_count,
                )
                for piece in outcome.fetched.acquired
            ]
        if outcome.ack is not None:
            data.acknowledge_error_code = outcome.ack.error_code
            data.acknowledge_error_message = outcome.ack.error_message
            moved = moved or outcome.ack.moved
        if moved is not None:
            data.current_leader = ShareFetchResponse.LeaderIdAndEpoch(
                leader_id=moved.leader, leader_epoch=moved.leader_epoch
            )
            hints.add(moved)
        if topic_partition in listed or outcome.ack is not None:
            topics.setdefault(topic_partition.topic_id, []).append(data)
    return ShareFetchResponse(
        acquisition_lock_timeout_ms=lock_duration_ms,
        responses=[
            ShareFetchResponse.ShareFetchableTopicResponse(topic_id=topic_id, partitions=partitions)
            for topic_id, partitions in topics.items()
        ],
        node_endpoints=[
            ShareFetchResponse.NodeEndpoint(
                node_id=node.node_id, host=node.host, port=node.port, rack=node.rack
            )
            for node in hints.endpoints()
        ],
    )
