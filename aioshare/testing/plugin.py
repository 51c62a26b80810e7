"""pytest plugin for aioshare, registered through the ``pytest11`` entry point.

Fixtures (see docs/testing.md):

* ``aioshare_broker`` - a fresh embedded broker per test (``aioshare.testing.ThreadedBroker``:
  its own thread and loop, so it serves tests on any event loop, and sync tests too);
  ``aioshare_session_broker`` - one for the whole session.  Their configs come from the
  ``aioshare_broker_config`` / ``aioshare_session_broker_config`` fixtures: override them.
  Both answer like the newest Kafka release the embedded broker emulates, or like the one the
  ``aioshare_broker_kafka_version`` ini option names (``4.2``), or the session-scoped
  ``aioshare_broker_kafka_version`` fixture returns: override it to pin a release.
* ``aioshare_topic`` - ``await aioshare_topic(name=None, partitions=1)`` creates a topic on
  ``aioshare_broker`` (a unique name when none is given) and returns its name.
* ``aioshare_produce`` - ``await aioshare_produce(topic, values, key=..., partition=...)``
  returns the offsets.
* ``aioshare_app`` - ``aioshare_app(**App kwargs)``: an App on ``aioshare_broker`` with
  test-friendly defaults; teardown fails the test if one was left running.

To run every test on the session broker, override ``aioshare_broker`` in a conftest.py:
``return aioshare_session_broker``.  ``run_app_until`` and ``AckRecorder`` are imported
from ``aioshare.testing``.

* ``aioshare_kafka`` - a real Apache Kafka (``aioshare.testing.kafka.KafkaCluster``) for the
  session, started from Maven Central's jars on first use; ``aioshare_kafka_config`` overrides
  its broker configs.  A failing test's report carries the broker's log.

Every fixture is synchronous (the broker lives on its own loop), so the plugin needs no
async test plugin and never breaks a project that does not use it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from aioshare.testing.broker import ThreadedBroker

if TYPE_CHECKING:
    from aioshare.broker.config import RawValue
    from aioshare.runtime.app import App
    from aioshare.testing.kafka.cluster import KafkaCluster

__all__ = [
    "aioshare_app",
    "aioshare_broker",
    "aioshare_broker_config",
    "aioshare_broker_kafka_version",
    "aioshare_kafka",
    "aioshare_kafka_config",
    "aioshare_produce",
    "aioshare_session_broker",
    "aioshare_session_broker_config",
    "aioshare_topic",
]

# What aioshare_app passes to App unless the test does: fetches return quickly (a test
# waits on records, not on a 0.5 s long poll) and a stuck handler cannot hang teardown.
# No process reports by default: a test that lists the broker's topics should not find
# ``aioshare-reports`` in them (``aioshare_app(reports=True)`` to test the console's data).
APP_DEFAULTS: dict[str, Any] = {"shutdown_timeout": 5.0, "close_timeout": 5.0, "reports": False}
CONSUMER_DEFAULTS: dict[str, Any] = {"fetch_max_wait": 0.1}


@pytest.fixture
def aioshare_broker_config() -> dict[str, RawValue]:
    """Broker configs for ``aioshare_broker`` on top of TEST_BROKER_CONFIG (override it)."""
    return {}


@pytest.fixture(scope="session")
def aioshare_session_broker_config() -> dict[str, RawValue]:
    """Broker configs for ``aioshare_session_broker`` on top of TEST_BROKER_CONFIG (override it)."""
    return {}


@pytest.fixture(scope="session")
def aioshare_broker_kafka_version(request: pytest.FixtureRequest) -> str | None:
    """The Kafka release the embedded brokers answer like ("4.2"); None: the newest.

    The ``aioshare_broker_kafka_version`` ini option by default; override the fixture to pin one.
    """
    return str(request.config.getini("aioshare_broker_kafka_version")) or None


@pytest.fixture
def aioshare_broker(
    aioshare_broker_config: dict[str, RawValue], aioshare_broker_kafka_version: str | None
) -> Iterator[ThreadedBroker]:
    """A fresh embedded broker for this test."""
    with ThreadedBroker(aioshare_broker_config, kafka_version=aioshare_broker_kafka_version) as broker:
        yield broker


@pytest.fixture(scope="session")
def aioshare_session_broker(
    aioshare_session_broker_config: dict[str, RawValue], aioshare_broker_kafka_version: str | None
) -> Iterator[ThreadedBroker]:
    """One embedded broker for every test of the session (give each test its own topics)."""
    with ThreadedBroker(
        aioshare_session_broker_config, kafka_version=aioshare_broker_kafka_version
    ) as broker:
        yield broker


@pytest.fixture
def aioshare_topic(aioshare_broker: ThreadedBroker) -> Callable[..., Awaitable[str]]:
    """``await aioshare_topic(name=None, partitions=1, config=None)`` -> the topic's name."""
    return aioshare_broker.create_topic


