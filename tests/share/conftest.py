"""The share-layer tests' default cluster: aioshare's embedded broker and real Apache Kafka.

Modules that also run on librdkafka's mock (test_consumer_scenarios.py) define their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS

from .consumer_clusters import EmbeddedCluster, RealKafkaCluster


@pytest.fixture(params=["embedded", *(f"kafka-{v}" for v in TESTED_KAFKA_VERSIONS)])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[EmbeddedCluster | RealKafkaCluster]:
    made: EmbeddedCluster | RealKafkaCluster
    if request.param == "embedded":
        made = await EmbeddedCluster.start()
    else:
        kafka = request.getfixturevalue("real_kafka")(request.param.removeprefix("kafka-"))
        made = RealKafkaCluster(kafka, lock_ms=30_000)
    try:
        yield made
    finally:
        await made.close()
