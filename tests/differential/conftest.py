"""Fixtures of the differential suite: the embedded broker (per test, on the test's loop) and the
session's real Kafka clusters (tests/conftest.py), one of each tested version."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS
from aioshare.testing.kafka.cluster import KafkaCluster

from .harness import KAFKA_42, KAFKA_44, embedded_broker


@pytest.fixture(scope="session")
def clusters(real_kafka: Callable[[str], KafkaCluster]) -> dict[str, KafkaCluster]:
    """{"kafka-4.2.2": cluster, "kafka-4.4.0": cluster}."""
    made = {f"kafka-{version}": real_kafka(version) for version in TESTED_KAFKA_VERSIONS}
    assert set(made) == {KAFKA_42, KAFKA_44}, "the suite compares exactly these two versions"
    return made


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with embedded_broker() as running:
        yield running
