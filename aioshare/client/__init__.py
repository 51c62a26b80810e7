"""Talking to Kafka brokers: connections, SASL/TLS, cluster metadata and coordinators.

Used by the share consumer and the admin client; the embedded broker does not depend on it.
"""

from aioshare.client.cluster import Cluster
from aioshare.client.connection import Connection
from aioshare.client.metadata import (
    BrokerNode,
    ClusterMetadata,
    PartitionMetadata,
    TopicMetadata,
    TopicRef,
    parse_bootstrap,
)
from aioshare.client.sasl import SaslConfig, ScramClient

__all__ = [
    "BrokerNode",
    "Cluster",
    "ClusterMetadata",
    "Connection",
    "PartitionMetadata",
    "SaslConfig",
    "ScramClient",
    "TopicMetadata",
    "TopicRef",
    "parse_bootstrap",
]
