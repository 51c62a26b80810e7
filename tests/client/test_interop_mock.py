"""Connection and Cluster against librdkafka's mock cluster (a Kafka implementation we did not write).

The mock lives inside a confluent_kafka Producer (`test.mock.num.brokers`) and serves real TCP
for as long as that producer exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from aioshare.client.cluster import Cluster
from aioshare.client.connection import Connection
from aioshare.protocol.messages import REQUESTS, MetadataRequest, MetadataResponse

confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.interop

TOPIC = "aioshare-client-interop"
PARTITIONS = 4  # the mock's default partition count for auto-created topics
SHARE_APIS = {76: "ShareGroupHeartbeat", 78: "ShareFetch", 79: "ShareAcknowledge"}


@pytest.fixture(scope="module")
def mock_cluster() -> Iterator[str]:
    """Bootstrap address of a 3-broker mock cluster with TOPIC created by producing to it."""
    producer = confluent_kafka.Producer({"test.mock.num.brokers": 3, "bootstrap.servers": "", "log_level": 3})
    producer.produce(TOPIC, b"hello")
    assert producer.flush(10) == 0, "the mock cluster did not take a record"
    brokers = producer.list_topics(timeout=10).brokers
    assert len(brokers) == 3
    yield ",".join(f"{b.host}:{b.port}" for b in brokers.values())
    del producer  # the mock cluster's threads and sockets go with its producer


async def test_api_versions_negotiated(mock_cluster: str) -> None:
    host, port = mock_cluster.split(",")[0].rsplit(":", 1)
    conn = await Connection.open(host, int(port))
    try:
        versions = dict(conn.api_versions)
        # For the record (the share consumer is built against these): -s shows it.
        for key, (low, high) in sorted(versions.items()):
            name = REQUESTS[key].__name__.removesuffix("Request") if key in REQUESTS else "?"
            print(f"mock ApiVersions: {key:3} {name:28} v{low}-v{high}")
        for key in (3, 10, 18, *SHARE_APIS):
            assert key in versions, f"mock does not advertise API key {key}"
        assert conn.version_for(3) == min(MetadataRequest.MAX_VERSION, versions[3][1])
        response = await conn.send(MetadataRequest(topics=None), response_type=MetadataResponse)
        assert {b.node_id for b in response.brokers} == {1, 2, 3}
    finally:
        await conn.close()


async def test_metadata_with_topic_ids_and_leaders(mock_cluster: str) -> None:
    async with Cluster(mock_cluster) as cluster:
        assert set(cluster.metadata.brokers) == {1, 2, 3}
        topic = cluster.topic(TOPIC)
        assert topic is not None
        assert topic.topic_id != uuid.UUID(int=0)
        assert cluster.topic(topic.topic_id) is topic
        assert len(topic.partitions) == PARTITIONS
        for partition in range(PARTITIONS):
            leader = cluster.leader_for(topic.topic_id, partition)
            assert leader is not None and leader.node_id in {1, 2, 3}
        errors = await cluster.refresh([topic.topic_id, "no-such-topic"])
        assert list(errors) == ["no-such-topic"]
        assert cluster.topic(TOPIC) is not None


async def test_find_coordinator(mock_cluster: str) -> None:
    async with Cluster(mock_cluster) as cluster:
        node = await cluster.find_coordinator("aioshare-interop-group")
        assert node.node_id in cluster.metadata.brokers
        assert (node.host, node.port) == (
            cluster.metadata.brokers[node.node_id].host,
            cluster.metadata.brokers[node.node_id].port,
        )
        conn = await cluster.connection(node.node_id)
        assert not conn.closed
