"""EmbeddedBroker: a Kafka-protocol cluster of N nodes inside this process, for tests and demos.

    async with EmbeddedBroker(nodes=3) as broker:
        topic_id = await broker.create_topic("events", partitions=6)
        ...  # any Kafka client, bootstrap_servers=broker.bootstrap_servers

Each node has its own listener (host:port) and node id (1..N); they share one Cluster
state, so every partition has one log whatever node leads it. Fault injection moves leaders
(bumping the leader epoch), stops/starts nodes on the same port, drops client connections and
delays responses. Every task the broker starts is owned here and finished by `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from aioshare.broker import apis
from aioshare.broker.apis import ApiModule, Service
from aioshare.broker.cluster import Cluster, Node
from aioshare.broker.config import BrokerConfig, RawValue
from aioshare.broker.server import ApiRegistry, NodeServer, RequestMemoryPool, ResponseDelay
from aioshare.broker.topics import Partition

logger = logging.getLogger("aioshare.broker")

FIRST_NODE_ID = 1
# Kafka's log.retention.check.interval.ms default.
RETENTION_CHECK_INTERVAL = 300.0


class EmbeddedBroker:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        nodes: int = 1,
        data_dir: str | Path | None = None,
        config: Mapping[str, RawValue] | None = None,
        *,
        api_modules: Sequence[ApiModule] | None = None,
        retention_check_interval: float = RETENTION_CHECK_INTERVAL,
    ) -> None:
        if nodes < 1:
            raise ValueError("an embedded cluster needs at least one node")
        # Validated now, so a bad config fails at construction with Kafka's message.
        self.config = BrokerConfig.from_mapping(config or {})
        self.host = host
        self._ports = [port + i if port else 0 for i in range(nodes)]
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._modules = tuple(api_modules) if api_modules is not None else apis.DEFAULT_MODULES
        self._retention_interval = retention_check_interval
        self.delay = ResponseDelay()
        self.memory_pool = RequestMemoryPool(self.config.queued_max_request_bytes)
        self._cluster: Cluster | None = None
        self._registry: ApiRegistry | None = None
        self._servers: dict[int, NodeServer] = {}
        self._services: list[Service] = []
        self._housekeeping: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._cluster is not None:
            raise RuntimeError("the broker is already running")
        node_ids = range(FIRST_NODE_ID, FIRST_NODE_ID + len(self._ports))
        nodes = [Node(node_id, self.host, port) for node_id, port in zip(node_ids, self._ports, strict=True)]
        cluster = self._cluster = Cluster(self.config, nodes, self._data_dir)
        registry = self._registry = ApiRegistry()
        try:
            self._services = apis.install(registry, cluster, self._modules)
            memory_pool = self.memory_pool = RequestMemoryPool(self.config.queued_max_request_bytes)
            for node in nodes:
                server = NodeServer(
                    node.node_id,
                    self.host,
                    node.port,
                    registry,
                    max_frame_bytes=self.config.socket_request_max_bytes,
                    delay=self.delay,
                    memory_pool=memory_pool,
                    connections_max_idle_ms=self.config.connections_max_idle_ms,
                    max_connections=self.config.max_connections,
                )
                self._servers[node.node_id] = server
                await server.start()
                node.port = server.port
            for node in nodes:
                node.alive = True
            # Leaders persisted from an earlier run may name nodes this run does not have.
            cluster.topics.restore_leaders(cluster.is_alive)
            started: list[Service] = []
            for service in self._services:
                await service.start()
                started.append(service)
            self._services = started
            self._housekeeping = asyncio.get_running_loop().create_task(
                self._retention_loop(), name="aioshare-broker-retention"
            )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop everything this broker started; returns when no task of it is left."""
        task, self._housekeeping = self._housekeeping, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        services, self._services = self._services, []
        for service in reversed(services):
            try:
                await service.close()
            except Exception:
                logger.exception("closing %r failed", service)
        servers, self._servers = self._servers, {}
        for server in servers.values():
            await server.stop()
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.close()
        self._registry = None

    # ------------------------------------------------------------------ access

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise RuntimeError("the broker is not running")
        return self._cluster

    @property
    def registry(self) -> ApiRegistry:
        if self._registry is None:
            raise RuntimeError("the broker is not running")
        return self._registry

    @property
    def node_ids(self) -> list[int]:
        return self.cluster.node_ids

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{self.host}:{node.port}" for node in self.cluster.nodes.values())

    def address(self, node_id: int) -> tuple[str, int]:
        node = self.cluster.nodes[node_id]
        return node.host, node.port

    def server(self, node_id: int) -> NodeServer:
        return self._servers[node_id]

    # ------------------------------------------------------------------ topics

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        *,
        replication_factor: int = -1,
    ) -> uuid.UUID:
        """Create a topic as CreateTopics would (same validation); returns its topic id."""
        cluster = self.cluster
        topic = cluster.topics.create(
            name, partitions, replication_factor, dict(config or {}), alive=cluster.alive_node_ids()
        )
        return topic.topic_id

    def partition(self, topic: str, partition: int) -> Partition:
        found = self.cluster.topics.partition(topic, partition)
        if found is None:
            raise KeyError(f"no partition {topic}-{partition}")
        return found

    async def enforce_retention(self) -> None:
        """Apply retention.ms / retention.bytes now (otherwise every retention check interval)."""
        cluster = self.cluster
        now = cluster.now_ms()
        for topic in cluster.topics:
            if "delete" not in topic.config("cleanup.policy").split(","):
                continue
            for partition in topic.partitions:
                partition.log.enforce_retention(
                    now, topic.int_config("retention.ms"), topic.int_config("retention.bytes")
                )

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self._retention_interval)
            try:
                await self.enforce_retention()
            except Exception:
                logger.exception("retention check failed")

    # ------------------------------------------------------------------ fault injection

    async def move_leader(self, topic: str, partition: int, node_id: int) -> None:
        """Make `node_id` the leader of topic-partition; the leader epoch goes up by one."""
        if not self.cluster.is_alive(node_id):
            raise ValueError(f"node {node_id} is not running")
        self.cluster.topics.move_leader(self.partition(topic, partition), node_id)

    async def stop_node(self, node_id: int) -> None:
        """Stop a node: its listener closes, its connections drop, its leaderships move."""
        cluster = self.cluster
        node = cluster.nodes[node_id]
        if not node.alive:
            return
        node.alive = False
        cluster.topics.node_stopped(node_id, cluster.alive_node_ids())
        await self._servers[node_id].stop()

    async def start_node(self, node_id: int) -> None:
        """Restart a stopped node on the same port."""
        cluster = self.cluster
        node = cluster.nodes[node_id]
        if node.alive:
            return
        await self._servers[node_id].start()
        node.alive = True
        cluster.topics.node_started(node_id)

    async def drop_connections(self, node_id: int | None = None) -> None:
        """Close client connections to one node (or all); listeners keep accepting new ones."""
        targets = [self._servers[node_id]] if node_id is not None else list(self._servers.values())
        for server in targets:
            await server.drop_connections()

    def delay_responses(self, seconds: float, api_keys: Collection[int] | None = None) -> None:
        """Hold every response (or those of `api_keys`) back by `seconds`; 0 turns it off."""
        self.delay.set(seconds, api_keys)
