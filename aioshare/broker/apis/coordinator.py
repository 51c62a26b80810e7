"""FindCoordinator (10): GROUP keys, TRANSACTION keys (not supported), SHARE keys (v6).

ListGroups and DeleteGroups are served by the group coordinator's module (share step),
which registers them with the same registry.
"""

from __future__ import annotations

from typing import NamedTuple

from aioshare.broker.cluster import Cluster, Node
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import FindCoordinatorRequest, FindCoordinatorResponse
from aioshare.protocol.types import parse_kafka_uuid

API_KEY = 10
GROUP = 0
TRANSACTION = 1
SHARE = 2


class Resolution(NamedTuple):
    node: Node | None
    error: ErrorCode
    message: str | None


def register(registry: ApiRegistry, cluster: Cluster) -> None:
    async def find(context: RequestContext, request: FindCoordinatorRequest) -> FindCoordinatorResponse:
        return find_coordinator(cluster, context.api_version, request)

    registry.register(API_KEY, find)


def find_coordinator(
    cluster: Cluster, version: int, request: FindCoordinatorRequest
) -> FindCoordinatorResponse:
    key_type = request.key_type if version >= 1 else GROUP
    if version >= 4:
        coordinators = []
        for key in request.coordinator_keys:
            found = resolve(cluster, version, key_type, key)
            node = found.node
            coordinators.append(
                FindCoordinatorResponse.Coordinator(
                    key=key,
                    node_id=node.node_id if node else -1,
                    host=node.host if node else "",
                    port=node.port if node else -1,
                    error_code=found.error,
                    error_message=found.message,
                )
            )
        return FindCoordinatorResponse(coordinators=coordinators)
    found = resolve(cluster, version, key_type, request.key)
    node = found.node
    response = FindCoordinatorResponse(
        error_code=found.error,
        node_id=node.node_id if node else -1,
        host=node.host if node else "",
        port=node.port if node else -1,
    )
    if version >= 1:
        response.error_message = found.message
    return response


def resolve(cluster: Cluster, version: int, key_type: int, key: str) -> Resolution:
    if key_type == GROUP:
        return _found(cluster.group_coordinator(key))
    if key_type == TRANSACTION:
        # No transaction coordinator here (EndTxn & co. are not served, so clients never
        # start transactions); Kafka answers this way while __transaction_state is unavailable.
        return Resolution(None, ErrorCode.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
    if key_type == SHARE and version >= 6:
        return share_coordinator(cluster, key)
    return Resolution(None, ErrorCode.INVALID_REQUEST, f"Unknown coordinator type {key_type}")


def share_coordinator(cluster: Cluster, key: str) -> Resolution:
    """Key "groupId:topicId:partition" → the node leading that topic partition."""
    parts = key.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        return Resolution(None, ErrorCode.INVALID_REQUEST, f"Invalid share coordinator key {key}")
    try:
        topic_id = parse_kafka_uuid(parts[1])
        partition_index = int(parts[2])
    except ValueError:
        return Resolution(None, ErrorCode.INVALID_REQUEST, f"Invalid share coordinator key {key}")
    topic = cluster.topics.by_id(topic_id)
    partition = topic.partition(partition_index) if topic is not None else None
    if partition is None or not cluster.is_alive(partition.leader):
        return Resolution(None, ErrorCode.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
    return _found(cluster.nodes[partition.leader])


def _found(node: Node | None) -> Resolution:
    if node is None:
        return Resolution(None, ErrorCode.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
    return Resolution(node, ErrorCode.NONE, None)
