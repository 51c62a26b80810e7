"""ShareGroupDescribe and heartbeat details found by the differential suite
(tests/differential/test_describe.py)."""

from __future__ import annotations

import uuid

from aioshare.broker.config import BrokerConfig
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.broker.share_groups import ShareGroupCoordinator, TopicMetadata
from aioshare.client.connection import Connection
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import ShareGroupDescribeRequest, ShareGroupDescribeResponse

KEPT = TopicMetadata(uuid.UUID(int=1), 2)
DELETED = TopicMetadata(uuid.UUID(int=2), 1)
G = "group"


def test_a_deleted_topic_leaves_the_described_assignment_before_the_next_heartbeat() -> None:
    coordinator = ShareGroupCoordinator(BrokerConfig.from_mapping({}), is_other_group_type=lambda _g: False)
    both = {"kept": KEPT, "deleted": DELETED}
    joined = coordinator.heartbeat(
        G, "m", 0, subscribed_topic_names=["kept", "deleted"], topics=both, now_ms=0
    )
    assert joined.assignment == {KEPT.topic_id: [0, 1], DELETED.topic_id: [0]}

    (described,) = coordinator.describe([G], {"kept": KEPT})

    (member,) = described.members
    # Kafka's topicPartitionsFromMap skips topics its metadata image no longer has; the member
    # still subscribes to the name, and its epoch moves only at its next heartbeat.
    assert member.assignment == [(KEPT.topic_id, "kept", [0, 1])]
    assert member.subscribed_topic_names == ["deleted", "kept"]
    assert (described.group_epoch, member.member_epoch) == (joined.member_epoch, joined.member_epoch)


def test_a_heartbeat_drops_a_deleted_topic_before_the_next_target_assignment() -> None:
    """Kafka 4.3+ computes a new target assignment at most every share.assignment.interval.ms
    (1000 by default); meanwhile the heartbeat that sees the topic gone bumps the group epoch
    and filters the member's assignment (ShareGroupAssignmentBuilder), keeping its epoch."""
    coordinator = ShareGroupCoordinator(BrokerConfig.from_mapping({}), is_other_group_type=lambda _g: False)
    both = {"kept": KEPT, "deleted": DELETED}
    subscribed = ["kept", "deleted"]
    joined = coordinator.heartbeat(G, "m", 0, subscribed_topic_names=subscribed, topics=both, now_ms=5)

    beat = coordinator.heartbeat(
        G, "m", joined.member_epoch, subscribed_topic_names=None, topics={"kept": KEPT}, now_ms=50
    )

    assert (beat.member_epoch, beat.assignment) == (joined.member_epoch, {KEPT.topic_id: [0, 1]})
    (described,) = coordinator.describe([G], {"kept": KEPT})
    assert (described.group_epoch, described.assignment_epoch) == (
        joined.member_epoch + 1,
        joined.member_epoch,
    )
    # Past the interval the new target assignment comes, with a new member epoch.
    later = coordinator.heartbeat(
        G, "m", beat.member_epoch, subscribed_topic_names=None, topics={"kept": KEPT}, now_ms=2005
    )
    assert (later.member_epoch, later.assignment) == (joined.member_epoch + 1, None)


async def test_an_empty_group_id_is_invalid_without_a_message() -> None:
    async with EmbeddedBroker() as broker:
        host, port = broker.address(broker.node_ids[0])
        connection = await Connection.open(host, port)
        try:
            response = await connection.send(
                ShareGroupDescribeRequest(group_ids=["", "unknown"], include_authorized_operations=True),
                response_type=ShareGroupDescribeResponse,
            )
        finally:
            await connection.close()
    # GroupCoordinatorService sets only the code for an empty id; other errors carry a message.
    assert [(g.group_id, g.error_code, g.error_message) for g in response.groups] == [
        ("", ErrorCode.INVALID_GROUP_ID, None),
        ("unknown", ErrorCode.GROUP_ID_NOT_FOUND, "Group unknown not found."),
    ]
