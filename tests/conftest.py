"""What every test directory shares: real Apache Kafka clusters, one per version, for the session.

``real_kafka(version)`` starts a single-node Kafka the first time a test asks for that version and
keeps it for the rest of the session (tests/realkafka, the runtime's end-to-end scenarios).  Under
CI a Kafka that cannot start fails the test; elsewhere it is skipped with what to install.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from aioshare.testing.kafka.cluster import KafkaCluster
from aioshare.testing.kafka.requirement import require
from tests.compiled import stale_builds

# "Kafka 4.4.0 (1 broker): ready in 4.1 s", for the run's summary.
KAFKA_STARTUPS: list[str] = []


def started(cluster: KafkaCluster) -> None:
    KAFKA_STARTUPS.append(
        f"Kafka {cluster.version} ({len(cluster.brokers)} broker{'s' if len(cluster.brokers) > 1 else ''}): "
        f"ready in {cluster.startup_seconds:.1f} s"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    # A compiled module imports in place of its source: testing an edit needs a rebuild.
    stale = stale_builds()
    if stale:
        pytest.exit(
            "stale compiled modules, `make compiled` rebuilds them: " + "; ".join(stale), returncode=2
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if KAFKA_STARTUPS:
        terminalreporter.write_sep("-", "real Apache Kafka started")
        for line in KAFKA_STARTUPS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def real_kafka() -> Iterator[Callable[[str], KafkaCluster]]:
    clusters: dict[str, KafkaCluster] = {}

    def get(version: str) -> KafkaCluster:
        cluster = clusters.get(version)
        if cluster is None:
            cluster = KafkaCluster(version)
            require(cluster.start)
            started(cluster)
            clusters[version] = cluster
        return cluster

    try:
        yield get
    finally:
        for cluster in clusters.values():
            cluster.stop()
            cluster.cleanup()
