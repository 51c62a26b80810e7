"""Fixtures of the web console's tests: a broker for the module, an HTTP session, and
``cluster``: the embedded broker or real Apache Kafka (every tested version)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import aiohttp
import pytest

from aioshare.admin import ShareAdmin
from aioshare.testing.broker import ThreadedBroker
from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS

CLUSTERS = ["embedded", *(f"kafka-{v}" for v in TESTED_KAFKA_VERSIONS)]


@pytest.fixture(scope="module")
def broker() -> Iterator[ThreadedBroker]:
    with ThreadedBroker() as started:
        yield started


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Cluster:
    """The cluster one test runs against: the embedded broker or a real Kafka.

    The same steps on both, through Kafka's protocol (ShareAdmin, an aiokafka producer): real
    Kafka runs with ``auto.create.topics.enable=false``, so every topic is created first.
    The topics and groups a test made are deleted afterwards (a real Kafka serves the session).
    """

    def __init__(self, name: str, bootstrap_servers: str, admin: ShareAdmin) -> None:
        self.name = name
        self.bootstrap_servers = bootstrap_servers
        self.admin = admin
        self.real = name != "embedded"
        self.topics: list[str] = []
        self.groups: list[str] = []
        self._producer: Any = None

    async def create_topic(self, name: str, partitions: int = 1) -> str:
        await self.admin.create_topic(name, partitions)
        self.topics.append(name)
        return name

    def forget_later(self, *names: str, groups: Sequence[str] = ()) -> None:
        """Topics (and groups) made by someone else in the test, to delete afterwards."""
        self.topics.extend(names)
        self.groups.extend(groups)

    async def produce(
        self,
        topic: str,
        values: Sequence[bytes],
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> list[int]:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=1)
            await producer.start()
            self._producer = producer
        futures = [
            await self._producer.send(topic, v, partition=partition, headers=list(headers)) for v in values
        ]
        return [(await f).offset for f in futures]

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if not self.real:
            return  # the module's embedded broker goes away with the module
        with contextlib.suppress(Exception):
            if self.groups:
                await self.admin.delete_share_groups(self.groups)
        for topic in self.topics:
            with contextlib.suppress(Exception):
                await self.admin.delete_topic(topic)


@pytest.fixture(params=CLUSTERS)
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    if request.param == "embedded":
        bootstrap = request.getfixturevalue("broker").bootstrap_servers
    else:
        real_kafka: Callable[[str], Any] = request.getfixturevalue("real_kafka")
        bootstrap = real_kafka(request.param.removeprefix("kafka-")).bootstrap_servers
    async with ShareAdmin(bootstrap) as admin:
        made = Cluster(request.param, bootstrap, admin)
        try:
            yield made
        finally:
            await made.close()
