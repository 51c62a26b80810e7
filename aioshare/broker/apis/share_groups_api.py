"""Share-group coordinator APIs: ShareGroupHeartbeat (76), ShareGroupDescribe (77),
DescribeShareGroupOffsets (90), AlterShareGroupOffsets (91), DeleteShareGroupOffsets (92),
ListGroups (16) and DeleteGroups (42). Semantics doc, sections 2 and 5.

Every node serves these APIs, but only the group's coordinator (``cluster.group_coordinator``)
acts on a group; the other nodes answer NOT_COORDINATOR, and ListGroups on a node lists only the
groups that node coordinates (the admin client asks every broker and merges), as in Kafka.
The embedded broker has no authorizer, so nothing is refused for authorisation.
"""

from __future__ import annotations

import uuid
from typing import Final

from aioshare.broker.cluster import Cluster
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.broker.share_coordinator_service import ShareCoordinatorService
from aioshare.broker.share_groups import DescribedGroup, validate_heartbeat_request
from aioshare.broker.share_state import UNDECIDED_START, ShareStateKey
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import (
    AlterShareGroupOffsetsRequest,
    AlterShareGroupOffsetsResponse,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse,
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    ShareGroupDescribeRequest,
    ShareGroupDescribeResponse,
    ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse,
)
from aioshare.protocol.types import NIL_UUID

LIST_GROUPS: Final = 16
DELETE_GROUPS: Final = 42
SHARE_GROUP_HEARTBEAT: Final = 76
SHARE_GROUP_DESCRIBE: Final = 77
DESCRIBE_SHARE_GROUP_OFFSETS: Final = 90
ALTER_SHARE_GROUP_OFFSETS: Final = 91
DELETE_SHARE_GROUP_OFFSETS: Final = 92

# DeleteGroups v3 (a per-group ErrorMessage) is served from Kafka 4.4 (kafka_versions.py
# narrows it to 0-2 when emulating 4.2/4.3). Kafka 4.4's GroupCoordinatorShard.deleteGroups
# sets no ErrorMessage for share groups (only the streams path does), so v3 answers as v2.
DELETE_GROUPS_MAX_VERSION: Final = 3

SHARE: Final = "share"  # ListGroups GroupType and ProtocolType of share groups
LAG_UNKNOWN: Final = -1
DEFAULT_LEADER_EPOCH: Final = 0

# AclOperation bits of a GROUP resource with no authorizer (READ, DELETE, DESCRIBE,
# DESCRIBE_CONFIGS, ALTER_CONFIGS), as Kafka reports them when a client asks.
GROUP_OPERATIONS: Final = sum(1 << op for op in (3, 6, 8, 10, 11))
OPERATIONS_NOT_REQUESTED: Final = -(2**31)

# Kafka's Errors default messages, which Kafka puts in responses where it has nothing more
# specific to say.
_MESSAGES: Final[dict[int, str]] = {
    ErrorCode.NOT_COORDINATOR: "This is not the correct coordinator.",
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: "This server does not host this topic-partition.",
    ErrorCode.GROUP_ID_NOT_FOUND: "The group id does not exist.",
    ErrorCode.INVALID_GROUP_ID: "The group id is invalid.",
    ErrorCode.LEADER_NOT_AVAILABLE: (
        "There is no leader for this topic-partition as we are in the middle of a leadership election."
    ),
}


