"""ShareAcknowledge (79) v1-2: standalone acknowledgements on an existing share session.

Session rules (semantics doc, section 3.4): epoch 0 is refused (INVALID_SHARE_SESSION_EPOCH:
only ShareFetch opens sessions); epoch n > 0 must match the session and advances it; epoch -1
applies the acknowledgements, then closes the session and releases the member's remaining
records. The session's partition set never changes here. Per partition the same checks as a
piggy-backed acknowledgement run, reported in the partition ErrorCode; RENEW (type 4) needs
v2 and IsRenewAck. v2 answers with the group's AcquisitionLockTimeoutMs.
"""

from __future__ import annotations

import uuid

from aioshare.broker.apis._common import LeaderHints
from aioshare.broker.apis.share_fetch import member_id_valid
from aioshare.broker.cluster import Cluster
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.broker.share_leader import ShareLeader, leader_for
from aioshare.broker.share_partition import AckBatch
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import ShareAcknowledgeRequest, ShareAcknowledgeResponse
from aioshare.protocol.types import TopicIdPartition

API_KEY = 79

PartitionData = ShareAcknowledgeResponse.PartitionData


def register(registry: ApiRegistry, cluster: Cluster) -> ShareLeader | None:
    leader, created = leader_for(registry, cluster)

    async def share_acknowledge(
        context: RequestContext, request: ShareAcknowledgeRequest
    ) -> ShareAcknowledgeResponse:
        return handle(leader, context, request)

    registry.register(API_KEY, share_acknowledge, min_version=1, max_version=2)
    return leader if created else None


def handle(
    leader: ShareLeader, context: RequestContext, request: ShareAcknowledgeRequest
) -> ShareAcknowledgeResponse:
    version = context.api_version
    group_id, member_id = request.group_id, request.member_id
    # Request-level errors carry no ErrorMessage: Kafka's getErrorResponse sets only the code.
    if group_id is None:
        return ShareAcknowledgeResponse(error_code=ErrorCode.INVALID_REQUEST)  # "Invalid group id ..."
    if not member_id_valid(member_id):
        return ShareAcknowledgeResponse(error_code=ErrorCode.INVALID_REQUEST)  # "Invalid member id ..."
    sessions = leader.sessions(context.node_id)
    session = sessions.open_acknowledge(group_id, member_id, request.share_session_epoch)
    if session.error_code:
        return ShareAcknowledgeResponse(error_code=session.error_code)
    acknowledgements: dict[TopicIdPartition, list[AckBatch]] = {}
    for topic in request.topics:
        for asked in topic.partitions:
            acknowledgements[TopicIdPartition(topic.topic_id, asked.partition_index)] = [
                AckBatch(batch.first_offset, batch.last_offset, batch.acknowledge_types)
                for batch in asked.acknowledgement_batches
            ]
    lock_duration_ms = leader.lock_duration_ms(group_id)
    outcomes = leader.acknowledge_all(
        context.node_id,
        group_id,
        member_id,
        acknowledgements,
        version=version,
        is_renew_ack=version >= 2 and request.is_renew_ack,
        lock_duration_ms=lock_duration_ms,
    )
    if not any(outcome.applied for outcome in outcomes.values()):
        # KafkaApis answers only the erroneous partitions when none had batches to apply: a
        # partition sent with an empty batch list is left out of the response (it is NONE only
        # next to a partition whose batches were applied).
        outcomes = {
            topic_partition: outcome
            for topic_partition, outcome in outcomes.items()
            if outcome.error_code or acknowledgements[topic_partition]
        }
    if session.is_final:
        # Acknowledgements first, then the session closes and what the member still holds is
        # released; Kafka logs release failures without reporting them.
        closed = sessions.close(group_id, member_id)
        if closed is not None:
            leader.release_session(context.node_id, closed)
    hints = LeaderHints(leader.cluster)
    topics: dict[uuid.UUID, list[PartitionData]] = {}
    for topic_partition, outcome in outcomes.items():
        data = PartitionData(
            partition_index=topic_partition.partition,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
        )
        if outcome.moved is not None:
            data.current_leader = ShareAcknowledgeResponse.LeaderIdAndEpoch(
                leader_id=outcome.moved.leader, leader_epoch=outcome.moved.leader_epoch
            )
            hints.add(outcome.moved)
        topics.setdefault(topic_partition.topic_id, []).append(data)
    return ShareAcknowledgeResponse(
        # Ignorable field: the codec leaves it out of v1 responses.
        acquisition_lock_timeout_ms=lock_duration_ms,
        responses=[
            ShareAcknowledgeResponse.ShareAcknowledgeTopicResponse(topic_id=topic_id, partitions=partitions)
            for topic_id, partitions in topics.items()
        ],
        node_endpoints=[
            ShareAcknowledgeResponse.NodeEndpoint(
                node_id=node.node_id, host=node.host, port=node.port, rack=node.rack
            )
            for node in hints.endpoints()
        ],
    )
