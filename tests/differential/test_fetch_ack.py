"""Acquisition and acknowledgement outcomes, compared with real Kafka (see harness.py)."""

from __future__ import annotations

from collections.abc import Mapping

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.testing.kafka.cluster import KafkaCluster

from .harness import (
    Member,
    Observations,
    Target,
    ack_summary,
    acquired,
    assert_same,
    describe_offsets,
    fetch_summary,
    offsets_summary,
    one_member,
    run_everywhere,
)

ACCEPT, RELEASE, REJECT, RENEW = 1, 2, 3, 4


async def accept_release_reject(target: Target) -> Observations:
    obs = Observations()
    topic, group, conn, member = await one_member(target, 10, per_batch=5)
    obs.add(
        "offsets before any fetch",
        offsets_summary(target, await describe_offsets(conn, group, {topic.name: [0]})),
    )
    first = await member.fetch_until(topic, lambda r: bool(acquired(r)))
    obs.add("first fetch", fetch_summary(target, first))
    obs.add(
        "offsets after acquisition only",
        offsets_summary(target, await describe_offsets(conn, group, {topic.name: [0]})),
    )
    ack = await member.acknowledge(topic, {0: [(0, 1, [ACCEPT]), (2, 3, [RELEASE]), (4, 5, [REJECT])]})
    obs.add("acknowledge accept/release/reject", ack_summary(target, ack))
    obs.add(
        "offsets after acks", offsets_summary(target, await describe_offsets(conn, group, {topic.name: [0]}))
    )
    again = await member.fetch_until(topic, lambda r: bool(acquired(r)), acks={0: [(6, 9, [ACCEPT])]})
    obs.add("fetch with piggy-backed accept", fetch_summary(target, again))
    ack = await member.acknowledge(topic, {0: [(2, 2, [ACCEPT]), (3, 3, [RELEASE])]})
    obs.add("accept 2 release 3", ack_summary(target, ack))
    third = await member.fetch_until(topic, lambda r: bool(acquired(r)))
    obs.add("record 3 again", fetch_summary(target, third))
    ack = await member.acknowledge(topic, {0: [(3, 3, [ACCEPT])]})
    obs.add("accept 3", ack_summary(target, ack))
    obs.add(
        "offsets at the end", offsets_summary(target, await describe_offsets(conn, group, {topic.name: [0]}))
    )
    return obs


