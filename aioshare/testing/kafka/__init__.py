"""Real Apache Kafka for tests, from Maven Central: no Docker, no downloads outside Maven.

``KafkaCluster`` starts one KRaft node or a controller plus N brokers on loopback;
``kafka_classpath`` resolves a version's jars once; see docs/testing.md ("Real Apache Kafka").
"""

from aioshare.testing.kafka.cluster import TEST_BROKER_CONFIG, KafkaCluster, KafkaNode, KafkaStartError
from aioshare.testing.kafka.maven import (
    DEFAULT_KAFKA_VERSION,
    TESTED_KAFKA_VERSIONS,
    KafkaUnavailable,
    cache_root,
    find_java,
    find_javac,
    kafka_classpath,
)

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "TESTED_KAFKA_VERSIONS",
    "TEST_BROKER_CONFIG",
    "KafkaCluster",
    "KafkaNode",
    "KafkaStartError",
    "KafkaUnavailable",
    "cache_root",
    "find_java",
    "find_javac",
    "kafka_classpath",
]
