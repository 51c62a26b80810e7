"""Conversions between the sans-IO cores' request data and the generated protocol messages."""

from __future__ import annotations

from collections.abc import Sequence

from aioshare.protocol.messages import (
    ShareAcknowledgeRequest,
    ShareFetchRequest,
    ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse,
)
from aioshare.share.acks import AckBatch
from aioshare.share.membership import HeartbeatRequestData, HeartbeatResponseData
from aioshare.share.session import ShareAcknowledgeRequestData, ShareFetchRequestData

__all__ = ["acknowledge_request", "fetch_request", "heartbeat_request", "heartbeat_response"]


def heartbeat_request(data: HeartbeatRequestData) -> ShareGroupHeartbeatRequest:
    return ShareGroupHeartbeatRequest(
        group_id=data.group_id,
        member_id=data.member_id,
        member_epoch=data.member_epoch,
        rack_id=data.rack_id,
        subscribed_topic_names=data.subscribed_topic_names,
    )


def heartbeat_response(resp: ShareGroupHeartbeatResponse) -> HeartbeatResponseData:
    assignment = None
    if resp.assignment is not None:
        assignment = [(t.topic_id, list(t.partitions)) for t in resp.assignment.topic_partitions]
    return HeartbeatResponseData(
        error_code=resp.error_code,
        error_message=resp.error_message,
        member_id=resp.member_id,
        member_epoch=resp.member_epoch,
        heartbeat_interval_ms=resp.heartbeat_interval_ms,
        assignment=assignment,
    )


def _fetch_batches(batches: Sequence[AckBatch]) -> list[ShareFetchRequest.AcknowledgementBatch]:
    return [
        ShareFetchRequest.AcknowledgementBatch(
            first_offset=b.first_offset,
            last_offset=b.last_offset,
            acknowledge_types=list(b.acknowledge_types),
        )
        for b in batches
    ]


def fetch_request(data: ShareFetchRequestData) -> ShareFetchRequest:
    topics = [
        ShareFetchRequest.FetchTopic(
            topic_id=topic_id,
            partitions=[
                ShareFetchRequest.FetchPartition(partition_index=p, acknowledgement_batches=_fetch_batches(b))
                for p, b in parts.items()
            ],
        )
        for topic_id, parts in data.topics_by_id().items()
    ]
    forgotten = [
        ShareFetchRequest.ForgottenTopic(topic_id=topic_id, partitions=parts)
        for topic_id, parts in data.forgotten_by_id().items()
    ]
    return ShareFetchRequest(
        group_id=data.group_id,
        member_id=data.member_id,
        share_session_epoch=data.share_session_epoch,
        max_wait_ms=data.max_wait_ms,
        min_bytes=data.min_bytes,
        max_bytes=data.max_bytes,
        max_records=data.max_records,
        batch_size=data.batch_size,
        share_acquire_mode=data.share_acquire_mode,
        is_renew_ack=data.is_renew_ack,
        topics=topics,
        forgotten_topics_data=forgotten,
    )


def acknowledge_request(data: ShareAcknowledgeRequestData) -> ShareAcknowledgeRequest:
    topics = [
        ShareAcknowledgeRequest.AcknowledgeTopic(
            topic_id=topic_id,
            partitions=[
                ShareAcknowledgeRequest.AcknowledgePartition(
                    partition_index=p,
                    acknowledgement_batches=[
                        ShareAcknowledgeRequest.AcknowledgementBatch(
                            first_offset=b.first_offset,
                            last_offset=b.last_offset,
                            acknowledge_types=list(b.acknowledge_types),
                        )
                        for b in batches
                    ],
                )
                for p, batches in parts.items()
            ],
        )
        for topic_id, parts in data.topics_by_id().items()
    ]
    return ShareAcknowledgeRequest(
        group_id=data.group_id,
        member_id=data.member_id,
        share_session_epoch=data.share_session_epoch,
        is_renew_ack=data.is_renew_ack,
        topics=topics,
    )
