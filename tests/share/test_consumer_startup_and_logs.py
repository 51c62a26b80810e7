"""ShareConsumer startup retries, outage logging and the missing-topic warning, on the embedded broker."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from aioshare.admin import ShareAdmin
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.errors import ConfigError, KafkaTimeoutError
from aioshare.protocol.messages import MetadataRequest
from aioshare.share import ShareConsumer

FAST = {
    "group.share.min.heartbeat.interval.ms": 200,
    "group.share.heartbeat.interval.ms": 200,
}


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value)
        await producer.flush()
    finally:
        await producer.stop()


async def earliest_group(bootstrap: str) -> str:
    group = f"g-{uuid.uuid4().hex[:8]}"
    async with ShareAdmin(bootstrap) as admin:
        await admin.alter_group_config(group, {"share.auto.offset.reset": "earliest"})
    return group


async def receive(consumer: ShareConsumer, within: float = 20.0) -> list[bytes | None]:
    async with asyncio.timeout(within):
        while True:
            got = await consumer.getmany(timeout=0.5)
            if got:
                return [m.value for m in got]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def client_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """Lines of the client (not of the embedded broker) logged at exactly `level`."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.name.startswith("aioshare.") and not r.name.startswith("aioshare.broker")
    ]


# -- startup ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, "30", float("inf"), True])
def test_start_timeout_is_validated(bad: object) -> None:
    with pytest.raises(ConfigError, match="start_timeout"):
        ShareConsumer("t", group_id="g", start_timeout=bad)  # type: ignore[arg-type]


async def test_connection_dropped_during_first_metadata_request_is_retried() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("jobs")
        # The first Metadata request is held back, and its connection dropped under it.
        broker.delay_responses(1.0, [MetadataRequest.API_KEY])
        consumer = ShareConsumer("jobs", group_id="g", bootstrap_servers=broker.bootstrap_servers)
        start = asyncio.ensure_future(consumer.start())
        await asyncio.sleep(0.3)
        assert not start.done()
        await broker.drop_connections()
        broker.delay_responses(0)
        async with asyncio.timeout(10):
            await start  # no NoBrokersAvailable: bootstrap was tried again
        assert consumer._cluster.metadata.brokers
        await consumer.close()


async def test_broker_down_at_startup_is_waited_for() -> None:
    async with EmbeddedBroker() as broker:
        await broker.create_topic("jobs")
        bootstrap = broker.bootstrap_servers
        await broker.stop_node(broker.node_ids[0])
        consumer = ShareConsumer("jobs", group_id="g", bootstrap_servers=bootstrap, start_timeout=10)
        start = asyncio.ensure_future(consumer.start())
        await asyncio.sleep(1.0)
        assert not start.done()
        await broker.start_node(broker.node_ids[0])
        async with asyncio.timeout(10):
            await start
        await consumer.close()


async def test_dead_port_fails_after_start_timeout_naming_the_addresses() -> None:
    ports = [free_port(), free_port()]
    bootstrap = ",".join(f"127.0.0.1:{p}" for p in ports)
    consumer = ShareConsumer("jobs", group_id="g", bootstrap_servers=bootstrap, start_timeout=1.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(KafkaTimeoutError) as info:
        await consumer.start()
    took = loop.time() - began
    assert 0.9 <= took < 3.0, took
    for port in ports:
        assert f"127.0.0.1:{port}" in str(info.value)
    assert await consumer.close() == {}
    with pytest.raises(Exception, match="restarted"):
        await consumer.start()


# -- logging ---------------------------------------------------------------------------------


async def test_an_outage_logs_one_warning_and_one_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aioshare")
    async with EmbeddedBroker(config=FAST) as broker:
        await broker.create_topic("jobs")
        group = await earliest_group(broker.bootstrap_servers)
        await produce(broker.bootstrap_servers, "jobs", [b"before"])
        async with ShareConsumer(
            "jobs", group_id=group, bootstrap_servers=broker.bootstrap_servers, fetch_max_wait=0.1
        ) as consumer:
            assert await receive(consumer) == [b"before"]
            caplog.clear()
            node = broker.node_ids[0]
            host, port = broker.address(node)
            await broker.stop_node(node)
            await asyncio.sleep(3.0)  # heartbeats, fetches and metadata all fail meanwhile
            assert len(client_lines(caplog, logging.WARNING)) == 1
            await broker.start_node(node)
            await produce(broker.bootstrap_servers, "jobs", [b"after"])
            assert b"after" in await receive(consumer)
        warnings = client_lines(caplog, logging.WARNING)
        infos = client_lines(caplog, logging.INFO)
        assert len(warnings) == 1, warnings
        assert f"{host}:{port}" in warnings[0]
        assert len(infos) == 1, infos
        assert f"{host}:{port}" in infos[0] and "after" in infos[0]
        assert not client_lines(caplog, logging.ERROR)
        # What happened in between is there, at DEBUG.
        assert len(client_lines(caplog, logging.DEBUG)) > 2


async def test_a_missing_topic_is_reported_once_and_picked_up_when_created(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aioshare")
    async with EmbeddedBroker(config={**FAST, "auto.create.topics.enable": False}) as broker:
        group = await earliest_group(broker.bootstrap_servers)
        async with ShareConsumer(
            "later", group_id=group, bootstrap_servers=broker.bootstrap_servers, fetch_max_wait=0.1
        ) as consumer:
            assert consumer._topic_watch is not None
            consumer._topic_watch.check_every = 0.1  # many checks: still one warning
            assert await consumer.getmany(timeout=1.5) == []
            warnings = client_lines(caplog, logging.WARNING)
            assert len(warnings) == 1, warnings
            assert "'later'" in warnings[0]
            await broker.create_topic("later")
            await produce(broker.bootstrap_servers, "later", [b"hello"])
            assert await receive(consumer) == [b"hello"]
            for _ in range(50):  # the watch looks again every 0.1 s
                if any("'later' exists now" in line for line in client_lines(caplog, logging.INFO)):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("no INFO once the topic exists")
        assert len(client_lines(caplog, logging.WARNING)) == 1
