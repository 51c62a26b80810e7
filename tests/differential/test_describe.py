"""ShareGroupDescribe, DescribeShareGroupOffsets and ListGroups around deleted topics, unknown
groups and filters, compared with real Kafka (see harness.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import (
    MetadataRequest,
    MetadataResponse,
    ShareGroupDescribeRequest,
    ShareGroupDescribeResponse,
)
from aioshare.testing.kafka.cluster import KafkaCluster

from .harness import (
    TIMEOUT,
    Member,
    Observations,
    Target,
    Topic,
    acquired,
    assert_same_explained,
    code,
    describe_group,
    describe_offsets,
    describe_summary,
    heartbeat_summary,
    list_groups_filtered,
    offsets_summary,
    run_everywhere,
)

ACCEPT = 1


def _members(target: Target, described: list[dict[str, Any]]) -> list[Any]:
    """Each group's state and members (epochs left out: when Kafka bumps them depends on when
    its share-state initialisation finishes)."""
    return [
        (entry["error"], entry.get("state"), [(m[0], *m[2:]) for m in entry.get("members", [])])
        for entry in described
    ]


def _without(message: str | None, group: str) -> str | None:
    """An error message with the group id replaced by its shape."""
    return None if message is None else message.replace(group, "<group>")


async def _wait_topic_gone(target: Target, topic: Topic) -> None:
    """Until the broker's metadata no longer has the deleted topic."""
    connection = await target.connect()
    async with asyncio.timeout(TIMEOUT):
        while True:
            response = await connection.send(
                MetadataRequest(
                    topics=[MetadataRequest.MetadataRequestTopic(name=topic.name)],
                    allow_auto_topic_creation=False,
                ),
                response_type=MetadataResponse,
            )
            if all(t.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION for t in response.topics):
                return
            await asyncio.sleep(0.05)  # the controller's deletion reaches the broker's cache shortly


async def deleted_topic(target: Target) -> Observations:
    """A member assigned two topics, one of which is deleted: describe and the offsets of every
    topic (Topics = null), before and after the member's next heartbeat."""
    obs = Observations()
    kept = await target.topic(partitions=2)
    doomed = await target.topic()
    group = await target.group()
    conn = await target.connect()
    for topic, partitions in ((kept, 2), (doomed, 1)):
        for partition in range(partitions):
            await target.produce(conn, topic, 3, partition=partition)
    member = Member(target, conn, group, "m1")
    await member.join([kept.name, doomed.name], partitions=3)
    # Accept everything of both topics so every partition has written state.
    for topic, partitions in ((kept, (0, 1)), (doomed, (0,))):
        member.epoch = 0
        taken = 0
        async with asyncio.timeout(TIMEOUT):
            while taken < 3 * len(partitions):
                response = await member.fetch_until(
                    topic, lambda r: bool(acquired(r, 0) or acquired(r, 1)), partitions=partitions
                )
                acks = {p: [(lo, hi, [ACCEPT]) for lo, hi, _c in acquired(response, p)] for p in partitions}
                taken += sum(hi - lo + 1 for ranges in acks.values() for lo, hi, _t in ranges)
                ack = await member.acknowledge(topic, {p: a for p, a in acks.items() if a})
                assert ack.error_code == ErrorCode.NONE, (target.name, ack)
    before = describe_summary(target, await describe_group(conn, group))
    obs.add("describe before the deletion", _members(target, before))
    obs.add(
        "all offsets before the deletion", offsets_summary(target, await describe_offsets(conn, group, None))
    )

    await target.admin.delete_topic(doomed.name)
    await _wait_topic_gone(target, doomed)
    # The coordinator sees the deletion through its own metadata image: wait for describe to change.
    async with asyncio.timeout(TIMEOUT):
        while True:
            after = describe_summary(target, await describe_group(conn, group))
            if after != before:
                break
            await asyncio.sleep(0.05)
    obs.add("describe after the deletion", _members(target, after))
    obs.add("epochs unchanged by the deletion", [e["epoch"] for e in after] == [e["epoch"] for e in before])
    async with asyncio.timeout(TIMEOUT):
        while True:
            # Kafka removes the deleted topic's share state in the background.
            offsets = offsets_summary(target, await describe_offsets(conn, group, None))
            if all(row[0] != target.shape(doomed.name) for row in offsets[0][2]):
                break
            await asyncio.sleep(0.05)
    obs.add("all offsets after the deletion", offsets)
    obs.add(
        "the deleted topic by name",
        offsets_summary(target, await describe_offsets(conn, group, {doomed.name: [0]})),
    )
    beat = await member.heartbeat([kept.name, doomed.name])
    # Kafka leaves the deleted topic out of the response at once, whether or not it has
    # computed the new target assignment yet.
    obs.add("heartbeat after the deletion", heartbeat_summary(target, beat).get("assignment"))
    before_epoch = max(m[1] for e in before for m in e["members"])
    async with asyncio.timeout(TIMEOUT):
        # A new target assignment (and member epoch) follows; Kafka 4.3+ computes one at most
        # every share.assignment.interval.ms, and 4.4 in the background.
        while beat.member_epoch <= before_epoch:
            await asyncio.sleep(member.interval_ms / 1000)  # the protocol's own pacing
            beat = await member.heartbeat([kept.name, doomed.name])
    obs.add("assignment with the new epoch", heartbeat_summary(target, beat).get("assignment"))
    obs.add(
        "describe after the heartbeat",
        _members(target, describe_summary(target, await describe_group(conn, group))),
    )
    return obs