def register(registry: ApiRegistry, cluster: Cluster) -> ShareCoordinatorService:
    service = ShareCoordinatorService(cluster)

    async def heartbeat(
        context: RequestContext, request: ShareGroupHeartbeatRequest
    ) -> ShareGroupHeartbeatResponse:
        return handle_heartbeat(service, context, request)

    async def describe(
        context: RequestContext, request: ShareGroupDescribeRequest
    ) -> ShareGroupDescribeResponse:
        return handle_describe(service, context, request)

    async def describe_offsets(
        context: RequestContext, request: DescribeShareGroupOffsetsRequest
    ) -> DescribeShareGroupOffsetsResponse:
        return handle_describe_offsets(service, context, request)

    async def alter_offsets(
        context: RequestContext, request: AlterShareGroupOffsetsRequest
    ) -> AlterShareGroupOffsetsResponse:
        return handle_alter_offsets(service, context, request)

    async def delete_offsets(
        context: RequestContext, request: DeleteShareGroupOffsetsRequest
    ) -> DeleteShareGroupOffsetsResponse:
        return handle_delete_offsets(service, context, request)

    async def list_groups(context: RequestContext, request: ListGroupsRequest) -> ListGroupsResponse:
        return handle_list_groups(service, context, request)

    async def delete_groups(context: RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse:
        return handle_delete_groups(service, context, request)

    registry.register(SHARE_GROUP_HEARTBEAT, heartbeat, min_version=1, max_version=1)
    registry.register(SHARE_GROUP_DESCRIBE, describe, min_version=1, max_version=1)
    registry.register(DESCRIBE_SHARE_GROUP_OFFSETS, describe_offsets, min_version=0, max_version=1)
    registry.register(ALTER_SHARE_GROUP_OFFSETS, alter_offsets, min_version=0, max_version=0)
    registry.register(DELETE_SHARE_GROUP_OFFSETS, delete_offsets, min_version=0, max_version=0)
    registry.register(LIST_GROUPS, list_groups, min_version=0, max_version=5)
    registry.register(DELETE_GROUPS, delete_groups, min_version=0, max_version=DELETE_GROUPS_MAX_VERSION)
    return service


def _client_host(context: RequestContext) -> str:
    # Kafka records InetAddress.toString() of the client, which is "/<ip>" without a hostname.
    return f"/{context.connection.client_host}"


# --------------------------------------------------------------------------- ShareGroupHeartbeat


def handle_heartbeat(
    service: ShareCoordinatorService, context: RequestContext, request: ShareGroupHeartbeatRequest
) -> ShareGroupHeartbeatResponse:
    # Request validation comes before the coordinator lookup (GroupCoordinatorService).
    invalid = validate_heartbeat_request(
        request.group_id,
        request.member_id,
        request.member_epoch,
        request.rack_id,
        request.subscribed_topic_names,
    )
    if invalid is not None:
        return ShareGroupHeartbeatResponse(error_code=invalid[0], error_message=invalid[1])
    if not service.is_coordinator(request.group_id, context.node_id):
        return ShareGroupHeartbeatResponse(
            error_code=ErrorCode.NOT_COORDINATOR, error_message=_MESSAGES[ErrorCode.NOT_COORDINATOR]
        )
    result = service.heartbeat(
        request.group_id,
        request.member_id,
        request.member_epoch,
        subscribed_topic_names=request.subscribed_topic_names,
        rack_id=request.rack_id,
        client_id=context.client_id or "",
        client_host=_client_host(context),
    )
    if result.error_code:
        return ShareGroupHeartbeatResponse(error_code=result.error_code, error_message=result.error_message)
    response = ShareGroupHeartbeatResponse(
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval_ms=result.heartbeat_interval_ms,
    )
    if result.assignment is not None:
        response.assignment = ShareGroupHeartbeatResponse.Assignment(
            topic_partitions=[
                ShareGroupHeartbeatResponse.TopicPartitions(topic_id=topic_id, partitions=partitions)
                for topic_id, partitions in sorted(result.assignment.items(), key=lambda item: str(item[0]))
            ]
        )
    return response


# --------------------------------------------------------------------------- ShareGroupDescribe


def handle_describe(
    service: ShareCoordinatorService, context: RequestContext, request: ShareGroupDescribeRequest
) -> ShareGroupDescribeResponse:
    topics = service.topics()
    groups = []
    for group_id in request.group_ids:
        if group_id and not service.is_coordinator(group_id, context.node_id):
            groups.append(
                ShareGroupDescribeResponse.DescribedGroup(
                    group_id=group_id,
                    error_code=ErrorCode.NOT_COORDINATOR,
                    error_message=_MESSAGES[ErrorCode.NOT_COORDINATOR],
                )
            )
            continue
        (described,) = service.coordinator.describe([group_id], topics)
        groups.append(_described_group(described, request.include_authorized_operations))
    return ShareGroupDescribeResponse(groups=groups)


def _described_group(
    described: DescribedGroup, include_operations: bool
) -> ShareGroupDescribeResponse.DescribedGroup:
    if described.error_code:
        # An empty group id gets INVALID_GROUP_ID and no message (GroupCoordinatorService sets
        # only the code); the other errors carry the coordinator's message.
        return ShareGroupDescribeResponse.DescribedGroup(
            group_id=described.group_id,
            error_code=described.error_code,
            error_message=described.error_message,
        )
    return ShareGroupDescribeResponse.DescribedGroup(
        group_id=described.group_id,
        group_state=described.group_state,
        group_epoch=described.group_epoch,
        assignment_epoch=described.assignment_epoch,
        assignor_name=described.assignor_name,
        members=[
            ShareGroupDescribeResponse.Member(
                member_id=member.member_id,
                rack_id=member.rack_id,
                member_epoch=member.member_epoch,
                client_id=member.client_id,
                client_host=member.client_host,
                subscribed_topic_names=member.subscribed_topic_names,
                assignment=ShareGroupDescribeResponse.Assignment(
                    topic_partitions=[
                        ShareGroupDescribeResponse.TopicPartitions(
                            topic_id=topic_id, topic_name=name, partitions=partitions
                        )
                        for topic_id, name, partitions in member.assignment
                    ]
                ),
            )
            for member in described.members
        ],
        authorized_operations=GROUP_OPERATIONS if include_operations else OPERATIONS_NOT_REQUESTED,
    )


# --------------------------------------------------------------------------- DescribeShareGroupOffsets

_OffsetsGroup = DescribeShareGroupOffsetsResponse.DescribeShareGroupOffsetsResponseGroup
_OffsetsTopic = DescribeShareGroupOffsetsResponse.DescribeShareGroupOffsetsResponseTopic
_OffsetsPartition = DescribeShareGroupOffsetsResponse.DescribeShareGroupOffsetsResponsePartition


def handle_describe_offsets(
    service: ShareCoordinatorService, context: RequestContext, request: DescribeShareGroupOffsetsRequest
) -> DescribeShareGroupOffsetsResponse:
    groups = []
    for wanted in request.groups:
        if not service.is_coordinator(wanted.group_id, context.node_id):
            groups.append(_offsets_group_error(wanted.group_id, ErrorCode.NOT_COORDINATOR))
        elif wanted.topics is None:
            groups.append(_describe_all_offsets(service, wanted.group_id))
        else:
            groups.append(
                _OffsetsGroup(
                    group_id=wanted.group_id,
                    topics=[
                        _describe_topic_offsets(service, wanted.group_id, topic.topic_name, topic.partitions)
                        for topic in wanted.topics
                    ],
                )
            )
    return DescribeShareGroupOffsetsResponse(groups=groups)


def _offsets_group_error(group_id: str, error: int) -> _OffsetsGroup:
    # KafkaApis puts the error's default message here, not the coordinator's exception text.
    return _OffsetsGroup(group_id=group_id, error_code=error, error_message=_MESSAGES.get(error))


def _describe_all_offsets(service: ShareCoordinatorService, group_id: str) -> _OffsetsGroup:
    """Topics = null: every topic with initialised state.

    The group is not looked up: an unknown group (or one of another type) simply has no
    initialised partitions, so the answer is no topics and no error, as from Kafka 4.2/4.4
    (KafkaApis goes straight to describeShareGroupAllOffsets, whose
    initializedShareGroupPartitions is an empty map for it).
    """
    topics = []
    for topic_id, partitions in sorted(
        service.coordinator.initialized_partitions(group_id).items(), key=lambda item: str(item[0])
    ):
        # Topics that left the metadata are skipped, as Kafka's describeShareGroupAllOffsets does.
        topic = service.cluster.topics.by_id(topic_id)
        if topic is not None:
            topics.append(_describe_topic_offsets(service, group_id, topic.name, sorted(partitions)))
    return _OffsetsGroup(group_id=group_id, topics=topics)


def _describe_topic_offsets(
    service: ShareCoordinatorService, group_id: str, topic_name: str, partitions: list[int]
) -> _OffsetsTopic:
    """ReadShareGroupStateSummary plus Lag (KIP-1226) for the named partitions.

    An unknown topic is "no offsets" rather than an error: topic id zero, start offset -1.
    A partition without state has start offset -1, leader epoch 0 and lag -1. Otherwise
    lag = partition end offset - start offset - delivery complete count, computed only when
    the start offset is decided (not -1).
    """
    topic = service.cluster.topics.get(topic_name)
    if topic is None:
        return _OffsetsTopic(
            topic_name=topic_name,
            topic_id=NIL_UUID,
            partitions=[
                _OffsetsPartition(partition_index=p, start_offset=UNDECIDED_START) for p in partitions
            ],
        )
    rows = []
    for index in partitions:
        state = service.cluster.share_state.read(ShareStateKey(group_id, topic.topic_id, index))
        if state is None:
            rows.append(
                _OffsetsPartition(
                    partition_index=index,
                    start_offset=UNDECIDED_START,
                    leader_epoch=DEFAULT_LEADER_EPOCH,
                    lag=LAG_UNKNOWN,
                )
            )
            continue
        key = ShareStateKey(group_id, topic.topic_id, index)
        reported = service.cluster.share_state.reported_start_offset(key)
        row = _OffsetsPartition(
            partition_index=index,
            start_offset=reported,
            leader_epoch=state.leader_epoch,
            lag=LAG_UNKNOWN,
        )
        if reported != UNDECIDED_START and state.start_offset != UNDECIDED_START:
            partition = topic.partition(index)
            if partition is None or partition.leader < 0:
                # Kafka's latest-offset lookup fails for the partition; the row carries its error.
                error = (
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    if partition is None
                    else ErrorCode.LEADER_NOT_AVAILABLE
                )
                row = _OffsetsPartition(
                    partition_index=index, error_code=error, error_message=_MESSAGES[error]
                )
            else:
                # The latest offset a read_uncommitted ListOffsets returns: the high watermark.
                row.lag = partition.log.high_watermark - state.start_offset - state.delivery_complete_count
        rows.append(row)
    return _OffsetsTopic(topic_name=topic_name, topic_id=topic.topic_id, partitions=rows)


# --------------------------------------------------------------------------- AlterShareGroupOffsets

_AlterTopic = AlterShareGroupOffsetsResponse.AlterShareGroupOffsetsResponseTopic
_AlterPartition = AlterShareGroupOffsetsResponse.AlterShareGroupOffsetsResponsePartition


def handle_alter_offsets(
    service: ShareCoordinatorService, context: RequestContext, request: AlterShareGroupOffsetsRequest
) -> AlterShareGroupOffsetsResponse:
    group_id = request.group_id
    if not group_id:
        return _alter_error(ErrorCode.INVALID_GROUP_ID, None)
    if not service.is_coordinator(group_id, context.node_id):
        return _alter_error(ErrorCode.NOT_COORDINATOR, _MESSAGES[ErrorCode.NOT_COORDINATOR])
    unknown = _MESSAGES[ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
    responses: list[_AlterTopic] = []
    offsets: dict[uuid.UUID, dict[int, int]] = {}
    for wanted in request.topics:
        topic = service.cluster.topics.get(wanted.topic_name)
        rows = []
        for asked in wanted.partitions:
            if topic is None or topic.partition(asked.partition_index) is None:
                rows.append(
                    _AlterPartition(
                        partition_index=asked.partition_index,
                        error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        error_message=unknown,
                    )
                )
            else:
                offsets.setdefault(topic.topic_id, {})[asked.partition_index] = asked.start_offset
                rows.append(_AlterPartition(partition_index=asked.partition_index))
        responses.append(
            _AlterTopic(
                topic_name=wanted.topic_name,
                topic_id=topic.topic_id if topic is not None else NIL_UUID,
                partitions=rows,
            )
        )
    result = service.alter_offsets(group_id, offsets)
    if result.error_code:
        # A group-level refusal (NON_EMPTY_GROUP, ...) replaces the per-partition answers.
        return _alter_error(result.error_code, result.error_message)
    return AlterShareGroupOffsetsResponse(responses=responses)


def _alter_error(error: int, message: str | None) -> AlterShareGroupOffsetsResponse:
    return AlterShareGroupOffsetsResponse(error_code=error, error_message=message)


# --------------------------------------------------------------------------- DeleteShareGroupOffsets

_DeleteTopic = DeleteShareGroupOffsetsResponse.DeleteShareGroupOffsetsResponseTopic


def handle_delete_offsets(
    service: ShareCoordinatorService, context: RequestContext, request: DeleteShareGroupOffsetsRequest
) -> DeleteShareGroupOffsetsResponse:
    group_id = request.group_id
    if not group_id:
        return _delete_offsets_error(ErrorCode.INVALID_GROUP_ID, _MESSAGES[ErrorCode.INVALID_GROUP_ID])
    if not service.is_coordinator(group_id, context.node_id):
        return _delete_offsets_error(ErrorCode.NOT_COORDINATOR, _MESSAGES[ErrorCode.NOT_COORDINATOR])
    ids = {
        wanted.topic_name: topic.topic_id
        for wanted in request.topics
        if (topic := service.cluster.topics.get(wanted.topic_name)) is not None
    }
    result = service.delete_offsets(group_id, ids.values())
    if result.error_code:
        return _delete_offsets_error(result.error_code, result.error_message)
    responses = []
    for wanted in request.topics:
        topic_id = ids.get(wanted.topic_name)
        if topic_id is None:
            responses.append(
                _DeleteTopic(
                    topic_name=wanted.topic_name,
                    topic_id=NIL_UUID,
                    error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    error_message=_MESSAGES[ErrorCode.UNKNOWN_TOPIC_OR_PARTITION],
                )
            )
        elif topic_id in result.topic_errors:
            code, message = result.topic_errors[topic_id]
            # Kafka leaves the topic id unset on the "no offset information" row.
            responses.append(
                _DeleteTopic(
                    topic_name=wanted.topic_name, topic_id=NIL_UUID, error_code=code, error_message=message
                )
            )
        else:
            responses.append(_DeleteTopic(topic_name=wanted.topic_name, topic_id=topic_id))
    return DeleteShareGroupOffsetsResponse(responses=responses)


def _delete_offsets_error(error: int, message: str | None) -> DeleteShareGroupOffsetsResponse:
    return DeleteShareGroupOffsetsResponse(error_code=error, error_message=message)


# --------------------------------------------------------------------------- ListGroups / DeleteGroups


def handle_list_groups(
    service: ShareCoordinatorService, context: RequestContext, request: ListGroupsRequest
) -> ListGroupsResponse:
    # Kafka parses the type filter case-insensitively (Group.GroupType.parse) and compares
    # states in lower case after trimming; unknown names simply match nothing.
    types = {name.lower() for name in request.types_filter} if context.api_version >= 5 else set()
    states = {name.lower().strip() for name in request.states_filter} if context.api_version >= 4 else set()
    groups = []
    if not types or SHARE in types:
        for group_id, state in service.coordinator.list_groups():
            if states and state.lower() not in states:
                continue
            if service.is_coordinator(group_id, context.node_id):
                groups.append(
                    ListGroupsResponse.ListedGroup(
                        group_id=group_id, protocol_type=SHARE, group_state=state, group_type=SHARE
                    )
                )
    return ListGroupsResponse(groups=groups)


def handle_delete_groups(
    service: ShareCoordinatorService, context: RequestContext, request: DeleteGroupsRequest
) -> DeleteGroupsResponse:
    results = []
    for group_id in request.groups_names:
        result = DeleteGroupsResponse.DeletableGroupResult(group_id=group_id)
        if not service.is_coordinator(group_id, context.node_id):
            result.error_code = ErrorCode.NOT_COORDINATOR
        else:
            # The embedded broker has only share groups, so an unknown id is GROUP_ID_NOT_FOUND
            # (Kafka's answer once no group type claims the id).
            result.error_code = service.delete_group(group_id).error_code
        results.append(result)
    return DeleteGroupsResponse(results=results)
