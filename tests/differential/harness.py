"""The differential harness: one scenario, three brokers, the observable output compared.

A scenario is a plain ``async def scenario(target: Target) -> Observations``.  It talks to the
broker with raw requests through our client's ``Connection`` (so no client logic hides what the
broker answered), and records what it saw with ``Observations.add(step, value)``.  ``value`` is
made of plain data (ints, strings, tuples, dicts): summaries of responses built by the helpers
below, where ids, host names, ports and timings are replaced by their shape (``"<member>"``,
``"<uuid>"``, ``"<port>"``) so that output that legitimately differs between runs still compares.

``run_everywhere`` runs a scenario on the embedded broker and on real Kafka 4.2.2 and 4.4.0 at
the same time (each on its own topics and groups) and returns the three observation lists; the
tests assert the embedded broker's equals Kafka 4.4.0's, and Kafka 4.2.2's too unless the
scenario pins a difference between the two Kafka versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from aioshare.admin import ShareAdmin
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.client.connection import Connection
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import (
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ProduceRequest,
    ProduceResponse,
    ShareAcknowledgeRequest,
    ShareAcknowledgeResponse,
    ShareFetchRequest,
    ShareFetchResponse,
    ShareGroupDescribeRequest,
    ShareGroupDescribeResponse,
    ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse,
)
from aioshare.protocol.records import RecordToWrite, encode_batch
from aioshare.testing.kafka.cluster import TEST_BROKER_CONFIG, KafkaCluster

EMBEDDED = "embedded"
KAFKA_42 = "kafka-4.2.2"
KAFKA_44 = "kafka-4.4.0"
TARGETS = (EMBEDDED, KAFKA_42, KAFKA_44)

# How long any one wait in a scenario may take (a heartbeat round, a long poll, a lock expiry).
TIMEOUT = 20.0
GROUP_RESOURCE = 32

# The real clusters' test configs (aioshare.testing.kafka.cluster.TEST_BROKER_CONFIG), minus the
# ones that configure Kafka's internal topics and rebalance delay, which the embedded broker
# does not have.
EMBEDDED_CONFIG: dict[str, str] = {
    name: value
    for name, value in TEST_BROKER_CONFIG.items()
    if name.startswith("group.share.") or name in ("num.partitions", "auto.create.topics.enable")
}

# (first offset, last offset, acknowledge types)
Ack = tuple[int, int, Sequence[int]]


class Observations:
    """What one scenario saw on one target, in order: (step, value) pairs."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any]] = []

    def add(self, step: str, value: Any) -> Any:
        self.steps.append((step, value))
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Observations) and self.steps == other.steps

    def __repr__(self) -> str:
        return "\n".join(f"{step}: {value!r}" for step, value in self.steps)


@dataclasses.dataclass
class Topic:
    name: str
    topic_id: uuid.UUID


