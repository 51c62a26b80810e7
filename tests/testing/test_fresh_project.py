"""``pip install 'aioshare[testing]'`` and a test file: nothing else for a project to set up.

The inner project has no pytest configuration at all (no ini, no conftest): pytest-asyncio runs
in its default *strict* mode, so the test says ``@pytest.mark.asyncio`` - unlike this repository,
whose own pyproject sets ``asyncio_mode = auto``.  The same goes for anyio's marker.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

# docs/testing.md's first example, as a newcomer would paste it.
FRESH_TEST = """
import pytest

import aioshare
from aioshare.testing import run_app_until


@pytest.mark.asyncio
async def test_bad_emails_are_dead_lettered(aioshare_app, aioshare_topic, aioshare_produce, aioshare_broker):
    topic = await aioshare_topic()
    dlq = await aioshare_topic(f"{topic}.dlq")
    await aioshare_produce(topic, ["ann@example.com", "not-an-address", "bob@example.com"])

    app = aioshare_app()

    @app.handler(topic, group_id="mailers", max_attempts=2, dead_letter_topic=dlq,
                 retry=aioshare.Backoff(initial=0.05, max=0.05))
    async def send(msg: aioshare.Message[bytes]) -> None:
        if b"@" not in msg.value:
            raise ValueError("not an address")

    recorder = await run_app_until(app, handled=3, timeout=30)
    recorder.assert_accepted([0, 2], exactly=True)
    recorder.assert_released([1])
    recorder.assert_dead_lettered([1])
    assert aioshare_broker.bootstrap_servers.startswith("127.0.0.1:")


@pytest.mark.anyio
async def test_with_anyio(aioshare_topic, aioshare_produce):
    topic = await aioshare_topic()
    assert await aioshare_produce(topic, ["a", "b"]) == [0, 1]
"""


def test_the_testing_extra_brings_pytest_and_pytest_asyncio() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    testing = project["optional-dependencies"]["testing"]
    assert {req.split(">")[0].split("=")[0].strip() for req in testing} == {"pytest", "pytest-asyncio"}
    assert "test" in project["optional-dependencies"]  # the repository's own dev extra stays


def test_a_fresh_project_needs_no_pytest_configuration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fresh=FRESH_TEST)
    assert not list(pytester.path.glob("*.ini")) and not list(pytester.path.glob("*.toml"))
    assert not (pytester.path / "setup.cfg").exists() and not (pytester.path / "conftest.py").exists()
    # (pytest-asyncio warns that its asyncio_default_fixture_loop_scope is unset: a warning,
    # which docs/testing.md says how to silence; the tests pass without it.)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)
    # The configuration pytest used is none: pytest-asyncio in its default strict mode.
    result.stdout.fnmatch_lines(["*mode=Mode.STRICT*"])
    result.stdout.no_fnmatch_line("*configfile*")
