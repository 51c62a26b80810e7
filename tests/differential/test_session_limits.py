"""Share sessions at the broker's limit (group.share.max.share.sessions), the order a
long-lived multi-partition session fetches in, and sessions used by two requests or two members
at once, compared with real Kafka (see harness.py).

``group.share.max.share.sessions`` is a static broker config (ShareGroupConfig; BrokerServer
sizes its ShareSessionCache once), so the limit scenario runs on its own small real clusters
started with a limit of two sessions (and ``group.share.max.size`` 2, which may not exceed it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.client.connection import Connection
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchResponse
from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS
from aioshare.testing.kafka.cluster import KafkaCluster
from aioshare.testing.kafka.requirement import require

from .harness import (
    EMBEDDED,
    KAFKA_42,
    KAFKA_44,
    TIMEOUT,
    Member,
    Observations,
    Target,
    Topic,
    ack_summary,
    acquired,
    assert_same_explained,
    code,
    embedded_broker,
    fetch_summary,
    one_member,
    run_everywhere,
)

ACCEPT, RELEASE = 1, 2
# MaxWaitMs of fetches that expect records: with 0, Kafka 4.4 may answer before its log read
# (DelayedShareFetch reads asynchronously) and return nothing although records are there.
POLL_MS = 500
SESSION_LIMIT = {"group.share.max.share.sessions": "2", "group.share.max.size": "2"}


@pytest.fixture(scope="module")
def limited_clusters() -> Iterator[dict[str, KafkaCluster]]:
    """Real Kafka of each tested version holding at most two share sessions."""
    made: dict[str, KafkaCluster] = {}
    try:
        for version in TESTED_KAFKA_VERSIONS:
            cluster = KafkaCluster(version, broker_config=SESSION_LIMIT)
            made[f"kafka-{version}"] = cluster
            require(cluster.start)
        yield made
    finally:
        for cluster in made.values():
            cluster.stop()
            cluster.cleanup()


def _listed(response: ShareFetchResponse) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """The partitions a response lists with what each acquired, by partition: Kafka orders the
    partitions of a response by its response map's hash, which differs from run to run."""
    return sorted(
        (p.partition_index, [(r.first_offset, r.last_offset, r.delivery_count) for r in p.acquired_records])
        for t in response.responses
        for p in t.partitions
    )


async def session_limit(target: Target) -> Observations:
    """Two sessions fit; a third is refused (after MaxWaitMs) until one of them ends, by a
    final epoch or by its connection closing. Re-opening one's own session needs no free slot,
    and the limit counts sessions of every group on the broker. Each member has a connection
    of its own, as Kafka's clients do (see sessions_sharing_a_connection)."""
    obs = Observations()
    topic, group, _conn, first = await one_member(target, 6)
    obs.add(
        "m1 opens",
        fetch_summary(target, await first.fetch_until(topic, lambda r: bool(acquired(r)), max_records=1)),
    )
    second_conn = await target.connect()
    second = Member(target, second_conn, group, "m2")
    obs.add("m2 opens", fetch_summary(target, await second.fetch(topic, max_records=1, max_wait_ms=POLL_MS)))
    third = Member(target, await target.connect(), group, "m3")
    obs.add("m3 is refused", fetch_summary(target, await third.fetch(topic, max_records=1)))
    started = time.monotonic()
    refused = await third.fetch(topic, max_records=1, max_wait_ms=1000)
    obs.add(
        "m3 is refused after MaxWaitMs",
        (fetch_summary(target, refused), time.monotonic() - started >= 0.9),
    )
    obs.add(
        "m3 acknowledges without a session",
        ack_summary(target, await third.acknowledge(topic, {0: [(0, 0, [ACCEPT])]}, epoch=1)),
    )
    other_group = await target.group()
    outsider = Member(target, await target.connect(), other_group, "other")
    obs.add("a member of another group is refused", fetch_summary(target, await outsider.fetch(topic)))
    first.epoch = 0
    reopened = await first.fetch(topic, max_records=1, max_wait_ms=POLL_MS)
    obs.add("m1 re-opens its own session at the limit", fetch_summary(target, reopened))
    obs.add(
        "m1's first record is still its own",
        ack_summary(target, await first.acknowledge(topic, {0: [(0, 0, [ACCEPT])]})),
    )
    closing = await first.fetch(topic, acks={0: [(2, 2, [ACCEPT])]}, epoch=-1)
    obs.add("m1 closes with a final epoch", fetch_summary(target, closing))
    obs.add(
        "m3 now opens", fetch_summary(target, await third.fetch(topic, max_records=1, max_wait_ms=POLL_MS))
    )
    obs.add("m1 is refused in turn", fetch_summary(target, await first.fetch(topic, epoch=0)))
    await second_conn.close()
    # Kafka removes a closed connection's session from its disconnect listener, shortly after;
    # MaxRecords 0: whether m2's record is back yet races with the release's state write.
    async with asyncio.timeout(TIMEOUT):
        while True:
            # A refusal comes after MaxWaitMs: that paces the retries.
            retried = await first.fetch(topic, epoch=0, partitions=(0,), max_records=0, max_wait_ms=500)
            if retried.error_code != ErrorCode.SHARE_SESSION_LIMIT_REACHED:
                break
    obs.add("m1 opens once m2's connection closed", code(retried.error_code))
    back = await first.fetch_until(topic, lambda r: any(lo <= 1 <= hi for lo, hi, _c in acquired(r)))
    obs.add("m2's record comes back", [r for r in acquired(back) if r[0] <= 1 <= r[1]])
    return obs


