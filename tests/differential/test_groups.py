"""The group coordinator's side: heartbeats, ShareGroupDescribe, ListGroups, group configs."""

from __future__ import annotations

from collections.abc import Mapping

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.testing.kafka.cluster import KafkaCluster

from .harness import (
    Member,
    Observations,
    Target,
    alter_configs,
    assert_same,
    code,
    describe_group,
    describe_summary,
    heartbeat_summary,
    list_groups,
    run_everywhere,
)


async def heartbeats_and_describe(target: Target) -> Observations:
    obs = Observations()
    topic = await target.topic(partitions=2)
    group = await target.group()
    conn = await target.connect()
    obs.add("describe before any member", describe_summary(target, await describe_group(conn, group)))
    member = Member(target, conn, group, "m1")
    unknown = await member.heartbeat([topic.name], member_epoch=5)
    obs.add("unknown member at epoch 5", heartbeat_summary(target, unknown))
    joined = await member.join([topic.name], partitions=2)
    obs.add("assignment", heartbeat_summary(target, joined)["assignment"])
    fenced = await member.heartbeat([topic.name], member_epoch=member.member_epoch + 5)
    obs.add("epoch from the future", heartbeat_summary(target, fenced))
    described = describe_summary(target, await describe_group(conn, group))
    for entry in described:
        # Epochs depend on when Kafka finished initialising the share state; compare their order.
        entry["epoch_ok"] = entry.pop("epoch", 0) >= entry.pop("assignment_epoch", 0) > 0
        entry["members"] = [(*m[:1], m[1] == member.member_epoch, *m[2:]) for m in entry["members"]]
    obs.add("describe", described)
    listed = await list_groups(conn, ["share"])
    obs.add(
        "list groups",
        (
            code(listed.error_code),
            [(g.group_state, g.group_type, g.protocol_type) for g in listed.groups if g.group_id == group],
        ),
    )
    left = await member.leave()
    obs.add("leave", (code(left.error_code), left.member_epoch))
    after = describe_summary(target, await describe_group(conn, group))
    obs.add("describe after leaving", [(e["state"], e["members"]) for e in after])
    missing = describe_summary(target, await describe_group(conn, "diff-no-such-group"))
    obs.add("describe an unknown group", [(e["error"]) for e in missing])
    return obs


async def test_heartbeats_and_describe(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same(await run_everywhere(heartbeats_and_describe, clusters, broker))


CONFIG_CASES: list[tuple[str, dict[str, str | None]]] = [
    ("lock below the minimum", {"share.record.lock.duration.ms": "500"}),
    ("lock above the maximum", {"share.record.lock.duration.ms": "999999999"}),
    ("not a number", {"share.record.lock.duration.ms": "soon"}),
    ("bad reset", {"share.auto.offset.reset": "sometimes"}),
    ("by_duration reset", {"share.auto.offset.reset": "by_duration:PT1H"}),
    ("unknown name", {"share.no.such.config": "1"}),
    ("isolation level", {"share.isolation.level": "read_committed"}),
    ("heartbeat below the minimum", {"share.heartbeat.interval.ms": "100"}),
]


async def group_configs(target: Target) -> Observations:
    obs = Observations()
    group = await target.group()
    conn = await target.connect()
    for case, configs in CONFIG_CASES:
        error, _message = await alter_configs(conn, group, configs)
        obs.add(case, code(error))
    return obs


async def test_group_config_validation(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same(await run_everywhere(group_configs, clusters, broker))
