"""Cluster against several fake brokers: bootstrap, refresh, pool, backoff, coordinators."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from aioshare.client.cluster import Cluster
from aioshare.client.metadata import BrokerNode
from aioshare.protocol.errors import (
    ErrorCode,
    GroupAuthorizationFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    UnknownTopicIdError,
    UnknownTopicOrPartitionError,
)
from aioshare.protocol.messages import FindCoordinatorRequest, MetadataRequest

from .fakes import FakeCluster, all_versions, owned_tasks

ORDERS = uuid.UUID("11111111-1111-1111-1111-111111111111")
META, FIND = MetadataRequest.API_KEY, FindCoordinatorRequest.API_KEY


@pytest.fixture
async def fake() -> AsyncIterator[FakeCluster]:
    async with FakeCluster() as cluster:
        cluster.topics["orders"] = (ORDERS, {0: 1, 1: 2, 2: 3})
        yield cluster


async def test_bootstrap_reads_metadata(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap) as cluster:
        assert set(cluster.metadata.brokers) == {1, 2, 3}
        assert cluster.topic("orders") is cluster.topic(ORDERS)
        leader = cluster.leader_for(ORDERS, 1)
        assert leader is not None and leader.node_id == 2 and leader.port == fake.brokers[2].port
        request = fake.requests(META)[0]
        assert request.version == MetadataRequest.MAX_VERSION
        assert request.body.topics is None and request.body.allow_auto_topic_creation is False


async def test_close_leaves_no_task_and_closes_connections(fake: FakeCluster) -> None:
    cluster = Cluster(fake.bootstrap)
    await cluster.start()
    conn = await cluster.connection(2)
    assert owned_tasks()  # the refresher
    await cluster.close()
    assert conn.closed
    assert not owned_tasks()
    with pytest.raises(IllegalStateError):
        await cluster.connection(1)


async def test_unreachable_bootstrap() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    cluster = Cluster(dead, reconnect_backoff=0.001)
    with pytest.raises(NoBrokersAvailable):
        await cluster.start()
    assert not owned_tasks()


async def test_partial_refresh_by_name_and_id(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap) as cluster:
        fake.topics["orders"] = (ORDERS, {0: 3, 1: 2, 2: 3})
        fake.leader_epoch = 1
        errors = await cluster.refresh([ORDERS, "nope", uuid.UUID(int=5)])
        assert isinstance(errors["nope"], UnknownTopicOrPartitionError)
        assert isinstance(errors[uuid.UUID(int=5)], UnknownTopicIdError)
        leader = cluster.leader_for("orders", 0)
        assert leader is not None and leader.node_id == 3
        asked = fake.requests(META)[-1].body.topics
        assert {(t.name, t.topic_id) for t in asked} == {
            (None, ORDERS),
            ("nope", uuid.UUID(int=0)),
            (None, uuid.UUID(int=5)),
        }


async def test_old_metadata_version_reads_everything_for_ids() -> None:
    async with FakeCluster(api_versions=all_versions() | {META: (0, 9)}) as fake:
        fake.topics["orders"] = (ORDERS, {0: 1})
        async with Cluster(fake.bootstrap) as cluster:
            assert cluster.topic("orders") is not None
            assert cluster.topic(ORDERS) is None  # v9 carries no topic ids
            await cluster.refresh([ORDERS])
            last = fake.requests(META)[-1]
            assert last.version == 9 and last.body.topics is None


async def test_concurrent_refreshes_share_one_request(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap) as cluster:
        before = len(fake.requests(META))
        await asyncio.gather(*(cluster.refresh() for _ in range(5)))
        assert len(fake.requests(META)) == before + 1


async def test_one_connection_per_node(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap) as cluster:
        broker = fake.brokers[3]
        conns = await asyncio.gather(*(cluster.connection(3) for _ in range(5)))
        assert all(c is conns[0] for c in conns)
        assert len(broker.conns) == 1


async def test_reconnects_after_peer_disconnect(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap) as cluster:
        first = await cluster.connection(2)
        fake.brokers[2].drop_connections()
        await asyncio.wait_for(first.wait_closed(), 5)
        second = await cluster.connection(2)
        assert second is not first and not second.closed


async def test_reconnect_backoff(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap, reconnect_backoff=0.2, reconnect_backoff_max=1.0) as cluster:
        loop = asyncio.get_running_loop()
        fake.brokers[2].refuse = True
        with pytest.raises(KafkaConnectionError):
            await cluster.connection(2)
        started = loop.time()
        with pytest.raises(KafkaConnectionError):
            await cluster.connection(2)
        assert loop.time() - started >= 0.2 * 0.8  # the first backoff, less jitter
        fake.brokers[2].refuse = False
        started = loop.time()
        conn = await cluster.connection(2)
        assert loop.time() - started >= 0.4 * 0.8  # doubled
        assert not conn.closed
        # After a success the schedule starts over: the next failure backs off 0.2s, not 0.8s.
        fake.brokers[2].refuse = True
        fake.brokers[2].drop_connections()
        await asyncio.wait_for(conn.wait_closed(), 5)
        with pytest.raises(KafkaConnectionError):
            await cluster.connection(2)
        fake.brokers[2].refuse = False
        started = loop.time()
        await cluster.connection(2)
        assert 0.2 * 0.8 <= loop.time() - started < 0.8 * 0.8


async def test_metadata_failover_to_another_broker(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap) as cluster:
        for node_id in (1, 2):
            fake.brokers[node_id].refuse = True
            fake.brokers[node_id].drop_connections()
        await cluster.refresh()
        assert fake.brokers[3].requests(META)


async def test_request_refresh_wakes_the_refresher(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap, retry_backoff=0.01) as cluster:
        count = len(fake.requests(META))
        fake.topics["orders"] = (ORDERS, {0: 2, 1: 2, 2: 3})
        fake.leader_epoch = 1
        cluster.request_refresh()
        await fake.wait_for(lambda: len(fake.requests(META)) > count)
        await cluster.refresh()  # joins or follows the refresher's request
        leader = cluster.leader_for("orders", 0)
        assert leader is not None and leader.node_id == 2


async def test_periodic_refresh(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap, metadata_max_age=0.05, retry_backoff=0.01):
        await fake.wait_for(lambda: len(fake.requests(META)) >= 3)


async def test_find_coordinator_batched_and_cached(fake: FakeCluster) -> None:
    fake.coordinator = 3
    async with Cluster(fake.bootstrap) as cluster:
        node = await cluster.find_coordinator("group-a")
        assert node == BrokerNode(3, fake.brokers[3].host, fake.brokers[3].port)
        assert await cluster.find_coordinator("group-a") == node
        [request] = fake.requests(FIND)
        assert request.version == FindCoordinatorRequest.MAX_VERSION
        assert request.body.coordinator_keys == ["group-a"] and request.body.key_type == 0
        results = await cluster.find_coordinators(["x", "y"], key_type=2)
        assert results == {"x": node, "y": node}
        assert fake.requests(FIND)[-1].body.coordinator_keys == ["x", "y"]
        conn = await cluster.connection(node.node_id)
        assert conn is await cluster.connection(3)  # the coordinator shares the broker's connection
        cluster.invalidate_coordinator("group-a")
        await cluster.find_coordinator("group-a")
        assert len(fake.requests(FIND)) == 3


async def test_find_coordinator_single_key_before_v4() -> None:
    async with FakeCluster(api_versions=all_versions() | {FIND: (0, 3)}) as fake:
        fake.coordinator = 2
        async with Cluster(fake.bootstrap) as cluster:
            results = await cluster.find_coordinators(["a", "b"])
            assert {k: v.node_id for k, v in results.items() if isinstance(v, BrokerNode)} == {"a": 2, "b": 2}
            requests = fake.requests(FIND)
            assert sorted(r.body.key for r in requests) == ["a", "b"]
            assert {r.version for r in requests} == {3}


async def test_find_coordinator_retries_retriable_errors(fake: FakeCluster) -> None:
    fake.coordinator_errors = [ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS]
    async with Cluster(fake.bootstrap, retry_backoff=0.01) as cluster:
        node = await cluster.find_coordinator("g")
        assert node.node_id == 1 and len(fake.requests(FIND)) == 3


async def test_find_coordinator_raises_fatal_errors_and_times_out(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap, retry_backoff=0.01) as cluster:
        fake.coordinator_errors = [ErrorCode.GROUP_AUTHORIZATION_FAILED]
        with pytest.raises(GroupAuthorizationFailedError):
            await cluster.find_coordinator("g")
        fake.coordinator_errors = [ErrorCode.COORDINATOR_NOT_AVAILABLE] * 1000
        with pytest.raises(KafkaTimeoutError):
            await cluster.find_coordinator("g", timeout=0.1)
        results = await cluster.find_coordinators(["g"])
        assert results["g"].__class__.__name__ == "CoordinatorNotAvailableError"


async def test_broker_address_change_replaces_connection(fake: FakeCluster) -> None:
    async with Cluster(fake.bootstrap) as cluster:
        old = await cluster.connection(2)
        # Node 2 now answers at node 3's address.
        fake.brokers[2].host, fake.brokers[2].port, moved = (
            fake.brokers[3].host,
            fake.brokers[3].port,
            fake.brokers[2].port,
        )
        await cluster.refresh()
        new = await cluster.connection(2)
        assert old.closed and new is not old and new.port == fake.brokers[3].port != moved
