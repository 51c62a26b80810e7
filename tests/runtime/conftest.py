"""Fixtures for the runtime tests.

The runtime runs on the real share layer against the embedded broker (``kafka``, a fresh
``ThreadedBroker`` per test): ``kafka_app(**kwargs)`` builds an ``App`` on it with the
``recorder`` subscribed, and ``await ready(app, **group_config)`` creates the app's topics and
starts its groups at the earliest offset (with a 1 s lock when asked: ``lock_ms=1000``).
Count what became of every record with ``recorder`` (the runtime's events) and
``kafka.share_records(group, topic)`` (the broker's own view).  The embedded broker is the one
share-group fake; ``dlq`` only stands in for the dead-letter producer where a test needs it to
fail or stall on cue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from aioshare.runtime import App
from aioshare.testing import ThreadedBroker, prepare
from tests.kit import live_tasks as runtime_tasks

from .kit import FakeDeadLetterSink, Ready, Recorder


@pytest.fixture
def kafka(aioshare_broker: ThreadedBroker) -> ThreadedBroker:
    """A fresh embedded broker for this test (TEST_BROKER_CONFIG: 1 s minimum lock, fast joins)."""
    return aioshare_broker


@pytest.fixture
def kafka_app(aioshare_app: Callable[..., App], recorder: Recorder) -> Callable[..., App]:
    """``kafka_app(**kwargs)`` -> an App on ``kafka`` with ``recorder`` subscribed to its events;
    ``rand=1.0`` makes jittered delays their maximum (deterministic)."""

    def make(**kwargs: Any) -> App:
        kwargs.setdefault("rand", lambda: 1.0)
        app = aioshare_app(**kwargs)
        app.events.subscribe(recorder)
        return app

    return make


@pytest.fixture
def ready() -> Ready:
    """``await ready(app, partitions=1, lock_ms=None, **group_config)``: create the app's topics
    (``partitions`` each) and start its groups at the earliest offset; ``lock_ms`` sets the
    groups' ``share.record.lock.duration.ms``; other keywords are group configs with ``_`` for
    ``.`` (``delivery_count_limit="2"``)."""

    async def ready(
        app: App, *, partitions: int = 1, lock_ms: int | None = None, **group_config: str
    ) -> None:
        configs = {name.replace("_", "."): value for name, value in group_config.items()}
        configs = {
            f"share.{name}" if not name.startswith("share.") else name: v for name, v in configs.items()
        }
        if lock_ms is not None:
            configs["share.record.lock.duration.ms"] = str(lock_ms)
        await prepare(app, partitions=partitions, group_config=configs)

    return ready


@pytest.fixture
def dlq() -> FakeDeadLetterSink:
    return FakeDeadLetterSink()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Every runtime task must be finished when a test's app is stopped."""
    yield
    assert runtime_tasks() == [], f"runtime tasks left running: {runtime_tasks()}"
