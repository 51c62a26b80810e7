"""Real Apache Kafka for tests, from Maven Central: no Docker, no downloads outside Maven.

See docs/testing.md ("Real Kafka").
"""

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
    "KafkaUnavailable",
    "cache_root",
    "find_java",
    "find_javac",
    "kafka_classpath",
]