class Target:
    """One broker a scenario runs against: connections, topics, groups, records."""

    def __init__(self, name: str, host: str, port: int, admin: ShareAdmin) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.admin = admin
        self._connections: list[Connection] = []
        self._topics: list[str] = []
        self._groups: list[str] = []
        # The uuid, member ids and topic ids this target handed out, for `shape`.
        self.names: dict[str, str] = {}

    @property
    def is_embedded(self) -> bool:
        return self.name == EMBEDDED

    async def connect(self) -> Connection:
        connection = await Connection.open(self.host, self.port, request_timeout=TIMEOUT + 10)
        self._connections.append(connection)
        return connection

    async def topic(self, partitions: int = 1) -> Topic:
        """A fresh topic, once its leader serves every partition: a loaded Kafka can answer a
        Produce right after CreateTopics with NOT_LEADER_OR_FOLLOWER until the broker has applied
        the new leadership, and ListOffsets needs the same."""
        name = f"diff-{uuid.uuid4().hex[:10]}"
        topic_id = await self.admin.create_topic(name, partitions)
        self._topics.append(name)
        self.names[name] = "<topic>" if len(self._topics) == 1 else f"<topic{len(self._topics)}>"
        self.names[str(topic_id)] = self.names[name] + "-id"
        connection = await self.connect()
        request = ListOffsetsRequest(
            replica_id=-1,
            topics=[
                ListOffsetsRequest.ListOffsetsTopic(
                    name=name,
                    partitions=[
                        ListOffsetsRequest.ListOffsetsPartition(partition_index=p, timestamp=-1)
                        for p in range(partitions)
                    ],
                )
            ],
        )
        async with asyncio.timeout(TIMEOUT):
            while True:
                response = await connection.send(request, response_type=ListOffsetsResponse)
                if all(p.error_code == ErrorCode.NONE for t in response.topics for p in t.partitions):
                    return Topic(name, topic_id)
                await asyncio.sleep(0.05)  # the broker applies the new leadership shortly

    async def group(self, **configs: str) -> str:
        """A fresh share group reading from the earliest offset (and any other group configs,
        names with '_' for '.')."""
        group = f"diff-{uuid.uuid4().hex[:10]}"
        settings = {"share.auto.offset.reset": "earliest"}
        settings.update({name.replace("_", "."): value for name, value in configs.items()})
        await self.admin.alter_group_config(group, settings)
        await self.wait_for_coordinator(group)
        self._groups.append(group)
        self.names[group] = "<group>" if len(self._groups) == 1 else f"<group{len(self._groups)}>"
        return group

    async def wait_for_coordinator(self, group: str) -> None:
        """Until ``group``'s coordinator answers for it, as every client starts: FindCoordinator
        (on a fresh Kafka this creates __consumer_offsets; until then heartbeats get
        NOT_COORDINATOR), then ShareGroupDescribe until it is neither NOT_COORDINATOR nor
        COORDINATOR_LOAD_IN_PROGRESS (the group's __consumer_offsets partition has a leader before
        its coordinator shard is loaded)."""
        connection = await self.connect()
        loading = (ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
        async with asyncio.timeout(TIMEOUT):
            while True:
                response = await connection.send(
                    FindCoordinatorRequest(key_type=0, coordinator_keys=[group]),
                    response_type=FindCoordinatorResponse,
                )
                if all(c.error_code == ErrorCode.NONE for c in response.coordinators):
                    described = await describe_group(connection, group)
                    if all(g.error_code not in loading for g in described.groups):
                        return
                await asyncio.sleep(0.1)  # Kafka is creating or loading __consumer_offsets

    def member(self, label: str) -> str:
        """A member id of the shape Kafka's clients use (Uuid.toString: 22 characters)."""
        member = str(uuid.uuid4()).replace("-", "")[:22]
        self.names[member] = f"<{label}>"
        return member

    async def produce(
        self, connection: Connection, topic: Topic, count: int, *, per_batch: int = 1, partition: int = 0
    ) -> None:
        """Append `count` records in batches of `per_batch` (one Produce per batch, acks=-1)."""
        for first in range(0, count, per_batch):
            records = [
                RecordToWrite(str(n).encode(), f"v{n}".encode())
                for n in range(first, min(count, first + per_batch))
            ]
            response = await connection.send(
                ProduceRequest(
                    acks=-1,
                    timeout_ms=10_000,
                    topic_data=[
                        ProduceRequest.TopicProduceData(
                            name=topic.name,
                            topic_id=topic.topic_id,
                            partition_data=[
                                ProduceRequest.PartitionProduceData(
                                    index=partition, records=encode_batch(records)
                                )
                            ],
                        )
                    ],
                ),
                response_type=ProduceResponse,
            )
            codes = [p.error_code for t in response.responses for p in t.partition_responses]
            assert codes == [ErrorCode.NONE], (self.name, response)

    async def close(self) -> None:
        for connection in self._connections:
            await connection.close()
        if self._groups:
            with contextlib.suppress(Exception):
                await self.admin.delete_share_groups(self._groups)
        for topic in self._topics:
            with contextlib.suppress(Exception):
                await self.admin.delete_topic(topic)

    def shape(self, value: str | None) -> str | None:
        """An id this target handed out, by its label; anything else unchanged."""
        if value is None:
            return None
        return self.names.get(value, value)


Scenario = Callable[[Target], Awaitable[Observations]]


@contextlib.asynccontextmanager
async def _target(name: str, bootstrap: str) -> AsyncIterator[Target]:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    admin = ShareAdmin(bootstrap)
    await admin.start()
    made = Target(name, host, int(port), admin)
    try:
        yield made
    finally:
        await made.close()
        await admin.close()


@contextlib.asynccontextmanager
async def embedded_broker(
    config: Mapping[str, str] | None = None, *, kafka_version: str | None = None
) -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(
        config={**EMBEDDED_CONFIG, **(config or {})}, kafka_version=kafka_version
    ) as broker:
        yield broker


async def run_everywhere(
    scenario: Scenario, clusters: Mapping[str, KafkaCluster], broker: EmbeddedBroker
) -> dict[str, Observations]:
    """Run `scenario` on every target at once; {target name: observations}."""
    bootstraps = {EMBEDDED: broker.bootstrap_servers}
    bootstraps.update({name: cluster.bootstrap_servers for name, cluster in clusters.items()})

    async def one(name: str) -> Observations:
        async with _target(name, bootstraps[name]) as target:
            async with asyncio.timeout(60):
                return await scenario(target)

    results = await asyncio.gather(*(one(name) for name in bootstraps))
    return dict(zip(bootstraps, results, strict=True))


# ---------------------------------------------------------------------------------- requests


class Member:
    """One share-group member: heartbeats on the coordinator, a share session on the leader."""

    def __init__(self, target: Target, connection: Connection, group: str, label: str) -> None:
        self.target = target
        self.connection = connection
        self.group = group
        self.member_id = target.member(label)
        self.member_epoch = 0
        self.epoch = 0  # the share session epoch of the next request
        self.interval_ms = 500

    async def heartbeat(
        self,
        topics: Sequence[str] | None = None,
        *,
        member_epoch: int | None = None,
        member_id: str | None = None,
    ) -> ShareGroupHeartbeatResponse:
        response = await self.connection.send(
            ShareGroupHeartbeatRequest(
                group_id=self.group,
                member_id=self.member_id if member_id is None else member_id,
                member_epoch=self.member_epoch if member_epoch is None else member_epoch,
                subscribed_topic_names=list(topics) if topics is not None else None,
            ),
            response_type=ShareGroupHeartbeatResponse,
        )
        if response.error_code == ErrorCode.NONE and member_id is None:
            self.member_epoch = response.member_epoch
            self.interval_ms = response.heartbeat_interval_ms
        return response

    async def join(self, topics: Sequence[str], partitions: int = 1) -> ShareGroupHeartbeatResponse:
        """Heartbeat (at the group's interval) until the assignment holds `partitions` partitions."""
        response = await self.heartbeat(topics)
        async with asyncio.timeout(TIMEOUT):
            while assigned_count(response) < partitions:
                # The protocol's own pacing: the next heartbeat is due after the interval.
                await asyncio.sleep(self.interval_ms / 1000)
                response = await self.heartbeat(topics)
        return response

    async def leave(self) -> ShareGroupHeartbeatResponse:
        return await self.heartbeat(member_epoch=-1)

    def fetch_request(
        self,
        topic: Topic,
        partitions: Sequence[int] = (0,),
        acks: Mapping[int, Sequence[Ack]] | None = None,
        *,
        max_records: int = 500,
        max_wait_ms: int = 0,
        min_bytes: int = 1,
        max_bytes: int = 0x7FFFFFFF,
        renew: bool = False,
        epoch: int | None = None,
        forgotten: Sequence[int] = (),
    ) -> ShareFetchRequest:
        acks = acks or {}
        wanted = list(dict.fromkeys([*partitions, *acks]))
        return ShareFetchRequest(
            group_id=self.group,
            member_id=self.member_id,
            share_session_epoch=self.epoch if epoch is None else epoch,
            max_wait_ms=max_wait_ms,
            min_bytes=min_bytes,
            max_bytes=max_bytes,
            max_records=max_records,
            batch_size=max_records,
            share_acquire_mode=0,
            is_renew_ack=renew,
            topics=[
                ShareFetchRequest.FetchTopic(
                    topic_id=topic.topic_id,
                    partitions=[
                        ShareFetchRequest.FetchPartition(
                            partition_index=index,
                            acknowledgement_batches=[
                                ShareFetchRequest.AcknowledgementBatch(
                                    first_offset=first, last_offset=last, acknowledge_types=list(types)
                                )
                                for first, last, types in acks.get(index, ())
                            ],
                        )
                        for index in wanted
                    ],
                )
            ]
            if wanted
            else [],
            forgotten_topics_data=[
                ShareFetchRequest.ForgottenTopic(topic_id=topic.topic_id, partitions=list(forgotten))
            ]
            if forgotten
            else [],
        )

    async def fetch(
        self,
        topic: Topic,
        partitions: Sequence[int] | None = None,
        acks: Mapping[int, Sequence[Ack]] | None = None,
        *,
        connection: Connection | None = None,
        **kwargs: Any,
    ) -> ShareFetchResponse:
        """One ShareFetch; partitions default to (0,) at epoch 0 and () afterwards (incremental)."""
        if partitions is None:
            partitions = (0,) if self.epoch == 0 and kwargs.get("epoch") is None else ()
        request = self.fetch_request(topic, partitions, acks, **kwargs)
        response = await (connection or self.connection).send(
            request, timeout=TIMEOUT + 10, response_type=ShareFetchResponse
        )
        self._advance(response.error_code, request.share_session_epoch)
        return response

    async def fetch_until(
        self, topic: Topic, condition: Callable[[ShareFetchResponse], bool], **kwargs: Any
    ) -> ShareFetchResponse:
        """Long-poll (500 ms) until a response satisfies `condition`, at most TIMEOUT seconds."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                response = await self.fetch(topic, max_wait_ms=500, **kwargs)
                if condition(response) or response.error_code:
                    return response

    async def acknowledge(
        self,
        topic: Topic,
        acks: Mapping[int, Sequence[Ack]],
        *,
        renew: bool = False,
        epoch: int | None = None,
        connection: Connection | None = None,
    ) -> ShareAcknowledgeResponse:
        used = self.epoch if epoch is None else epoch
        request = ShareAcknowledgeRequest(
            group_id=self.group,
            member_id=self.member_id,
            share_session_epoch=used,
            is_renew_ack=renew,
            topics=[
                ShareAcknowledgeRequest.AcknowledgeTopic(
                    topic_id=topic.topic_id,
                    partitions=[
                        ShareAcknowledgeRequest.AcknowledgePartition(
                            partition_index=index,
                            acknowledgement_batches=[
                                ShareAcknowledgeRequest.AcknowledgementBatch(
                                    first_offset=first, last_offset=last, acknowledge_types=list(types)
                                )
                                for first, last, types in batches
                            ],
                        )
                        for index, batches in acks.items()
                    ],
                )
            ],
        )
        response = await (connection or self.connection).send(
            request, timeout=TIMEOUT, response_type=ShareAcknowledgeResponse
        )
        self._advance(response.error_code, used)
        return response

    def _advance(self, error_code: int, used: int) -> None:
        # Session errors leave the epoch alone: the scenario decides what to send next.
        if error_code in (
            ErrorCode.SHARE_SESSION_NOT_FOUND,
            ErrorCode.INVALID_SHARE_SESSION_EPOCH,
            ErrorCode.SHARE_SESSION_LIMIT_REACHED,
            ErrorCode.INVALID_REQUEST,
        ):
            return
        if used == -1:
            self.epoch = 0
        elif used == self.epoch:
            self.epoch = self.epoch + 1


async def alter_configs(
    connection: Connection, group: str, configs: Mapping[str, str | None], *, operation: int = 0
) -> tuple[int, str | None]:
    """IncrementalAlterConfigs on a GROUP resource: (error code, error message)."""
    response = await connection.send(
        IncrementalAlterConfigsRequest(
            resources=[
                IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=GROUP_RESOURCE,
                    resource_name=group,
                    configs=[
                        IncrementalAlterConfigsRequest.AlterableConfig(
                            name=name, config_operation=operation, value=value
                        )
                        for name, value in configs.items()
                    ],
                )
            ]
        ),
        response_type=IncrementalAlterConfigsResponse,
    )
    (result,) = response.responses
    return result.error_code, result.error_message


async def describe_configs(connection: Connection, group: str) -> DescribeConfigsResponse:
    return await connection.send(
        DescribeConfigsRequest(
            resources=[
                DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=GROUP_RESOURCE, resource_name=group, configuration_keys=None
                )
            ],
            include_synonyms=False,
            include_documentation=False,
        ),
        response_type=DescribeConfigsResponse,
    )


async def describe_group(connection: Connection, group: str) -> ShareGroupDescribeResponse:
    return await connection.send(
        ShareGroupDescribeRequest(group_ids=[group], include_authorized_operations=False),
        response_type=ShareGroupDescribeResponse,
    )


async def describe_offsets(
    connection: Connection, group: str, topics: Mapping[str, Sequence[int]] | None
) -> DescribeShareGroupOffsetsResponse:
    Group = DescribeShareGroupOffsetsRequest.DescribeShareGroupOffsetsRequestGroup
    Topic_ = DescribeShareGroupOffsetsRequest.DescribeShareGroupOffsetsRequestTopic
    return await connection.send(
        DescribeShareGroupOffsetsRequest(
            groups=[
                Group(
                    group_id=group,
                    topics=None
                    if topics is None
                    else [Topic_(topic_name=name, partitions=list(parts)) for name, parts in topics.items()],
                )
            ]
        ),
        response_type=DescribeShareGroupOffsetsResponse,
    )


async def list_groups(connection: Connection, types: Sequence[str] = ()) -> ListGroupsResponse:
    return await connection.send(
        ListGroupsRequest(states_filter=[], types_filter=list(types)), response_type=ListGroupsResponse
    )


# ---------------------------------------------------------------------------------- summaries


def assigned_count(response: ShareGroupHeartbeatResponse) -> int:
    if response.assignment is None:
        return 0
    return sum(len(t.partitions) for t in response.assignment.topic_partitions)


def code(value: int) -> str:
    """An error code by its name (readable diffs)."""
    try:
        return ErrorCode(value).name
    except ValueError:
        return str(value)


def acquired(response: ShareFetchResponse, index: int = 0) -> list[tuple[int, int, int]]:
    return [
        (r.first_offset, r.last_offset, r.delivery_count)
        for t in response.responses
        for p in t.partitions
        if p.partition_index == index
        for r in p.acquired_records
    ]


def fetch_summary(target: Target, response: ShareFetchResponse) -> dict[str, Any]:
    """Top-level error, then per partition (in response order): errors, acquired ranges."""
    partitions = []
    for t in response.responses:
        for p in t.partitions:
            entry: dict[str, Any] = {"topic": target.shape(str(t.topic_id)), "p": p.partition_index}
            if p.error_code:
                entry["error"] = code(p.error_code)
            if p.acknowledge_error_code:
                entry["ack_error"] = code(p.acknowledge_error_code)
            if p.acquired_records:
                entry["acquired"] = [
                    (r.first_offset, r.last_offset, r.delivery_count) for r in p.acquired_records
                ]
            if p.current_leader is not None and p.current_leader.leader_id >= 0:
                entry["leader"] = (p.current_leader.leader_id, p.current_leader.leader_epoch)
            partitions.append(entry)
    summary: dict[str, Any] = {"error": code(response.error_code), "partitions": partitions}
    if response.error_code == ErrorCode.NONE:
        summary["lock_ms"] = response.acquisition_lock_timeout_ms
    return summary


def ack_summary(target: Target, response: ShareAcknowledgeResponse) -> dict[str, Any]:
    return {
        "error": code(response.error_code),
        "partitions": sorted(
            (target.shape(str(t.topic_id)), p.partition_index, code(p.error_code))
            for t in response.responses
            for p in t.partitions
        ),
    }


def heartbeat_summary(target: Target, response: ShareGroupHeartbeatResponse) -> dict[str, Any]:
    summary: dict[str, Any] = {"error": code(response.error_code)}
    if response.error_code:
        return summary
    summary["member"] = target.shape(response.member_id)
    summary["epoch"] = response.member_epoch
    summary["interval_ms"] = response.heartbeat_interval_ms
    summary["assignment"] = (
        None
        if response.assignment is None
        else sorted(
            (target.shape(str(t.topic_id)), tuple(sorted(t.partitions)))
            for t in response.assignment.topic_partitions
        )
    )
    return summary


def describe_summary(target: Target, response: ShareGroupDescribeResponse) -> list[dict[str, Any]]:
    groups = []
    for group in response.groups:
        entry: dict[str, Any] = {"group": target.shape(group.group_id), "error": code(group.error_code)}
        if not group.error_code:
            entry.update(
                state=group.group_state,
                epoch=group.group_epoch,
                assignment_epoch=group.assignment_epoch,
                assignor=group.assignor_name,
                members=sorted(
                    (
                        target.shape(m.member_id),
                        m.member_epoch,
                        m.client_id,
                        m.rack_id,
                        tuple(sorted(str(target.shape(n)) for n in m.subscribed_topic_names)),
                        tuple(
                            sorted(
                                (
                                    target.shape(str(t.topic_id)),
                                    target.shape(t.topic_name),
                                    tuple(sorted(t.partitions)),
                                )
                                for t in m.assignment.topic_partitions
                            )
                        ),
                    )
                    for m in group.members
                ),
            )
        groups.append(entry)
    return groups


def offsets_summary(target: Target, response: DescribeShareGroupOffsetsResponse) -> list[Any]:
    out: list[Any] = []
    for group in response.groups:
        out.append(
            (
                target.shape(group.group_id),
                code(group.error_code),
                sorted(
                    (
                        target.shape(t.topic_name),
                        target.shape(str(t.topic_id)),
                        p.partition_index,
                        code(p.error_code),
                        p.start_offset,
                        p.lag,
                        p.leader_epoch,
                    )
                    for t in group.topics
                    for p in t.partitions
                ),
            )
        )
    return out


# The embedded broker emulating each release, paired with that release (run_per_version).
EMULATED = {"embedded-4.2": KAFKA_42, "embedded-4.4": KAFKA_44}


async def run_per_version(
    scenario: Scenario, clusters: Mapping[str, KafkaCluster], config: Mapping[str, str] | None = None
) -> dict[str, Observations]:
    """Run `scenario` at once on an embedded broker emulating 4.2 (``--kafka-version 4.2``),
    one emulating 4.4, and real Kafka 4.2.2 and 4.4.0; {"embedded-4.2": ..., "kafka-4.2.2": ...}.

    For behaviour that differs between the releases: `assert_same_per_version` compares each
    embedded broker with the release it emulates."""
    async with (
        embedded_broker(config, kafka_version="4.2") as broker_42,
        embedded_broker(config, kafka_version="4.4") as broker_44,
    ):
        bootstraps = {
            "embedded-4.2": (EMBEDDED, broker_42.bootstrap_servers),
            "embedded-4.4": (EMBEDDED, broker_44.bootstrap_servers),
        }
        bootstraps.update({name: (name, cluster.bootstrap_servers) for name, cluster in clusters.items()})

        async def one(key: str) -> Observations:
            name, bootstrap = bootstraps[key]
            async with _target(name, bootstrap) as target:
                async with asyncio.timeout(60):
                    return await scenario(target)

        results = await asyncio.gather(*(one(key) for key in bootstraps))
    return dict(zip(bootstraps, results, strict=True))


def assert_same_per_version(results: Mapping[str, Observations]) -> None:
    """Each embedded broker saw what the Kafka release it emulates saw."""
    for embedded, real in EMULATED.items():
        assert results[embedded].steps == results[real].steps, f"{embedded} differs from {real}"


def assert_same(results: Mapping[str, Observations], *, kafka_versions_differ: bool = False) -> None:
    """The embedded broker saw what Kafka 4.4.0 saw; so did Kafka 4.2.2 unless the scenario pins
    a difference between the two versions (and then asserts it itself)."""
    assert results[EMBEDDED].steps == results[KAFKA_44].steps
    if not kafka_versions_differ:
        assert results[KAFKA_42].steps == results[KAFKA_44].steps


async def one_member(
    target: Target, records: int, *, per_batch: int = 1
) -> tuple[Topic, str, Connection, Member]:
    """A fresh one-partition topic holding ``records`` records (batches of ``per_batch``), a fresh
    group, a connection, and member "m1" joined to it: most scenarios start here."""
    topic = await target.topic()
    group = await target.group()
    conn = await target.connect()
    await target.produce(conn, topic, records, per_batch=per_batch)
    member = Member(target, conn, group, "m1")
    await member.join([topic.name])
    return topic, group, conn, member


async def list_groups_filtered(
    connection: Connection, types: Sequence[str], states: Sequence[str]
) -> ListGroupsResponse:
    """ListGroups with a type and a state filter (v5)."""
    return await connection.send(
        ListGroupsRequest(states_filter=list(states), types_filter=list(types)),
        response_type=ListGroupsResponse,
    )


def differing_steps(results: Mapping[str, Observations]) -> str:
    """The steps where a target saw something else than Kafka 4.4.0, for a failure's message."""
    reference = dict(results[KAFKA_44].steps)
    lines = []
    for name, observations in results.items():
        for step, value in observations.steps:
            if name != KAFKA_44 and reference.get(step, "<missing>") != value:
                lines.append(
                    f"{step}:\n  {name}: {value!r}\n  {KAFKA_44}: {reference.get(step, '<missing>')!r}"
                )
    return "\n".join(lines)


def assert_same_explained(results: Mapping[str, Observations]) -> None:
    """assert_same, with the differing steps in the failure's message."""
    assert results[EMBEDDED].steps == results[KAFKA_44].steps, differing_steps(results)
    assert results[KAFKA_42].steps == results[KAFKA_44].steps, differing_steps(results)
