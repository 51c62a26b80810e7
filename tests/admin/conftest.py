"""The admin tests' fixtures: a 3-node embedded broker with `Faults` in front of its handlers,
a ShareAdmin on it, and the scene of scene.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from aioshare.admin import ShareAdmin
from aioshare.testing import ThreadedBroker

from .faults import Faults
from .scene import Scene, scene_on


@pytest.fixture
def broker() -> Iterator[ThreadedBroker]:
    with ThreadedBroker(nodes=3) as running:
        yield running


@pytest.fixture
async def faults(broker: ThreadedBroker) -> Faults:
    installed = Faults(broker)
    await installed.install()
    return installed


@pytest.fixture
async def admin(broker: ThreadedBroker, faults: Faults) -> AsyncIterator[ShareAdmin]:
    async with ShareAdmin(broker.bootstrap_servers, request_timeout=10.0, retry_backoff=0.001) as client:
        yield client


@pytest.fixture
async def scene(broker: ThreadedBroker, faults: Faults) -> AsyncIterator[Scene]:
    async with scene_on(broker) as built:
        yield built
