"""The pytest plugin, as a project using aioshare sees it: a test file run by pytester.

The inner tests use every fixture: the function and session brokers, topics, producing,
apps, ``run_app_until`` and the ``AckRecorder`` assertions (including how they fail).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

INNER_TESTS = """
import pytest

import aioshare
from aioshare.testing import AckRecorder, run_app_until

SEEN = {}


async def test_outcomes_per_record(aioshare_app, aioshare_topic, aioshare_produce):
    topic = await aioshare_topic()
    dlq = await aioshare_topic(f"{topic}.dlq")
    offsets = await aioshare_produce(topic, ["ok", "poison", "ok", "gone"], partition=0)
    assert offsets == [0, 1, 2, 3]
    app = aioshare_app()

    @app.handler(topic, group_id="g1", max_attempts=2, dead_letter_topic=dlq,
                 retry=aioshare.Backoff(initial=0.05, max=0.05, jitter=False))
    async def handle(msg):
        if msg.value == b"poison":
            raise ValueError("cannot parse")
        if msg.value == b"gone":
            raise aioshare.Reject("410 gone")

    recorder = await run_app_until(app, handled=4, timeout=20)
    recorder.assert_accepted([0, 2], exactly=True)
    recorder.assert_dead_lettered([1])
    recorder.assert_rejected([3])
    recorder.assert_released([1])          # the first delivery failed and was retried
    recorder.assert_outcomes({0: "accepted", 1: "dead_lettered", 2: "accepted", 3: "rejected"})
    assert recorder.outcomes()[1] == ["released", "dead_lettered"]
    assert len(recorder.kinds("retried")) == 1
    assert not app.running


async def test_assertions_explain_what_happened(aioshare_app, aioshare_topic, aioshare_produce):
    topic = await aioshare_topic()
    await aioshare_produce(topic, [b"a", b"b"])
    app = aioshare_app()

    @app.handler(topic, group_id="g2")
    async def handle(msg):
        if msg.offset == 1:
            raise aioshare.Reject("no")

    recorder = await run_app_until(app, handled=2)
    with pytest.raises(AssertionError, match=r"expected accepted, got \\{1: 'rejected'\\}"):
        recorder.assert_accepted([0, 1])
    with pytest.raises(AssertionError, match=r"never released: \\[0\\]"):
        recorder.assert_released([0])
    with pytest.raises(AssertionError, match="not handled within"):
        await recorder.wait_for(3, timeout=0.2)


async def test_run_app_until_times_out_with_the_outcomes_so_far(aioshare_app, aioshare_topic, aioshare_produce):
    topic = await aioshare_topic()
    await aioshare_produce(topic, [b"only one"])
    app = aioshare_app()

    @app.handler(topic, group_id="g3")
    async def handle(msg):
        pass

    with pytest.raises(AssertionError, match=r"2 records were not handled within 3"):
        await run_app_until(app, handled=2, timeout=3)
    assert not app.running  # stopped anyway


async def test_a_recorder_attached_by_hand(aioshare_broker, aioshare_app):
    topic = await aioshare_broker.create_topic(partitions=2)
    await aioshare_broker.produce(topic, [b"x", b"y"], keys=[b"k1", b"k2"])
    app = aioshare_app()

    @app.handler(topic, group_id="g4")
    async def handle(msg):
        pass

    await aioshare_broker.set_group_config("g4", {"share.auto.offset.reset": "earliest"})
    recorder = AckRecorder(app)
    async with app:
        await recorder.wait_for(2)
    assert recorder.handled() == 2
    assert sum(len(recorder.final(topic, p)) for p in (0, 1)) == 2


def test_apps_publish_no_process_reports_unless_asked(aioshare_app):
    assert aioshare_app().reports is False
    assert aioshare_app(reports=True).reports is True


def test_a_sync_test_uses_the_broker_too(aioshare_broker):
    async def create(broker):
        return await broker.create_topic("sync-topic", 3)

    aioshare_broker.call(create)
    assert aioshare_broker.call(lambda b: _partitions(b, "sync-topic")) == 3


async def _partitions(broker, name):
    return len(broker.cluster.topics.get(name).partitions)


async def test_session_broker_first(aioshare_session_broker):
    SEEN["first"] = aioshare_session_broker.bootstrap_servers
    await aioshare_session_broker.create_topic("shared")


async def test_session_broker_second(aioshare_session_broker, aioshare_broker):
    assert aioshare_session_broker.bootstrap_servers == SEEN["first"]
    assert aioshare_broker.bootstrap_servers != SEEN["first"]
    offsets = await aioshare_session_broker.produce("shared", [b"still here"])
    assert offsets == [0]
"""


def test_the_fixtures_in_a_project(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_with_aioshare=INNER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=8)


def test_a_running_app_fails_teardown(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_leaky="""
import asyncio

async def test_leaves_it_running(aioshare_app, aioshare_topic):
    topic = await aioshare_topic()
    app = aioshare_app()

    @app.handler(topic, group_id="g")
    async def handle(msg):
        pass

    await app.start()
    LEAKED.append(app)


LEAKED = []


def test_clean_up():
    # the leaked app's loop is gone: stopping it is not possible, only reporting it
    assert LEAKED
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*1 aioshare App(s) still running at teardown*"])


def test_the_plugin_needs_no_async_plugin(pytester: pytest.Pytester) -> None:
    # A project without pytest-asyncio still loads the plugin and can use the broker.
    pytester.makepyfile(
        test_plain="""
def test_plain(aioshare_broker):
    assert aioshare_broker.bootstrap_servers.startswith("127.0.0.1:")
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)
