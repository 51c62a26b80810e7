"""`aioshare broker`: runs in the foreground, announces its address, stops cleanly on signals."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from aioshare.client.connection import Connection
from aioshare.protocol.messages import MetadataRequest, MetadataResponse

from ._cli import announced_addresses, start_cli_broker


async def start_broker(*args: str) -> tuple[asyncio.subprocess.Process, list[tuple[str, int]]]:
    process, line = await start_cli_broker(*args)
    return process, announced_addresses(line)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_broker_serves_then_stops_on_signal(stop_signal: signal.Signals) -> None:
    process, addresses = await start_broker("--nodes", "2", "--config", "num.partitions=3")
    try:
        assert len(addresses) == 2
        host, port = addresses[1]
        connection = await Connection.open(host, port, client_id="cli-test")
        try:
            # auto.create.topics.enable is on by default, as in Kafka: the topic appears with
            # the configured num.partitions.
            request = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="jobs")])
            response = await connection.send(request, response_type=MetadataResponse)
            assert len(response.brokers) == 2
            assert len(response.topics[0].partitions) == 3
        finally:
            await connection.close()
        process.send_signal(stop_signal)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_invalid_config_is_rejected_with_the_rule() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioshare.cli.main",
        "broker",
        "--port",
        "0",
        "--config",
        "group.share.delivery.count.limit=99",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"group.share.delivery.count.limit" in stderr