async def test_session_limit(limited_clusters: Mapping[str, KafkaCluster]) -> None:
    async with embedded_broker(SESSION_LIMIT) as broker:
        assert_same_explained(await run_everywhere(session_limit, limited_clusters, broker))


async def _warm_up(target: Target, member: Member, topic: Topic, partitions: int) -> None:
    """One record in each partition, taken and accepted: the share-partitions are loaded."""
    conn = member.connection
    for partition in range(partitions):
        await target.produce(conn, topic, 1, partition=partition)
    await member.join([topic.name], partitions=partitions)
    everything = tuple(range(partitions))
    warmed: set[int] = set()
    async with asyncio.timeout(TIMEOUT):
        while len(warmed) < partitions:
            response = await member.fetch_until(
                topic, lambda r: any(acquired(r, p) for p in everything), partitions=everything
            )
            got = {p: acquired(response, p) for p in everything if acquired(response, p)}
            warmed.update(got)
            acks = {p: [(lo, hi, [ACCEPT]) for lo, hi, _c in ranges] for p, ranges in got.items()}
            assert (await member.acknowledge(topic, acks)).error_code == ErrorCode.NONE
    member.epoch = 0


async def session_order(target: Target) -> Observations:
    """A long-lived session over three partitions with MaxRecords 2: which partition each fetch
    serves, exactly. Kafka rotates the session's partitions by the request's epoch, moves a
    partition that returned records to the end of the session's order (not for the full,
    epoch-0 response), and within a request reads a partition whose fetch offset moved since
    its last read after the others; a full response lists every partition it fetched.

    The share-partitions are loaded first (a warm-up session takes and accepts one record of
    each), so that Kafka's order does not depend on which share-partition finished loading first.
    """
    obs = Observations()
    topic = await target.topic(partitions=3)
    group = await target.group()
    conn = await target.connect()
    member = Member(target, conn, group, "m1")
    await _warm_up(target, member, topic, 3)
    for partition in range(3):
        await target.produce(conn, topic, 6, partition=partition)
    full = await member.fetch(topic, partitions=(0, 1, 2), max_records=2, max_wait_ms=POLL_MS)
    obs.add("full fetch", (code(full.error_code), _listed(full)))
    served: list[Any] = []
    for _ in range(9):
        response = await member.fetch(topic, max_records=2, max_wait_ms=POLL_MS)
        served.append((member.epoch - 1, code(response.error_code), _listed(response)))
    obs.add("incremental fetches (epoch, error, partitions listed)", served)
    return obs


