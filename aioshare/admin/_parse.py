"""Turning admin responses into result values, sans-IO (each function takes a decoded response)."""

from __future__ import annotations

from types import MappingProxyType

from aioshare.admin.types import (
    ConfigEntry,
    ConfigSource,
    PartitionOffsetInfo,
    ShareGroupDescription,
    ShareGroupListing,
    ShareMemberDescription,
    TopicPartition,
)
from aioshare.protocol.errors import BrokerError, error_for_code
from aioshare.protocol.messages import (
    DescribeConfigsResponse,
    DescribeShareGroupOffsetsResponse,
    ListGroupsResponse,
    ShareGroupDescribeResponse,
)

__all__ = [
    "config_entries",
    "description",
    "offsets",
    "share_listings",
]

SHARE = "share"


def share_listings(response: ListGroupsResponse, version: int) -> list[ShareGroupListing]:
    """The share groups among a ListGroups answer.

    From v5 the broker filters by type and says each group's type; before it, a share group is
    recognised by its protocol type, which the coordinator sets to "share".
    """
    found = []
    for group in response.groups:
        kind = group.group_type if version >= 5 and group.group_type else group.protocol_type
        if kind.lower() == SHARE:
            found.append(ShareGroupListing(group.group_id, group.group_state))
    return found


def description(group: ShareGroupDescribeResponse.DescribedGroup) -> ShareGroupDescription | BrokerError:
    if group.error_code:
        return error_for_code(group.error_code, group.error_message)
    return ShareGroupDescription(
        group_id=group.group_id,
        state=group.group_state,
        group_epoch=group.group_epoch,
        assignment_epoch=group.assignment_epoch,
        assignor=group.assignor_name,
        members=tuple(_member(m) for m in group.members),
    )


def _member(member: ShareGroupDescribeResponse.Member) -> ShareMemberDescription:
    assignment: dict[str, tuple[int, ...]] = {}
    for tp in member.assignment.topic_partitions:
        # The name is empty only for a topic deleted since; its id is all that is left.
        name = tp.topic_name or str(tp.topic_id)
        assignment[name] = tuple(sorted({*assignment.get(name, ()), *tp.partitions}))
    return ShareMemberDescription(
        member_id=member.member_id,
        client_id=member.client_id,
        host=member.client_host,
        rack_id=member.rack_id,
        member_epoch=member.member_epoch,
        subscriptions=tuple(member.subscribed_topic_names),
        assignment=MappingProxyType(assignment),
    )


def offsets(
    group: DescribeShareGroupOffsetsResponse.DescribeShareGroupOffsetsResponseGroup,
) -> dict[TopicPartition, PartitionOffsetInfo] | BrokerError:
    if group.error_code:
        return error_for_code(group.error_code, group.error_message)
    found: dict[TopicPartition, PartitionOffsetInfo] = {}
    for topic in group.topics:
        for p in topic.partitions:
            error = error_for_code(p.error_code, p.error_message) if p.error_code else None
            found[TopicPartition(topic.topic_name, p.partition_index)] = PartitionOffsetInfo(
                start_offset=p.start_offset, leader_epoch=p.leader_epoch, lag=p.lag, error=error
            )
    return dict(sorted(found.items()))


def config_entries(
    result: DescribeConfigsResponse.DescribeConfigsResult,
) -> dict[str, ConfigEntry] | BrokerError:
    if result.error_code:
        return error_for_code(result.error_code, result.error_message)
    return {
        c.name: ConfigEntry(
            name=c.name,
            value=c.value,
            source=ConfigSource.of(c.config_source),
            read_only=c.read_only,
            sensitive=c.is_sensitive,
            documentation=c.documentation or None,
        )
        for c in sorted(result.configs, key=lambda c: c.name)
    }
