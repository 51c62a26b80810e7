"""aioshare.testing.kafka: the launcher's error paths, its cleanup, and `aioshare kafka start`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from aioshare.admin import ShareAdmin
from aioshare.testing.kafka import DEFAULT_KAFKA_VERSION, KafkaUnavailable, find_java, kafka_classpath
from aioshare.testing.kafka.cluster import KafkaCluster, KafkaStartError, running_clusters
from aioshare.testing.kafka.requirement import require, require_kafka


@pytest.fixture(autouse=True)
def _kafka_jars() -> None:
    require_kafka(DEFAULT_KAFKA_VERSION)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_leaves_no_process_behind() -> None:
    cluster = KafkaCluster(brokers=2)
    try:
        require(cluster.start)
        pids = [n.process.pid for n in cluster.nodes if n.process is not None]
        assert len(pids) == 3  # a controller and two brokers
        assert cluster in running_clusters()
        assert len(cluster.bootstrap_servers.split(",")) == 2
    finally:
        cluster.stop()
    assert cluster not in running_clusters()
    assert [pid for pid in pids if _alive(pid)] == []
    assert cluster.work_dir.exists()  # logs are kept until cleanup()
    cluster.cleanup()
    assert not cluster.work_dir.exists()


def test_a_broker_that_cannot_start_fails_with_its_log() -> None:
    cluster = KafkaCluster(broker_config={"num.network.threads": "zero"})
    with pytest.raises(KafkaStartError) as failed:
        cluster.start()
    # The reason is Kafka's own, from the log tail the error carries.
    assert "num.network.threads" in str(failed.value)
    assert all(not n.running for n in cluster.nodes)
    assert cluster not in running_clusters()
    cluster.cleanup()


def test_a_callers_jvm_options_override_the_launchers_defaults(tmp_path: Path) -> None:
    """A log4j2 configuration of the caller's (e.g. DEBUG for Kafka's share loggers) is the one used."""
    config = tmp_path / "log4j2.properties"
    config.write_text(
        "appender.out.type = Console\nappender.out.name = STDOUT\nappender.out.layout.type = PatternLayout\n"
        "appender.out.layout.pattern = CALLER-CONFIG %p %m%n\n"
        "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = STDOUT\n"
    )
    cluster = KafkaCluster(jvm_options=("-XX:+UseSerialGC", f"-Dlog4j2.configurationFile={config}"))
    try:
        require(cluster.start)
        (node,) = cluster.nodes
        assert "CALLER-CONFIG INFO" in node.log_path.read_text(errors="replace")
    finally:
        cluster.stop()
        cluster.cleanup()


def test_no_jdk_is_a_clear_kafka_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KafkaUnavailable, match="needs a JDK"):
        find_java()


def test_no_maven_is_a_clear_kafka_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An empty cache forces a resolution; a PATH with java but no mvn cannot do it.
    java_dir = tmp_path / "bin"
    java_dir.mkdir()
    (java_dir / "java").symlink_to(find_java())
    monkeypatch.setenv("AIOSHARE_KAFKA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(java_dir))
    with pytest.raises(KafkaUnavailable, match="no `mvn` on PATH"):
        kafka_classpath("4.4.0")


def test_require_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> None:
        raise KafkaUnavailable("no JDK here")

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI"):
        require(unavailable)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="install a JDK"):
        require(unavailable)


async def test_cli_start_announces_serves_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioshare.cli.main",
        "kafka",
        "start",
        "--config",
        "num.partitions=2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 120)).decode()
        assert line.startswith(f"aioshare kafka {DEFAULT_KAFKA_VERSION} listening on 127.0.0.1:"), line
        bootstrap = line.split(" listening on ")[1].split()[0]
        async with ShareAdmin(bootstrap) as admin:
            await admin.create_topic("launched")
            assert "launched" in {t.name for t in await admin.list_topics()}
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # The JVM went with it: nothing answers on its port any more.
    host, port = bootstrap.split(":")
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.close()
