"""Cluster-wide broker state shared by every node of an embedded cluster.

Kafka keeps this in the metadata image every broker caches (brokers, topics, leaders) plus a
few controller-owned counters (producer id blocks). Here it is one object the per-node servers
and the API handlers share: nodes and their liveness, the topic registry, the group coordinator
mapping, producer id allocation, and the extension points other handler modules plug into
(config resources of other types, e.g. GROUP for share-group configs).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from aioshare.broker.config import BrokerConfig
from aioshare.broker.config_resources import (
    AlterOp,
    ConfigChange,
    ConfigResourceHandler,
    ResourceType,
)
from aioshare.broker.flush import broker_flush_policy
from aioshare.broker.group_config_store import GroupConfigStore
from aioshare.broker.kafka_versions import KafkaVersion, parse_kafka_version
from aioshare.broker.listeners import CURRENT_LISTENER
from aioshare.broker.log import PartitionLog
from aioshare.broker.share_state import ShareStateStore
from aioshare.broker.topics import TopicRegistry
from aioshare.protocol.types import kafka_uuid_str, random_kafka_uuid

META_FILE = "meta.json"
# Kafka's offsets.topic.num.partitions default: a group's coordinator is the leader of
# partition abs(hash(group id)) % 50 of __consumer_offsets.
OFFSETS_TOPIC_PARTITIONS = 50
# Producer ids are handed out in blocks, and only the end of the current block is persisted
# (Kafka's ProducerIdManager does the same through the controller).
PRODUCER_ID_BLOCK = 1000

# Re-exported: the config-resource types used to live here.
__all__ = ["AlterOp", "Cluster", "ConfigChange", "ConfigResourceHandler", "Node", "ResourceType"]


class Node:
    """One broker node: id, rack, liveness, and one endpoint per listener.

    `host` and `port` are those of the listener the current request arrived on (Kafka answers
    Metadata, FindCoordinator and NodeEndpoints with the endpoints of the request's listener),
    or of the first listener outside a request.
    """

    __slots__ = ("_default", "alive", "endpoints", "node_id", "rack")

    def __init__(
        self, node_id: int, host: str, port: int, rack: str | None = None, alive: bool = False
    ) -> None:
        self.node_id = node_id
        self.rack = rack
        self.alive = alive
        self._default = "PLAINTEXT"
        self.endpoints: dict[str, tuple[str, int]] = {self._default: (host, port)}

    def set_listeners(self, endpoints: dict[str, tuple[str, int]]) -> None:
        """Replace the endpoints; the first one is the default."""
        if not endpoints:
            raise ValueError("a node needs at least one listener")
        self.endpoints = dict(endpoints)
        self._default = next(iter(endpoints))

    def endpoint(self, listener: str | None = None) -> tuple[str, int]:
        name = listener if listener is not None else CURRENT_LISTENER.get()
        found = self.endpoints.get(name) if name is not None else None
        return found if found is not None else self.endpoints[self._default]

    @property
    def host(self) -> str:
        return self.endpoint()[0]

    @property
    def port(self) -> int:
        return self.endpoint()[1]

    @port.setter
    def port(self, port: int) -> None:
        self.endpoints[self._default] = (self.endpoints[self._default][0], port)

    def __repr__(self) -> str:
        return (
            f"Node(node_id={self.node_id}, endpoints={self.endpoints}, rack={self.rack}, alive={self.alive})"
        )


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units, int32 overflow)."""
    value = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        value = (31 * value + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def kafka_abs(value: int) -> int:
    """Kafka's Utils.abs: Integer.MIN_VALUE maps to 0 instead of staying negative."""
    return 0 if value == -(2**31) else abs(value)


class Cluster:
    def __init__(
        self,
        config: BrokerConfig,
        nodes: Sequence[Node],
        data_dir: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        # The Kafka release this cluster answers like (aioshare.kafka.version).
        self.kafka_version: KafkaVersion = parse_kafka_version(config.aioshare_kafka_version)
        self.nodes: dict[int, Node] = {node.node_id: node for node in nodes}
        self.data_dir = data_dir
        self._clock = clock
        self.config_resources: dict[int, ConfigResourceHandler] = {}
        self.topics = TopicRegistry(config, sorted(self.nodes), data_dir)
        # Shared by the group coordinator and the partition leaders, as Kafka's share
        # coordinator and GROUP config resources are.
        self.share_state = ShareStateStore(
            data_dir / "share-state" if data_dir is not None else None,
            flush_policy=broker_flush_policy(config),
        )
        # The flusher checks it (log.flush.interval.ms) and a clean close flushes it.
        self.topics.add_flush_target(self.share_state)
        self.group_configs = GroupConfigStore(config, data_dir)
        self.config_resources[ResourceType.GROUP] = self.group_configs
        self.cluster_id = kafka_uuid_str(random_kafka_uuid())
        self._producer_id_block_end = 0
        self._load_meta()
        self._next_producer_id = max(self._producer_id_block_end, self.topics.max_producer_id + 1)

    # ------------------------------------------------------------------ time

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ------------------------------------------------------------------ nodes

    @property
    def node_ids(self) -> list[int]:
        return sorted(self.nodes)

    def alive_nodes(self) -> list[Node]:
        return [node for node_id, node in sorted(self.nodes.items()) if node.alive]

    def alive_node_ids(self) -> list[int]:
        return [node.node_id for node in self.alive_nodes()]

    def is_alive(self, node_id: int) -> bool:
        node = self.nodes.get(node_id)
        return node is not None and node.alive

    def controller_id(self) -> int:
        # KRaft brokers report some live broker as the "controller": clients send it admin
        # requests, which it forwards. Any live node can serve them here.
        alive = self.alive_node_ids()
        return alive[0] if alive else -1

    def endpoints(self, node_ids: Iterable[int]) -> list[Node]:
        """The nodes behind `node_ids`, for NodeEndpoints in NOT_LEADER_OR_FOLLOWER answers."""
        return [self.nodes[node_id] for node_id in sorted(set(node_ids)) if node_id in self.nodes]

    # ------------------------------------------------------------------ coordinators

    def group_coordinator(self, group_id: str) -> Node | None:
        """The node that coordinates `group_id`: leader of its __consumer_offsets partition.

        The offsets topic is modelled as fully replicated with partition p preferring node
        p mod N, so when that node is down the next live node takes over, as a replica would.
        """
        partition = kafka_abs(java_string_hash(group_id)) % OFFSETS_TOPIC_PARTITIONS
        ids = self.node_ids
        for step in range(len(ids)):
            node = self.nodes[ids[(partition + step) % len(ids)]]
            if node.alive:
                return node
        return None

    # ------------------------------------------------------------------ producer ids

    def allocate_producer_id(self) -> int:
        producer_id = self._next_producer_id
        self._next_producer_id += 1
        if self._next_producer_id > self._producer_id_block_end:
            self._producer_id_block_end = producer_id + PRODUCER_ID_BLOCK
            self._save_meta()
        return producer_id

    # ------------------------------------------------------------------ persistence

    def _load_meta(self) -> None:
        if self.data_dir is None:
            return
        path = self.data_dir / META_FILE
        if path.exists():
            meta = json.loads(path.read_text())
            self.cluster_id = str(meta["cluster_id"])
            self._producer_id_block_end = int(meta.get("producer_id_block_end", 0))
        else:
            self._save_meta()

    def _save_meta(self) -> None:
        if self.data_dir is None:
            return
        path = self.data_dir / META_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"cluster_id": self.cluster_id, "producer_id_block_end": self._producer_id_block_end})
        )
        os.replace(tmp, path)

    def close(self) -> None:
        self.topics.close()


async def wait_for_change(logs: Iterable[PartitionLog], max_wait: float) -> bool:
    """Wait until any of `logs` changes (append, log start move, leader move) or `max_wait` seconds pass.

    Returns True when woken by a change. This is the long-poll primitive for Fetch (and for
    ShareFetch, which may also wake itself through `PartitionLog.notify`).
    """
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    watched = list(logs)
    for log in watched:
        log.add_listener(wake)
    try:
        async with asyncio.timeout(max_wait):
            await woken
        return True
    except TimeoutError:
        return False
    finally:
        for log in watched:
            log.remove_listener(wake)