async def test_deleted_topic(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same_explained(await run_everywhere(deleted_topic, clusters, broker))


async def unknown_groups(target: Target) -> Observations:
    """Describe and offsets of groups that do not exist: one never used, one with only configs,
    one whose last member left (it exists, Empty), one deleted."""
    obs = Observations()
    topic = await target.topic()
    configured = await target.group()
    conn = await target.connect()
    await target.wait_for_coordinator(configured)
    await target.wait_for_coordinator("diff-never-used")
    response = await describe_group(conn, "diff-never-used")
    obs.add(
        "never used",
        [(g.group_id, code(g.error_code), g.error_message) for g in response.groups],
    )
    response = await describe_group(conn, configured)
    obs.add(
        "configs only",
        [
            (
                target.shape(g.group_id),
                code(g.error_code),
                _without(g.error_message, configured),
            )
            for g in response.groups
        ],
    )
    obs.add(
        "configs only: all offsets", offsets_summary(target, await describe_offsets(conn, configured, None))
    )
    obs.add(
        "configs only: a topic's offsets",
        offsets_summary(target, await describe_offsets(conn, configured, {topic.name: [0]})),
    )
    member = Member(target, conn, configured, "m1")
    await member.join([topic.name])
    await member.leave()
    described = describe_summary(target, await describe_group(conn, configured))
    obs.add("after the last member left", [(e["error"], e["state"], e["members"]) for e in described])
    obs.add("empty: all offsets", offsets_summary(target, await describe_offsets(conn, configured, None)))
    response = await conn.send(
        ShareGroupDescribeRequest(
            group_ids=[configured, "diff-never-used", ""], include_authorized_operations=True
        ),
        response_type=ShareGroupDescribeResponse,
    )
    # Kafka answers in the order of its coordinator shards (invalid ids first), not the request's.
    obs.add(
        "several groups, with authorized operations",
        sorted(
            (
                str(target.shape(g.group_id)),
                code(g.error_code),
                _without(g.error_message, configured),
                g.authorized_operations,
            )
            for g in response.groups
        ),
    )
    obs.add("delete", list((await target.admin.delete_share_groups([configured])).values()))
    response = await describe_group(conn, configured)
    obs.add("deleted", [code(g.error_code) for g in response.groups])
    obs.add("deleted: all offsets", offsets_summary(target, await describe_offsets(conn, configured, None)))
    return obs


async def test_unknown_groups(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same_explained(await run_everywhere(unknown_groups, clusters, broker))


TYPE_FILTERS: list[list[str]] = [
    [],
    ["share"],
    ["Share"],
    ["consumer"],
    ["classic"],
    ["consumer", "share"],
    ["no-such-type"],
]
STATE_FILTERS: list[list[str]] = [[], ["Stable"], ["stable"], [" EMPTY "], ["Empty", "Stable"], ["Dead"]]


async def list_filters(target: Target) -> Observations:
    """ListGroups with type and state filters, for a Stable and an Empty share group."""
    obs = Observations()
    topic = await target.topic()
    stable = await target.group()
    empty = await target.group()
    conn = await target.connect()
    staying = Member(target, conn, stable, "m1")
    await staying.join([topic.name])
    leaving = Member(target, conn, empty, "m2")
    await leaving.join([topic.name])
    await leaving.leave()
    ours = {stable, empty}
    for types in TYPE_FILTERS:
        for states in STATE_FILTERS:
            response = await list_groups_filtered(conn, types, states)
            obs.add(
                f"types {types} states {states}",
                (
                    code(response.error_code),
                    sorted(
                        (target.shape(g.group_id), g.group_state, g.group_type, g.protocol_type)
                        for g in response.groups
                        if g.group_id in ours
                    ),
                ),
            )
    return obs


async def test_list_group_filters(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same_explained(await run_everywhere(list_filters, clusters, broker))
