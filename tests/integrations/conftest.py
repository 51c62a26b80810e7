"""The example apps, loaded from examples/ (not a package), and the broker they run against."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.testing import TEST_BROKER_CONFIG

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    module_name = f"aioshare_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    # On the test's loop, as `--embedded` runs it: the web app, the App and the broker share it.
    async with EmbeddedBroker(config=TEST_BROKER_CONFIG) as embedded:
        yield embedded
