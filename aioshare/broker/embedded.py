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
import collections
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from aioshare.broker import apis
from aioshare.broker.apis import ApiModule, Service, api_versions
from aioshare.broker.apis.scram_credentials import ScramCredentialApis
from aioshare.broker.cluster import Cluster, Node
from aioshare.broker.config import BrokerConfig, InvalidBrokerConfig, RawValue
from aioshare.broker.kafka_versions import parse_kafka_version
from aioshare.broker.listeners import ListenerSpec
from aioshare.broker.security import ListenerSecurity, ScramCredentialStore, parse_scram_credentials
from aioshare.broker.server import ApiRegistry, NodeServer, RequestMemoryPool, ResponseDelay
from aioshare.broker.share_leader import leader_for
from aioshare.broker.share_partition import InFlightRange
from aioshare.broker.share_state import ShareStateKey
from aioshare.broker.topics import Partition
from aioshare.protocol.types import RecordState

logger = logging.getLogger("aioshare.broker")

FIRST_NODE_ID = 1
# Kafka's log.retention.check.interval.ms default.
RETENTION_CHECK_INTERVAL = 300.0


@dataclasses.dataclass(frozen=True, slots=True)
class ShareRecords:
    """One share-partition's records as its leader holds them: offsets below ``start_offset`` are
    done (acknowledged or archived - Kafka forgets which), ``in_flight`` the runs from there on
    (available, acquired, acknowledged, archived, each with its delivery count)."""

    start_offset: int
    end_offset: int
    in_flight: list[InFlightRange]

    def state_of(self, offset: int) -> tuple[RecordState, int] | None:
        """(state, delivery count) of an offset at or past ``start_offset``; None below it or for
        an offset not fetched yet."""
        for run in self.in_flight:
            if run.first_offset <= offset <= run.last_offset:
                return run.state, run.delivery_count
        return None

    def counts(self) -> collections.Counter[str]:
        """Offsets per state ("available", "acquired", "acknowledged", "archived"), in flight only."""
        counts: collections.Counter[str] = collections.Counter()
        for run in self.in_flight:
            counts[run.state.name.lower()] += run.last_offset - run.first_offset + 1
        return counts


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
        kafka_version: str | None = None,
    ) -> None:
        """`kafka_version` ("4.2", "4.3", "4.4"; default the newest) is the Kafka release to
        answer like; it is the `aioshare.kafka.version` config, which may be given instead."""
        if nodes < 1:
            raise ValueError("an embedded cluster needs at least one node")
        # Validated now, so a bad config fails at construction with Kafka's message.
        self.config = BrokerConfig.from_mapping(_with_kafka_version(config or {}, kafka_version))
        self.host = host
        self._nodes = nodes
        self._ports = [port + i if port else 0 for i in range(nodes)]
        # SCRAM credentials: what Kafka keeps in its metadata, seeded here from
        # aioshare.scram.credentials (Kafka: kafka-storage format --add-scram).
        self.scram = ScramCredentialStore()
        for mechanism, user, password, iterations in parse_scram_credentials(
            self.config.aioshare_scram_credentials
        ):
            self.scram.add_password(mechanism, user, password, iterations)
        # Listeners (and their TLS contexts) are built now: a bad key store fails here.
        self._listeners = [
            ListenerSecurity.build(self.config, spec, self.scram)
            for spec in self.config.listener_specs(host, port)
        ]
        self._check_ports(nodes)
        self._data_dir = Path(data_dir) if data_dir is not None else None
        # The SCRAM credential APIs write the store the SASL listeners authenticate against.
        self._modules = (
            tuple(api_modules)
            if api_modules is not None
            else (*apis.DEFAULT_MODULES, ScramCredentialApis(self.scram))
        )
        self._retention_interval = retention_check_interval
        self.delay = ResponseDelay()
        self.memory_pool = RequestMemoryPool(self.config.queued_max_request_bytes)
        self._cluster: Cluster | None = None
        self._registry: ApiRegistry | None = None
        self._servers: dict[int, NodeServer] = {}  # the first listener of each node
        self._node_servers: dict[int, list[NodeServer]] = {}  # every listener of each node
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
            api_versions.limit_to_release(registry, cluster.kafka_version)
            memory_pool = self.memory_pool = RequestMemoryPool(self.config.queued_max_request_bytes)
            for index, node in enumerate(nodes):
                endpoints: dict[str, tuple[str, int]] = {}
                servers = self._node_servers[node.node_id] = []
                for listener in self._listeners:
                    host, port = self._bind_address(listener.spec, index)
                    server = NodeServer(
                        node.node_id,
                        host,
                        port,
                        registry,
                        max_frame_bytes=self.config.socket_request_max_bytes,
                        delay=self.delay,
                        memory_pool=memory_pool,
                        connections_max_idle_ms=self.config.connections_max_idle_ms,
                        max_connections=self.config.max_connections,
                        listener=listener,
                    )
                    servers.append(server)
                    self._servers.setdefault(node.node_id, server)
                    await server.start()
                    endpoints[listener.name] = (host, server.port)
                node.set_listeners(endpoints)
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
        self._servers = {}
        node_servers, self._node_servers = self._node_servers, {}
        for servers in node_servers.values():
            for server in servers:
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
    def kafka_version(self) -> str:
        """The Kafka release this broker answers like ("4.4")."""
        return parse_kafka_version(self.config.aioshare_kafka_version).name

    @property
    def node_ids(self) -> list[int]:
        return self.cluster.node_ids

    @property
    def bootstrap_servers(self) -> str:
        """host:port of every node on the first listener (of `listeners`)."""
        return self.bootstrap(self._listeners[0].name)

    def bootstrap(self, listener: str) -> str:
        """host:port of every node on the named listener (e.g. "SASL_SSL")."""
        name = listener.upper()
        if name not in self.listener_names:
            raise KeyError(f"no listener {listener!r}; the broker has {', '.join(self.listener_names)}")
        return ",".join("{}:{}".format(*node.endpoint(name)) for node in self.cluster.nodes.values())

    @property
    def listener_names(self) -> list[str]:
        return [listener.name for listener in self._listeners]

    @property
    def listeners(self) -> list[ListenerSecurity]:
        return list(self._listeners)

    def bound_listeners(self) -> list[str]:
        """Every bound endpoint as NAME://host:port, by listener, then node."""
        return [
            "{}://{}:{}".format(listener.name, *node.endpoint(listener.name))
            for listener in self._listeners
            for node in self.cluster.nodes.values()
        ]

    def address(self, node_id: int, listener: str | None = None) -> tuple[str, int]:
        node = self.cluster.nodes[node_id]
        return node.endpoint(listener.upper() if listener is not None else None)

    def add_scram_user(
        self, user: str, password: str, mechanism: str = "SCRAM-SHA-256", iterations: int = 4096
    ) -> None:
        """Create or replace a SCRAM credential (what AlterUserScramCredentials upserts)."""
        self.scram.add_password(mechanism, user, password, iterations)

    def _bind_address(self, spec: ListenerSpec, index: int) -> tuple[str, int]:
        if not self.config.listeners:
            return self.host, self._ports[index]
        return spec.host or self.host, spec.port + index if spec.port else 0

    def _check_ports(self, nodes: int) -> None:
        if not self.config.listeners or nodes == 1:
            return
        taken: dict[int, str] = {}
        for listener in self._listeners:
            for index in range(nodes):
                _, port = self._bind_address(listener.spec, index)
                if port and port in taken:
                    raise InvalidBrokerConfig(
                        "listeners",
                        f"node {FIRST_NODE_ID + index} of listener {listener.name} would listen on port "
                        f"{port}, which {taken[port]} uses: with {nodes} nodes, node N listens on the "
                        "listener's port + N - 1, so leave a gap of at least the node count between ports "
                        "(or use port 0)",
                    )
                taken[port] = f"listener {listener.name} of node {FIRST_NODE_ID + index}"

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

    def share_records(self, group: str, topic: str, partition: int = 0) -> ShareRecords | None:
        """What a share group holds of one partition now (None when no member of the group has
        fetched it yet): for tests that count every record's fate.  The leader's live view while
        the group has sessions; after the last one closed, the persisted share state (nothing is
        acquired then: the session close released it)."""
        part = self.partition(topic, partition)
        leader, _created = leader_for(self.registry, self.cluster)
        share_partition = leader.cached(part.leader, group, part)
        if share_partition is not None:
            return ShareRecords(
                share_partition.start_offset, share_partition.end_offset, share_partition.in_flight()
            )
        stored = self.cluster.share_state.read(ShareStateKey(group, part.topic.topic_id, partition))
        if stored is None or stored.start_offset < 0:
            return None
        runs = [
            InFlightRange(
                b.first_offset, b.last_offset, RecordState(b.delivery_state), b.delivery_count, None, None
            )
            for b in stored.batches
            if b.last_offset >= stored.start_offset
        ]
        end = max((run.last_offset for run in runs), default=stored.start_offset - 1)
        return ShareRecords(stored.start_offset, end, runs)

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
        for server in self._node_servers[node_id]:
            await server.stop()

    async def start_node(self, node_id: int) -> None:
        """Restart a stopped node on the same port."""
        cluster = self.cluster
        node = cluster.nodes[node_id]
        if node.alive:
            return
        for server in self._node_servers[node_id]:
            await server.start()
        node.alive = True
        cluster.topics.node_started(node_id)

    async def drop_connections(self, node_id: int | None = None) -> None:
        """Close client connections to one node (or all); listeners keep accepting new ones."""
        targets = [node_id] if node_id is not None else list(self._node_servers)
        for target in targets:
            for server in self._node_servers[target]:
                await server.drop_connections()

    def delay_responses(self, seconds: float, api_keys: Collection[int] | None = None) -> None:
        """Hold every response (or those of `api_keys`) back by `seconds`; 0 turns it off."""
        self.delay.set(seconds, api_keys)


def _with_kafka_version(config: Mapping[str, RawValue], kafka_version: str | None) -> Mapping[str, RawValue]:
    if kafka_version is None:
        return config
    configured = config.get("aioshare.kafka.version")
    if configured is not None and str(configured).strip() != kafka_version.strip():
        raise InvalidBrokerConfig(
            "aioshare.kafka.version",
            f"kafka_version={kafka_version!r} contradicts aioshare.kafka.version={configured!r}",
        )
    return {**config, "aioshare.kafka.version": kafka_version}
