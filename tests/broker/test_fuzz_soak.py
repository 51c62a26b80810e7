"""A bounded run of benchmarks.fuzz_broker in CI: mutated frames of every API and version the
broker serves, deterministic seed, no traceback in the broker's log, the broker still serves."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.messages import MetadataRequest
from benchmarks.fuzz_broker import ErrorCounter, corpus, fuzz
from tests.broker.test_server_frames import RawClient

FRAMES = 100_000
SECONDS = 25.0


async def test_mutated_frames_of_every_api_cause_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    counter = ErrorCounter()
    counter.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(counter)
    try:
        with caplog.at_level(logging.ERROR):
            async with EmbeddedBroker() as broker:
                await broker.create_topic("fuzz", partitions=1)
                host, port = broker.address(broker.node_ids[0])
                versions = broker.registry.versions()
                assert len(corpus(versions)) > 100
                stats = await fuzz(
                    host, port, versions, frames=FRAMES, seed=20261202, connections=8, seconds=SECONDS
                )
                assert stats["sent"] > 1000
                # The fuzzer's connections are closed; the broker notices each close on its own
                # loop turn, and only then gives back what their partial frames had reserved.
                async with asyncio.timeout(10):
                    while broker.memory_pool.in_use >= 1 << 20:  # noqa: ASYNC110 -- pool has no event
                        await asyncio.sleep(0.05)
                client = await RawClient.connect(broker)
                assert (await client.request(MetadataRequest(topics=None), 12)).brokers
                await client.close()
    finally:
        root.removeHandler(counter)
    assert counter.count == 0, counter.first
