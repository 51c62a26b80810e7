"""Helpers shared by the handler modules: partition leadership checks and leader hints."""

from __future__ import annotations

from collections.abc import Iterable

from aioshare.broker.cluster import Cluster, Node
from aioshare.broker.topics import Partition
from aioshare.protocol.errors import ErrorCode

# AclOperation bits for "everything allowed" (no authorizer configured), as Kafka reports
# them when a client asks for authorized operations.
TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))
CLUSTER_OPERATIONS = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12, 13, 14))
OPERATIONS_NOT_REQUESTED = -(2**31)


def leader_error(partition: Partition, node_id: int, current_leader_epoch: int = -1) -> ErrorCode:
    """Partition.localLogWithEpochOrThrow: the client's leader epoch first, then leadership."""
    if current_leader_epoch >= 0:
        if current_leader_epoch < partition.leader_epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        if current_leader_epoch > partition.leader_epoch:
            return ErrorCode.UNKNOWN_LEADER_EPOCH
    if partition.leader != node_id:
        return ErrorCode.NOT_LEADER_OR_FOLLOWER
    return ErrorCode.NONE


class LeaderHints:
    """Collects the leaders named in NOT_LEADER_OR_FOLLOWER answers, for NodeEndpoints (KIP-951)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._node_ids: set[int] = set()

    def add(self, partition: Partition) -> None:
        if partition.leader >= 0:
            self._node_ids.add(partition.leader)

    def endpoints(self) -> list[Node]:
        return [node for node in self._cluster.endpoints(self._node_ids) if node.alive]


def live_replicas(cluster: Cluster, replicas: Iterable[int]) -> list[int]:
    return [node for node in replicas if cluster.is_alive(node)]