async def test_session_order(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same_explained(await run_everywhere(session_order, clusters, broker))


async def session_order_with_releases(target: Target) -> Observations:
    """Four partitions of different lengths, MaxRecords 3; a release moves a partition's fetch
    offset back, and a long poll is answered by a produce to the partition that was empty."""
    obs = Observations()
    topic = await target.topic(partitions=4)
    group = await target.group()
    conn = await target.connect()
    member = Member(target, conn, group, "m1")
    await _warm_up(target, member, topic, 4)
    for partition, count in ((0, 2), (1, 7), (2, 4)):
        await target.produce(conn, topic, count, partition=partition)
    full = await member.fetch(topic, partitions=(0, 1, 2, 3), max_records=3, max_wait_ms=POLL_MS)
    obs.add("full fetch", (code(full.error_code), _listed(full)))
    served: list[Any] = []
    last: dict[int, tuple[int, int]] = {}
    for step in range(8):
        if step == 2:
            # Release what the second fetch took, moving that partition's fetch offset back. Not
            # piggy-backed: whether Kafka's next fetch in the same request sees a release races
            # with the share coordinator's write (docs/embedded-broker.md).
            acks = {p: [(lo, hi, [RELEASE])] for p, (lo, hi) in last.items()}
            assert (await member.acknowledge(topic, acks)).error_code == ErrorCode.NONE
        response = await member.fetch(topic, max_records=3, max_wait_ms=POLL_MS)
        listed = _listed(response)
        served.append((code(response.error_code), listed))
        last = {p: (ranges[0][0], ranges[-1][1]) for p, ranges in listed if ranges}
    obs.add("incremental fetches", served)

    # A connection of its own: a broker answers one connection's requests in order.
    producer_conn = await target.connect()

    async def produce_later() -> None:
        await asyncio.sleep(0.3)  # while the long poll waits (if it is not there yet, it reads at once)
        await target.produce(producer_conn, topic, 2, partition=3, per_batch=2)

    producer = asyncio.create_task(produce_later())
    started = time.monotonic()
    polled = await member.fetch(topic, max_records=3, max_wait_ms=10_000)
    await producer
    obs.add("long poll", (code(polled.error_code), _listed(polled), time.monotonic() - started < 5))
    after = await member.fetch(topic, max_records=3, max_wait_ms=POLL_MS)
    obs.add("after the long poll", (code(after.error_code), _listed(after)))
    return obs


async def test_session_order_with_releases(
    clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker
) -> None:
    assert_same_explained(await run_everywhere(session_order_with_releases, clusters, broker))


async def _session_probe(connection: Connection, group: str, member: Member) -> str:
    """Whether `member`'s session exists, without touching it: a ShareAcknowledge at an epoch
    no session has is INVALID_SHARE_SESSION_EPOCH for an existing session, else NOT_FOUND."""
    response = await connection.send(
        ShareAcknowledgeRequest(
            group_id=group, member_id=member.member_id, share_session_epoch=999, topics=[]
        ),
        response_type=ShareAcknowledgeResponse,
    )
    return code(response.error_code)


async def sessions_sharing_a_connection(target: Target) -> Observations:
    """Two members' sessions opened on one connection, then the connection closes. Kafka's
    ShareSessionCache maps a connection to the last session opened on it, so only that one is
    removed: the first stays, holding its records and a place in the cache, until a final epoch
    ends it. The embedded broker removes both (docs/embedded-broker.md, *kept*)."""
    obs = Observations()
    topic, group, conn, first = await one_member(target, 4)
    obs.add("m1 opens", acquired(await first.fetch_until(topic, lambda r: bool(acquired(r)), max_records=1)))
    second = Member(target, conn, group, "m2")
    obs.add(
        "m2 opens on the same connection",
        acquired(await second.fetch(topic, max_records=1, max_wait_ms=POLL_MS)),
    )
    probe = await target.connect()
    await conn.close()
    async with asyncio.timeout(TIMEOUT):
        while True:
            if await _session_probe(probe, group, second) == "SHARE_SESSION_NOT_FOUND":
                break
            await asyncio.sleep(0.05)  # Kafka's disconnect listener runs shortly after the close
    obs.add("m1's session after the connection closed", await _session_probe(probe, group, first))
    closing = await first.fetch(topic, epoch=-1, connection=probe)
    obs.add("m1's session ended by a final epoch", code(closing.error_code))
    return obs


async def test_sessions_sharing_a_connection(
    clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker
) -> None:
    results = await run_everywhere(sessions_sharing_a_connection, clusters, broker)
    assert results[KAFKA_42].steps == results[KAFKA_44].steps
    kafka = dict(results[KAFKA_44].steps)
    embedded = dict(results[EMBEDDED].steps)
    kept = {"m1's session after the connection closed", "m1's session ended by a final epoch"}
    assert {k: v for k, v in embedded.items() if k not in kept} == {
        k: v for k, v in kafka.items() if k not in kept
    }
    # Kafka leaks the first session; the embedded broker does not.
    assert [kafka[step] for step in sorted(kept)] == ["INVALID_SHARE_SESSION_EPOCH", "NONE"]
    assert [embedded[step] for step in sorted(kept)] == ["SHARE_SESSION_NOT_FOUND", "SHARE_SESSION_NOT_FOUND"]


async def session_used_during_a_long_poll(target: Target) -> Observations:
    """A long-polling ShareFetch whose session another request (from another connection) moves
    on meanwhile: Kafka answers the poll INVALID_SHARE_SESSION_EPOCH when it completes, and the
    record it acquired stays with the member until its lock expires."""
    obs = Observations()
    topic, group, conn, member = await one_member(target, 2)
    obs.add("opened", acquired(await member.fetch_until(topic, lambda r: bool(acquired(r)))))
    other, producer = await target.connect(), await target.connect()
    poll = asyncio.create_task(
        conn.send(
            member.fetch_request(topic, (), max_wait_ms=10_000),
            timeout=TIMEOUT,
            response_type=ShareFetchResponse,
        )
    )
    # The poll is waiting once an acknowledgement at the following epoch is accepted.
    async with asyncio.timeout(TIMEOUT):
        while True:
            ack = await member.acknowledge(topic, {0: [(0, 1, [ACCEPT])]}, epoch=2, connection=other)
            if ack.error_code != ErrorCode.INVALID_SHARE_SESSION_EPOCH:
                break
            await asyncio.sleep(0.05)  # the poll has not reached the broker yet
    obs.add("acknowledged at the next epoch meanwhile", ack_summary(target, ack))
    await target.produce(producer, topic, 1)
    obs.add("the poll", fetch_summary(target, await poll))
    stranger = Member(target, other, group, "m2")
    obs.add("the record it acquired is held", acquired(await stranger.fetch(topic, max_wait_ms=500)))
    member.epoch = 3
    obs.add("the session goes on", fetch_summary(target, await member.fetch(topic, max_wait_ms=0)))
    return obs


async def test_session_used_during_a_long_poll(
    clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker
) -> None:
    assert_same_explained(await run_everywhere(session_used_during_a_long_poll, clusters, broker))


async def full_response_listing(target: Target) -> Observations:
    """Which partitions a full (epoch-0) response lists: those the fetch read, with records or
    not; not one at its in-flight limit (group.share.partition.max.record.locks, 2000), nor
    any when MaxRecords is 0. (Nor, on Kafka, one whose share-partition is still loading: see
    docs/embedded-broker.md.)"""
    obs = Observations()
    topic = await target.topic(partitions=3)
    group = await target.group()
    conn = await target.connect()
    member = Member(target, conn, group, "m1")
    # Loaded first: Kafka does not read a share-partition in the request that starts loading it.
    await _warm_up(target, member, topic, 3)
    await target.produce(conn, topic, 2100, per_batch=500, partition=0)
    await target.produce(conn, topic, 3, partition=1)
    obs.add(
        "MaxRecords 0", fetch_summary(target, await member.fetch(topic, partitions=(0, 1, 2), max_records=0))
    )
    member.epoch = 0
    taken = 0
    async with asyncio.timeout(TIMEOUT):
        while taken < 2000:
            response = await member.fetch_until(
                topic, lambda r: bool(acquired(r, 0)), partitions=(0,), max_records=2000
            )
            taken += sum(hi - lo + 1 for lo, hi, _c in acquired(response, 0))
    obs.add("partition 0 at its limit", taken)
    member.epoch = 0
    full = await member.fetch(topic, partitions=(0, 1, 2), max_records=10, max_wait_ms=1000)
    obs.add("full response", (code(full.error_code), _listed(full)))
    return obs


async def test_full_response_listing(clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker) -> None:
    assert_same_explained(await run_everywhere(full_response_listing, clusters, broker))
