"""Fixtures for the runtime tests: a fake broker on a manual clock, a fake DLQ, an app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from aioshare.runtime import App, ManualClock

from .fakes import FakeBroker, FakeDeadLetterSink, Recorder, runtime_tasks


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def broker(clock: ManualClock) -> FakeBroker:
    return FakeBroker(clock)


@pytest.fixture
def dlq() -> FakeDeadLetterSink:
    return FakeDeadLetterSink()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_app(
    broker: FakeBroker, dlq: FakeDeadLetterSink, clock: ManualClock, recorder: Recorder
) -> Callable[..., App]:
    """An App wired to the fakes; rand=1.0 makes jittered delays their maximum (deterministic)."""

    def make(**kwargs: Any) -> App:
        kwargs.setdefault("consumer_factory", broker.factory)
        kwargs.setdefault("dead_letter_sink", dlq)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("rand", lambda: 1.0)
        kwargs.setdefault("shutdown_timeout", 5.0)
        app = App("fake:9092", **kwargs)
        app.events.subscribe(recorder)
        return app

    return make


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Every runtime task must be finished when a test's app is stopped."""
    yield
    assert runtime_tasks() == [], f"runtime tasks left running: {runtime_tasks()}"
