"""The client and the broker must run on uvloop, the CLI's default loop."""

from __future__ import annotations

import uvloop

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.client.cluster import Cluster
from aioshare.protocol.messages import MetadataRequest, MetadataResponse


def test_connection_and_broker_on_uvloop() -> None:
    async def scenario() -> tuple[int, int]:
        async with EmbeddedBroker(nodes=2) as broker:
            await broker.create_topic("uv", partitions=3)
            async with Cluster(broker.bootstrap_servers) as cluster:
                node = cluster.leader_for("uv", 0)
                assert node is not None
                connection = await cluster.connection(node.node_id)
                response = await connection.send(MetadataRequest(topics=None), response_type=MetadataResponse)
                return len(response.brokers), len(response.topics[0].partitions)

    assert uvloop.run(scenario()) == (2, 3)
