"""What the client knows about the cluster, sans-IO: fed Metadata and FindCoordinator answers
and the current time, it answers lookups by topic name or id, leaders and coordinators."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from aioshare.protocol._codec import NIL_UUID
from aioshare.protocol.errors import BrokerError, ConfigError, error_for_code
from aioshare.protocol.messages import MetadataResponse

__all__ = [
    "BrokerNode",
    "ClusterMetadata",
    "PartitionMetadata",
    "TopicMetadata",
    "TopicRef",
    "parse_bootstrap",
]

TopicRef = str | uuid.UUID
"""A topic by name or by topic id."""

_DEFAULT_PORT = 9092


@dataclass(frozen=True, slots=True)
class BrokerNode:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True, slots=True)
class PartitionMetadata:
    topic: str
    topic_id: uuid.UUID
    partition: int
    leader: int
    """Node id of the leader, -1 when there is none."""
    leader_epoch: int
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    offline_replicas: tuple[int, ...] = ()
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    name: str
    topic_id: uuid.UUID
    """The nil UUID when the broker's Metadata version predates topic ids (v10)."""
    partitions: Mapping[int, PartitionMetadata]
    is_internal: bool = False


def parse_bootstrap(servers: str | Iterable[str]) -> list[tuple[str, int]]:
    """Addresses from "host:port,host:port" or a list of "host:port"; "[::1]:9092" for IPv6.

    The port defaults to 9092.
    """
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    addresses: list[tuple[str, int]] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":") if rest else ""
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
        else:
            host, port_text = item, ""  # a bare name, or an IPv6 address without brackets
        try:
            port = int(port_text) if port_text else _DEFAULT_PORT
        except ValueError:
            raise ConfigError(f"bad port in bootstrap server {item!r}") from None
        if not host or not 0 < port < 65536:
            raise ConfigError(f"bad bootstrap server {item!r}")
        addresses.append((host, port))
    if not addresses:
        raise ConfigError("no bootstrap servers given")
    return addresses


