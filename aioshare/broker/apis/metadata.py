"""Metadata (3) and DescribeCluster (60): brokers, topics, partitions, leaders, topic ids."""

from __future__ import annotations

from aioshare.broker.apis._common import (
    CLUSTER_OPERATIONS,
    OPERATIONS_NOT_REQUESTED,
    TOPIC_OPERATIONS,
    live_replicas,
)
from aioshare.broker.cluster import Cluster
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.broker.topics import Topic, validate_topic_name
from aioshare.protocol.errors import BrokerError, ErrorCode
from aioshare.protocol.messages import (
    DescribeClusterRequest,
    DescribeClusterResponse,
    MetadataRequest,
    MetadataResponse,
)
from aioshare.protocol.types import NIL_UUID

METADATA = 3
DESCRIBE_CLUSTER = 60
_BROKERS_ENDPOINT = 1  # DescribeCluster EndpointType: 1 brokers, 2 controllers
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})


def register(registry: ApiRegistry, cluster: Cluster) -> None:
    async def metadata(context: RequestContext, request: MetadataRequest) -> MetadataResponse:
        return describe(cluster, context.api_version, request)

    async def describe_cluster(
        context: RequestContext, request: DescribeClusterRequest
    ) -> DescribeClusterResponse:
        return describe_cluster_response(cluster, context.api_version, request)

    registry.register(METADATA, metadata)
    registry.register(DESCRIBE_CLUSTER, describe_cluster)


def describe(cluster: Cluster, version: int, request: MetadataRequest) -> MetadataResponse:
    if (
        version < 12
        and request.topics
        and any(t.name is None or t.topic_id != NIL_UUID for t in request.topics)
    ):
        return _invalid_topic_ids(request)
    include_ops = version >= 8 and request.include_topic_authorized_operations
    topics: list[MetadataResponse.MetadataResponseTopic] = []
    if request.topics is None or (version == 0 and not request.topics):
        topics = [_topic(cluster, topic, include_ops) for topic in cluster.topics]
    else:
        # Kafka's rule: the request flag (v4+; always on before) and the broker switch.
        auto_create = (
            request.allow_auto_topic_creation or version < 4
        ) and cluster.config.auto_create_topics_enable
        for wanted in request.topics:
            topics.append(_lookup(cluster, wanted, auto_create, include_ops))
    response = MetadataResponse(
        brokers=[
            MetadataResponse.MetadataResponseBroker(
                node_id=node.node_id, host=node.host, port=node.port, rack=node.rack
            )
            for node in cluster.alive_nodes()
        ],
        cluster_id=cluster.cluster_id,
        controller_id=cluster.controller_id(),
        topics=topics,
    )
    if 8 <= version <= 10 and request.include_cluster_authorized_operations:
        response.cluster_authorized_operations = CLUSTER_OPERATIONS
    return response


def _invalid_topic_ids(request: MetadataRequest) -> MetadataResponse:
    """Kafka's answer to topic ids (or null names) in Metadata v10/v11.

    KafkaApis.handleTopicMetadataRequest throws InvalidRequestException ("Topic name can not
    be null for version ..." / "Topic IDs are not supported in requests for version ...") and
    MetadataRequest.getErrorResponse answers it: every requested topic with INVALID_REQUEST,
    a null name turned into "" (the response name is not nullable before v12), no brokers.
    """
    return MetadataResponse(
        topics=[
            MetadataResponse.MetadataResponseTopic(
                error_code=ErrorCode.INVALID_REQUEST,
                name=wanted.name if wanted.name is not None else "",
                topic_id=wanted.topic_id,
                is_internal=False,
                partitions=[],
            )
            for wanted in request.topics or ()
        ]
    )


def _lookup(
    cluster: Cluster, wanted: MetadataRequest.MetadataRequestTopic, auto_create: bool, include_ops: bool
) -> MetadataResponse.MetadataResponseTopic:
    if wanted.name is None:
        topic = cluster.topics.by_id(wanted.topic_id)
        if topic is None or wanted.topic_id == NIL_UUID:
            return MetadataResponse.MetadataResponseTopic(
                error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None, topic_id=wanted.topic_id
            )
        return _topic(cluster, topic, include_ops)
    name = wanted.name
    topic = cluster.topics.get(name)
    if topic is not None:
        return _topic(cluster, topic, include_ops)
    try:
        validate_topic_name(name)
    except BrokerError as exc:
        return MetadataResponse.MetadataResponseTopic(error_code=exc.code, name=name)
    if not auto_create:
        return MetadataResponse.MetadataResponseTopic(
            error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name
        )
    try:
        topic = cluster.topics.create(name, alive=cluster.alive_node_ids())
    except BrokerError as exc:
        return MetadataResponse.MetadataResponseTopic(error_code=exc.code, name=name)
    # Kafka answers LEADER_NOT_AVAILABLE once while an auto-created topic propagates; creation
    # is synchronous here, so the topic is described straight away (clients accept both).
    return _topic(cluster, topic, include_ops)


def _topic(cluster: Cluster, topic: Topic, include_ops: bool) -> MetadataResponse.MetadataResponseTopic:
    partitions = []
    for partition in topic.partitions:
        isr = live_replicas(cluster, partition.replicas)
        partitions.append(
            MetadataResponse.MetadataResponsePartition(
                error_code=ErrorCode.NONE if partition.leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
                partition_index=partition.index,
                leader_id=partition.leader,
                leader_epoch=partition.leader_epoch,
                replica_nodes=list(partition.replicas),
                isr_nodes=isr,
                offline_replicas=[node for node in partition.replicas if node not in isr],
            )
        )
    return MetadataResponse.MetadataResponseTopic(
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=topic.name in INTERNAL_TOPICS,
        partitions=partitions,
        topic_authorized_operations=TOPIC_OPERATIONS if include_ops else OPERATIONS_NOT_REQUESTED,
    )


def describe_cluster_response(
    cluster: Cluster, version: int, request: DescribeClusterRequest
) -> DescribeClusterResponse:
    response = DescribeClusterResponse(cluster_id=cluster.cluster_id, controller_id=cluster.controller_id())
    if version >= 1 and request.endpoint_type != _BROKERS_ENDPOINT:
        response.error_code = ErrorCode.MISMATCHED_ENDPOINT_TYPE
        response.error_message = (
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
        )
        response.endpoint_type = _BROKERS_ENDPOINT
        return response
    include_fenced = version >= 2 and request.include_fenced_brokers
    for node in cluster.nodes.values():
        if not node.alive and not include_fenced:
            continue
        broker = DescribeClusterResponse.DescribeClusterBroker(
            broker_id=node.node_id, host=node.host, port=node.port, rack=node.rack
        )
        if version >= 2:
            broker.is_fenced = not node.alive
        response.brokers.append(broker)
    response.brokers.sort(key=lambda b: b.broker_id)
    if request.include_cluster_authorized_operations:
        response.cluster_authorized_operations = CLUSTER_OPERATIONS
    return response