async def test_accept_release_reject(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same(await run_everywhere(accept_release_reject, clusters, broker))


# Each case in its own ShareAcknowledge after acquiring records 0..9 (one record per batch) with
# max_records=8: 8 and 9 are available, not acquired.
INVALID = [
    ("first after last", [(5, 4, [ACCEPT])]),
    ("out of order", [(5, 6, [ACCEPT]), (0, 1, [ACCEPT])]),
    ("overlapping", [(0, 5, [ACCEPT]), (4, 6, [ACCEPT])]),
    ("sharing an offset", [(0, 5, [ACCEPT]), (5, 6, [ACCEPT])]),
    ("no types", [(0, 1, [])]),
    ("type count mismatch", [(0, 3, [ACCEPT, ACCEPT])]),
    ("unknown type", [(0, 1, [5])]),
    ("negative type", [(0, 1, [-1])]),
    ("gap type", [(0, 1, [0])]),
    ("renew without IsRenewAck", [(0, 1, [RENEW])]),
    ("empty batch list", []),
    ("past the window", [(8, 12, [ACCEPT])]),
    ("far past the window", [(20, 22, [ACCEPT])]),
    ("available, not acquired", [(8, 9, [ACCEPT])]),
    ("acquired and not", [(6, 9, [ACCEPT])]),
]


async def invalid_acknowledgements(target: Target) -> Observations:
    obs = Observations()
    topic, group, conn, member = await one_member(target, 10)
    fetched = await member.fetch_until(topic, lambda r: bool(acquired(r)), max_records=8)
    obs.add("acquired", fetch_summary(target, fetched))
    for case, batches in INVALID:
        obs.add(case, ack_summary(target, await member.acknowledge(topic, {0: batches})))
    # Nothing above changed a record (or did it?): accept 0..7 now.
    obs.add("accept 0..7", ack_summary(target, await member.acknowledge(topic, {0: [(0, 7, [ACCEPT])]})))
    obs.add("offsets", offsets_summary(target, await describe_offsets(conn, group, {topic.name: [0]})))
    # Piggy-backed on ShareFetch the same checks land in AcknowledgeErrorCode.
    await target.produce(conn, topic, 2)
    for case, batches in [("fetch: sharing an offset", [(10, 10, [ACCEPT]), (10, 11, [ACCEPT])])]:
        response = await member.fetch_until(topic, lambda r: bool(acquired(r)), acks={0: batches})
        obs.add(case, fetch_summary(target, response))
    return obs


async def test_invalid_acknowledgements(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same(await run_everywhere(invalid_acknowledgements, clusters, broker))


async def delivery_limit(target: Target) -> Observations:
    """Released five times (the default limit), a record is archived."""
    obs = Observations()
    topic, group, conn, member = await one_member(target, 2)
    for attempt in range(5):
        fetched = await member.fetch_until(topic, lambda r: bool(acquired(r)), max_records=1)
        obs.add(f"delivery {attempt + 1}", acquired(fetched))
        obs.add(
            f"release {attempt + 1}",
            ack_summary(target, await member.acknowledge(topic, {0: [(0, 0, [RELEASE])]})),
        )
    fetched = await member.fetch_until(topic, lambda r: bool(acquired(r)))
    obs.add("after the limit", acquired(fetched))
    obs.add("offsets", offsets_summary(target, await describe_offsets(conn, group, {topic.name: [0]})))
    return obs


async def test_delivery_limit_archives(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same(await run_everywhere(delivery_limit, clusters, broker))


async def lock_expiry(target: Target) -> Observations:
    """A lock runs out: another member gets the records with delivery count 2, the first
    member's late acknowledgement fails."""
    obs = Observations()
    topic = await target.topic()
    group = await target.group(share_record_lock_duration_ms="1000")
    conn = await target.connect()
    await target.produce(conn, topic, 5, per_batch=5)
    first = Member(target, conn, group, "m1")
    second = Member(target, conn, group, "m2")
    await first.join([topic.name])
    obs.add("m1", fetch_summary(target, await first.fetch_until(topic, lambda r: bool(acquired(r)))))
    # m2's first fetch finds everything locked; the long poll ends when the locks expire.
    redelivered = await second.fetch_until(topic, lambda r: bool(acquired(r)))
    obs.add("m2 after expiry", fetch_summary(target, redelivered))
    obs.add("m1's late accept", ack_summary(target, await first.acknowledge(topic, {0: [(0, 4, [ACCEPT])]})))
    obs.add("m2 accepts", ack_summary(target, await second.acknowledge(topic, {0: [(0, 4, [ACCEPT])]})))
    obs.add("offsets", offsets_summary(target, await describe_offsets(conn, group, {topic.name: [0]})))
    return obs


async def test_lock_expiry_redelivers(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same(await run_everywhere(lock_expiry, clusters, broker))


async def renew(target: Target) -> Observations:
    """KIP-1222 renew acknowledgements (ShareFetch/ShareAcknowledge v2)."""
    obs = Observations()
    topic, _group, _conn, member = await one_member(target, 4)
    obs.add("acquired", acquired(await member.fetch_until(topic, lambda r: bool(acquired(r)))))
    ack = await member.acknowledge(topic, {0: [(0, 1, [RENEW])]}, renew=True)
    obs.add("renew 0..1", ack_summary(target, ack))
    ack = await member.acknowledge(topic, {0: [(2, 2, [ACCEPT]), (3, 3, [RENEW])]}, renew=True)
    obs.add("accept 2 renew 3 with IsRenewAck", ack_summary(target, ack))
    bad = await member.fetch(topic, acks={0: [(0, 0, [RENEW])]}, renew=True, max_records=5)
    obs.add("renew fetch with MaxRecords", fetch_summary(target, bad))
    # Did the refused request move the session epoch? The next one tells.
    good = await member.fetch(
        topic, acks={0: [(0, 0, [RENEW])]}, renew=True, max_records=0, max_bytes=0, min_bytes=0
    )
    obs.add("renew fetch", fetch_summary(target, good))
    ack = await member.acknowledge(topic, {0: [(0, 1, [ACCEPT]), (3, 3, [ACCEPT])]})
    obs.add("accept renewed", ack_summary(target, ack))
    return obs


async def test_renew(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same(await run_everywhere(renew, clusters, broker))