class ClusterMetadata:
    """Brokers, topics, partition leaders and group coordinators, as last reported.

    `update` applies a MetadataResponse: a full one (all topics requested) replaces the topic
    table, a partial one replaces only the topics it names. Times are whatever clock the caller
    uses (the shell passes the loop's monotonic time).
    """

    def __init__(self) -> None:
        self._brokers: dict[int, BrokerNode] = {}
        self._by_name: dict[str, TopicMetadata] = {}
        self._by_id: dict[uuid.UUID, TopicMetadata] = {}
        self._coordinators: dict[tuple[int, str], BrokerNode] = {}
        self.cluster_id: str | None = None
        self.controller_id = -1
        self.updated_at: float | None = None
        self._stale = True

    # ----------------------------------------------------------------------------- updates

    def update(self, response: MetadataResponse, now: float, *, full: bool) -> dict[TopicRef, BrokerError]:
        """Applies a response; returns the per-topic errors (topics with one are dropped).

        Partitions whose reported leader epoch is older than the one already known keep the
        known state: a broker that has not caught up must not move a leader backwards.
        """
        self._brokers = {b.node_id: BrokerNode(b.node_id, b.host, b.port, b.rack) for b in response.brokers}
        self.cluster_id = response.cluster_id
        self.controller_id = response.controller_id
        old_by_name = self._by_name
        if full:
            self._by_name = {}
        errors: dict[TopicRef, BrokerError] = {}
        for topic in response.topics:
            ref: TopicRef = topic.name if topic.name else topic.topic_id
            if topic.error_code:
                errors[ref] = error_for_code(topic.error_code)
                self._drop(topic.name, topic.topic_id)
                continue
            if not topic.name:
                continue  # a success without a name is not something we could look up
            previous = old_by_name.get(topic.name)
            if previous is not None and previous.topic_id != topic.topic_id:
                previous = None  # deleted and recreated: the old epochs mean nothing now
            self._drop(topic.name, topic.topic_id)
            self._store(_topic_from(topic, previous))
        if full:
            self._by_id = {t.topic_id: t for t in self._by_name.values() if t.topic_id != NIL_UUID}
        self.updated_at = now
        self._stale = False
        return errors

    def _drop(self, name: str | None, topic_id: uuid.UUID) -> None:
        found = self._by_name.pop(name, None) if name else None
        if found is not None and found.topic_id != NIL_UUID:
            self._by_id.pop(found.topic_id, None)
        if topic_id != NIL_UUID:
            by_id = self._by_id.pop(topic_id, None)
            if by_id is not None:
                self._by_name.pop(by_id.name, None)

    def _store(self, topic: TopicMetadata) -> None:
        self._by_name[topic.name] = topic
        if topic.topic_id != NIL_UUID:
            self._by_id[topic.topic_id] = topic

    def invalidate(self) -> None:
        """Marks everything stale (after NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_ID, ...)."""
        self._stale = True

    def needs_refresh(self, now: float, max_age: float) -> bool:
        return self.refresh_in(now, max_age) <= 0

    def refresh_in(self, now: float, max_age: float) -> float:
        """Seconds until the metadata is due for a refresh (0 when it already is)."""
        if self._stale or self.updated_at is None:
            return 0.0
        return max(0.0, self.updated_at + max_age - now)

    # ----------------------------------------------------------------------------- lookups

    @property
    def brokers(self) -> Mapping[int, BrokerNode]:
        return MappingProxyType(self._brokers)

    @property
    def topics(self) -> Mapping[str, TopicMetadata]:
        return MappingProxyType(self._by_name)

    def node(self, node_id: int) -> BrokerNode | None:
        """A broker from Metadata, else a coordinator FindCoordinator named."""
        found = self._brokers.get(node_id)
        if found is not None:
            return found
        for node in self._coordinators.values():
            if node.node_id == node_id:
                return node
        return None

    def topic(self, topic: TopicRef) -> TopicMetadata | None:
        if isinstance(topic, uuid.UUID):
            return self._by_id.get(topic)
        return self._by_name.get(topic)

    def topic_id(self, name: str) -> uuid.UUID | None:
        found = self._by_name.get(name)
        return found.topic_id if found is not None else None

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        found = self._by_id.get(topic_id)
        return found.name if found is not None else None

    def partition(self, topic: TopicRef, partition: int) -> PartitionMetadata | None:
        found = self.topic(topic)
        return found.partitions.get(partition) if found is not None else None

    def leader_for(self, topic: TopicRef, partition: int) -> BrokerNode | None:
        """The partition's leader, or None when the topic, partition or leader is unknown."""
        found = self.partition(topic, partition)
        if found is None or found.leader < 0:
            return None
        return self._brokers.get(found.leader)

    # ----------------------------------------------------------------------------- coordinators

    def coordinator(self, key: str, key_type: int = 0) -> BrokerNode | None:
        return self._coordinators.get((key_type, key))

    def set_coordinator(self, key: str, key_type: int, node: BrokerNode) -> None:
        self._coordinators[(key_type, key)] = node

    def invalidate_coordinator(self, key: str, key_type: int = 0) -> None:
        """Forgets a coordinator (after NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE)."""
        self._coordinators.pop((key_type, key), None)


def _topic_from(
    topic: MetadataResponse.MetadataResponseTopic, previous: TopicMetadata | None
) -> TopicMetadata:
    assert topic.name
    partitions: dict[int, PartitionMetadata] = {}
    for p in topic.partitions:
        known = previous.partitions.get(p.partition_index) if previous is not None else None
        if known is not None and p.leader_epoch >= 0 and known.leader_epoch > p.leader_epoch:
            partitions[p.partition_index] = known
            continue
        partitions[p.partition_index] = PartitionMetadata(
            topic=topic.name,
            topic_id=topic.topic_id,
            partition=p.partition_index,
            leader=p.leader_id,
            leader_epoch=p.leader_epoch,
            replicas=tuple(p.replica_nodes),
            isr=tuple(p.isr_nodes),
            offline_replicas=tuple(p.offline_replicas),
            error_code=p.error_code,
        )
    return TopicMetadata(
        name=topic.name,
        topic_id=topic.topic_id,
        partitions=MappingProxyType(partitions),
        is_internal=topic.is_internal,
    )