@pytest.fixture
def aioshare_produce(aioshare_broker: ThreadedBroker) -> Callable[..., Awaitable[list[int]]]:
    """``await aioshare_produce(topic, values, key=None, keys=None, partition=None, headers=None)``."""
    return aioshare_broker.produce


@pytest.fixture
def aioshare_app(aioshare_broker: ThreadedBroker) -> Iterator[Callable[..., App]]:
    """``aioshare_app(**kwargs)`` -> an App on ``aioshare_broker``; must be stopped by the test."""
    from aioshare.runtime.app import App

    apps: list[App] = []

    def make(**kwargs: Any) -> App:
        for key, value in APP_DEFAULTS.items():
            kwargs.setdefault(key, value)
        kwargs["consumer_options"] = {**CONSUMER_DEFAULTS, **kwargs.get("consumer_options", {})}
        app = App(aioshare_broker.bootstrap_servers, **kwargs)
        apps.append(app)
        return app

    yield make
    running = [app for app in apps if app.running]
    if running:
        pytest.fail(
            f"{len(running)} aioshare App(s) still running at teardown: stop them "
            "(run_app_until, `async with app`, or `await app.stop()`)",
            pytrace=False,
        )


# -- real Apache Kafka (opt in: nothing starts unless a test asks for ``aioshare_kafka``) -------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "aioshare_broker_kafka_version",
        "Kafka release the embedded broker fixtures answer like, e.g. 4.2 (default: the newest)",
        default="",
    )
    parser.addini(
        "aioshare_kafka_version",
        "Apache Kafka version the aioshare_kafka fixture runs (default: aioshare's newest tested)",
        default="",
    )


@pytest.fixture(scope="session")
def aioshare_kafka_config() -> dict[str, str]:
    """Broker configs laid over ``aioshare.testing.kafka.TEST_BROKER_CONFIG``: override it."""
    return {}


@pytest.fixture(scope="session")
def aioshare_kafka(
    request: pytest.FixtureRequest, aioshare_kafka_config: dict[str, str]
) -> Iterator[KafkaCluster]:
    """A real single-node Apache Kafka for the session, from Maven Central's jars (no Docker).

    The version is the ``aioshare_kafka_version`` ini option, else ``$AIOSHARE_KAFKA_VERSION``, else
    aioshare's newest tested.  Without a JDK and Maven the tests that use it are skipped (failed
    when ``CI`` is set).  A failing test's report shows the broker's log.
    """
    import os

    from aioshare.testing.kafka import DEFAULT_KAFKA_VERSION
    from aioshare.testing.kafka.cluster import KafkaCluster
    from aioshare.testing.kafka.requirement import require

    version = (
        str(request.config.getini("aioshare_kafka_version"))
        or os.environ.get("AIOSHARE_KAFKA_VERSION")
        or DEFAULT_KAFKA_VERSION
    )
    cluster = KafkaCluster(version, broker_config=aioshare_kafka_config)
    require(cluster.start)
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.cleanup()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.failed:
        return report
    from aioshare.testing.kafka.cluster import running_clusters

    for cluster in running_clusters():
        report.sections.append(
            (f"Kafka {cluster.version} broker log ({cluster.work_dir})", cluster.log_tail(lines=40))
        )
    return report
