"""A FakeCluster that also answers the share-group admin APIs from a small in-memory model.

Coordinator APIs are answered only by the node `coordinator` names (others say NOT_COORDINATOR),
ListOffsets only by the partition's leader; `inject[api_key]` is a queue of error codes the
next requests of that API answer with (group/resource level) before the model is consulted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aioshare.protocol._codec import ApiMessage
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import (
    AlterShareGroupOffsetsResponse,
    CreateTopicsResponse,
    DeleteGroupsResponse,
    DeleteShareGroupOffsetsResponse,
    DeleteTopicsResponse,
    DescribeConfigsResponse,
    DescribeShareGroupOffsetsResponse,
    IncrementalAlterConfigsResponse,
    ListGroupsResponse,
    ListOffsetsResponse,
    RequestHeader,
    ShareGroupDescribeResponse,
)
from tests.client.fakes import FakeCluster, FakeConn, Received

GROUP_CONFIG_DEFAULTS = {
    "share.auto.offset.reset": "latest",
    "share.isolation.level": "read_uncommitted",
    "share.record.lock.duration.ms": "30000",
    "share.session.timeout.ms": "45000",
    "share.heartbeat.interval.ms": "5000",
}
DEFAULT_CONFIG, GROUP_CONFIG = 5, 8


@dataclass
class FakeMember:
    member_id: str
    subscriptions: list[str]
    assignment: dict[str, list[int]] = field(default_factory=dict)
    client_id: str = "worker"
    host: str = "/127.0.0.1"
    epoch: int = 3


@dataclass
class FakeShareGroup:
    members: list[FakeMember] = field(default_factory=list)
    offsets: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # -> (SPSO, lag)
    lister: int = 1  # the node whose ListGroups shows the group
    epoch: int = 3

    @property
    def state(self) -> str:
        return "Stable" if self.members else "Empty"


@dataclass
class FakeLog:
    start: int
    end: int
    timestamps: list[tuple[int, int]] = field(default_factory=list)  # (timestamp ms, offset), ascending


class AdminFake(FakeCluster):
    def __init__(self, size: int = 3, **kwargs: Any) -> None:
        super().__init__(size, **kwargs)
        self.groups: dict[str, FakeShareGroup] = {}
        self.consumer_groups: dict[str, int] = {}  # group id -> lister node
        self.group_configs: dict[str, dict[str, str]] = {}
        self.logs: dict[tuple[str, int], FakeLog] = {}
        self.inject: dict[int, list[int]] = {}
        handlers = {
            2: self._list_offsets,
            16: self._list_groups,
            19: self._create_topics,
            20: self._delete_topics,
            32: self._describe_configs,
            42: self._delete_groups,
            44: self._alter_configs,
            77: self._describe_groups,
            90: self._describe_offsets,
            91: self._alter_offsets,
            92: self._delete_offsets,
        }
        for broker in self.brokers.values():
            broker.handlers.update(handlers)

    def add_topic(self, name: str, leaders: dict[int, int], *, start: int = 0, end: int = 0) -> uuid.UUID:
        topic_id = uuid.uuid4()
        self.topics[name] = (topic_id, dict(leaders))
        for p in leaders:
            self.logs[(name, p)] = FakeLog(start, end)
        return topic_id

    def node_of(self, conn: FakeConn) -> int:
        return next(n for n, b in self.brokers.items() if b is conn.broker)

    def node_of_request(self, request: Received) -> int:
        return next(n for n, b in self.brokers.items() if any(r is request for r in b.received))

    def _injected(self, api_key: int) -> int:
        queue = self.inject.get(api_key)
        return queue.pop(0) if queue else 0

    def _coordinator_error(self, conn: FakeConn, api_key: int) -> int:
        injected = self._injected(api_key)
        if injected:
            return injected
        return 0 if self.node_of(conn) == self.coordinator else ErrorCode.NOT_COORDINATOR

    def _not_share(self, group_id: str) -> tuple[int, str] | None:
        if group_id in self.consumer_groups:
            return ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group."
        if group_id not in self.groups:
            return ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found."
        return None

    # ----------------------------------------------------------------------------- groups

    async def _list_groups(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        version = header.request_api_version
        code = self._injected(16)
        if code:
            return ListGroupsResponse(error_code=code)
        node = self.node_of(conn)
        rows = [(g, "share", s.state) for g, s in self.groups.items() if s.lister == node]
        rows += [(g, "consumer", "Stable") for g, n in self.consumer_groups.items() if n == node]
        listed = []
        for group_id, kind, state in rows:
            if version >= 5 and body.types_filter and kind not in [t.lower() for t in body.types_filter]:
                continue
            if version >= 4 and body.states_filter and state not in body.states_filter:
                continue
            listed.append(
                ListGroupsResponse.ListedGroup(
                    group_id=group_id,
                    protocol_type=kind,
                    group_state=state if version >= 4 else "",
                    group_type=kind if version >= 5 else "",
                )
            )
        return ListGroupsResponse(groups=listed)

    async def _describe_groups(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        Described = ShareGroupDescribeResponse.DescribedGroup
        out = []
        for group_id in body.group_ids:
            code = self._coordinator_error(conn, 77)
            problem = (code, None) if code else self._not_share(group_id)
            if problem is not None:
                out.append(Described(group_id=group_id, error_code=problem[0], error_message=problem[1]))
                continue
            group = self.groups[group_id]
            out.append(
                Described(
                    group_id=group_id,
                    group_state=group.state,
                    group_epoch=group.epoch,
                    assignment_epoch=group.epoch,
                    assignor_name="simple",
                    members=[self._member(m) for m in group.members],
                )
            )
        return ShareGroupDescribeResponse(groups=out)

    def _member(self, member: FakeMember) -> ShareGroupDescribeResponse.Member:
        R = ShareGroupDescribeResponse
        return R.Member(
            member_id=member.member_id,
            member_epoch=member.epoch,
            client_id=member.client_id,
            client_host=member.host,
            subscribed_topic_names=member.subscriptions,
            assignment=R.Assignment(
                topic_partitions=[
                    R.TopicPartitions(topic_id=self.topics[t][0], topic_name=t, partitions=ps)
                    for t, ps in member.assignment.items()
                ]
            ),
        )

    async def _delete_groups(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        results = []
        for group_id in body.groups_names:
            code = self._coordinator_error(conn, 42)
            if not code and group_id not in self.groups:
                code = ErrorCode.GROUP_ID_NOT_FOUND
            if not code and self.groups[group_id].members:
                code = ErrorCode.NON_EMPTY_GROUP
            if not code:
                del self.groups[group_id]
            results.append(DeleteGroupsResponse.DeletableGroupResult(group_id=group_id, error_code=code))
        return DeleteGroupsResponse(results=results)

    # ----------------------------------------------------------------------------- offsets

    async def _describe_offsets(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        R = DescribeShareGroupOffsetsResponse
        v1 = header.request_api_version >= 1
        out = []
        for asked in body.groups:
            code = self._coordinator_error(conn, 90)
            if not code and asked.topics is None and asked.group_id not in self.groups:
                if asked.group_id not in self.consumer_groups:
                    # Kafka does not look the group up for "every topic": nothing, no error.
                    out.append(R.DescribeShareGroupOffsetsResponseGroup(group_id=asked.group_id, topics=[]))
                    continue
            problem = (code, None) if code else self._not_share(asked.group_id)
            if problem is not None:
                out.append(
                    R.DescribeShareGroupOffsetsResponseGroup(
                        group_id=asked.group_id, error_code=problem[0], error_message=problem[1]
                    )
                )
                continue
            state = self.groups[asked.group_id].offsets
            if asked.topics is None:
                wanted: dict[str, list[int]] = {}
                for topic, p in sorted(state):
                    wanted.setdefault(topic, []).append(p)
            else:
                wanted = {t.topic_name: t.partitions for t in asked.topics}
            topics = []
            for topic, partitions in wanted.items():
                rows = []
                for p in partitions:
                    if (topic, p) in state:
                        spso, lag = state[(topic, p)]
                        rows.append(
                            R.DescribeShareGroupOffsetsResponsePartition(
                                partition_index=p, start_offset=spso, leader_epoch=0, lag=lag if v1 else -1
                            )
                        )
                    else:
                        rows.append(
                            R.DescribeShareGroupOffsetsResponsePartition(
                                partition_index=p,
                                start_offset=-1,
                                leader_epoch=-1,
                                error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                            )
                        )
                topic_id = self.topics[topic][0] if topic in self.topics else uuid.UUID(int=0)
                topics.append(
                    R.DescribeShareGroupOffsetsResponseTopic(
                        topic_name=topic, topic_id=topic_id, partitions=rows
                    )
                )
            out.append(R.DescribeShareGroupOffsetsResponseGroup(group_id=asked.group_id, topics=topics))
        return R(groups=out)

    async def _alter_offsets(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        R = AlterShareGroupOffsetsResponse
        code = self._coordinator_error(conn, 91)
        if not code and body.group_id in self.consumer_groups:
            code = ErrorCode.GROUP_ID_NOT_FOUND
        if not code and body.group_id in self.groups and self.groups[body.group_id].members:
            code = ErrorCode.NON_EMPTY_GROUP
        if code:
            return R(error_code=code)
        group = self.groups.setdefault(body.group_id, FakeShareGroup())  # Kafka creates it
        responses = []
        for topic in body.topics:
            known = self.topics.get(topic.topic_name)
            rows = []
            for p in topic.partitions:
                if known is None or p.partition_index not in known[1]:
                    rows.append(
                        R.AlterShareGroupOffsetsResponsePartition(
                            partition_index=p.partition_index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                        )
                    )
                    continue
                log = self.logs[(topic.topic_name, p.partition_index)]
                group.offsets[(topic.topic_name, p.partition_index)] = (
                    p.start_offset,
                    log.end - p.start_offset,
                )
                rows.append(R.AlterShareGroupOffsetsResponsePartition(partition_index=p.partition_index))
            responses.append(
                R.AlterShareGroupOffsetsResponseTopic(topic_name=topic.topic_name, partitions=rows)
            )
        return R(responses=responses)

    async def _delete_offsets(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        R = DeleteShareGroupOffsetsResponse
        code = self._coordinator_error(conn, 92)
        problem = (code, None) if code else self._not_share(body.group_id)
        if problem is None and self.groups[body.group_id].members:
            problem = (ErrorCode.NON_EMPTY_GROUP, None)
        if problem is not None:
            return R(error_code=problem[0], error_message=problem[1])
        state = self.groups[body.group_id].offsets
        responses = []
        for topic in body.topics:
            keys = [k for k in state if k[0] == topic.topic_name]
            for key in keys:
                del state[key]
            responses.append(
                R.DeleteShareGroupOffsetsResponseTopic(
                    topic_name=topic.topic_name,
                    error_code=0 if keys else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    error_message=None if keys else "There is no offset information to delete.",
                )
            )
        return R(responses=responses)

    async def _list_offsets(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        R = ListOffsetsResponse
        node = self.node_of(conn)
        topics = []
        for topic in body.topics:
            rows = []
            for asked in topic.partitions:
                p = asked.partition_index
                leaders = self.topics.get(topic.name, (None, {}))[1]
                row = R.ListOffsetsPartitionResponse(partition_index=p)
                code = self._injected(2)
                if code:
                    row.error_code = code
                elif p not in leaders:
                    row.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                elif leaders[p] != node:
                    row.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
                else:
                    log = self.logs[(topic.name, p)]
                    if asked.timestamp == -2:
                        row.offset = log.start
                    elif asked.timestamp == -1:
                        row.offset = log.end
                    else:
                        row.offset = next((o for ts, o in log.timestamps if ts >= asked.timestamp), -1)
                rows.append(row)
            topics.append(R.ListOffsetsTopicResponse(name=topic.name, partitions=rows))
        return R(topics=topics)

    # ----------------------------------------------------------------------------- configs

    async def _describe_configs(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        R = DescribeConfigsResponse
        results = []
        for resource in body.resources:
            code = self._injected(32)
            if code or resource.resource_type != 32:
                results.append(
                    R.DescribeConfigsResult(
                        error_code=code or ErrorCode.INVALID_REQUEST,
                        resource_type=resource.resource_type,
                        resource_name=resource.resource_name,
                    )
                )
                continue
            overrides = self.group_configs.get(resource.resource_name, {})
            configs = [
                R.DescribeConfigsResourceResult(
                    name=name,
                    value=overrides.get(name, default),
                    config_source=GROUP_CONFIG if name in overrides else DEFAULT_CONFIG,
                    documentation=f"docs for {name}" if header.request_api_version >= 3 else "",
                )
                for name, default in GROUP_CONFIG_DEFAULTS.items()
            ]
            results.append(
                R.DescribeConfigsResult(
                    error_message=None,
                    resource_type=32,
                    resource_name=resource.resource_name,
                    configs=configs,
                )
            )
        return R(results=results)

    async def _alter_configs(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        R = IncrementalAlterConfigsResponse
        responses = []
        for resource in body.resources:
            code, message = self._injected(44), None
            for change in resource.configs:
                if change.name not in GROUP_CONFIG_DEFAULTS:
                    code, message = ErrorCode.INVALID_CONFIG, f"Unknown group config name: {change.name}"
                elif change.name == "share.auto.offset.reset" and change.config_operation == 0:
                    if change.value not in ("latest", "earliest") and not str(change.value).startswith(
                        "by_duration:"
                    ):
                        code, message = ErrorCode.INVALID_CONFIG, f"Invalid value {change.value}"
            if not code and not body.validate_only:
                overrides = self.group_configs.setdefault(resource.resource_name, {})
                for change in resource.configs:
                    if change.config_operation == 0:
                        overrides[change.name] = change.value
                    else:
                        overrides.pop(change.name, None)
            responses.append(
                R.AlterConfigsResourceResponse(
                    error_code=code,
                    error_message=message,
                    resource_type=resource.resource_type,
                    resource_name=resource.resource_name,
                )
            )
        return R(responses=responses)

    # ----------------------------------------------------------------------------- topics

    async def _create_topics(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        R = CreateTopicsResponse
        results = []
        nodes = sorted(self.brokers)
        for topic in body.topics:
            if topic.name in self.topics:
                results.append(
                    R.CreatableTopicResult(
                        name=topic.name,
                        error_code=ErrorCode.TOPIC_ALREADY_EXISTS,
                        error_message=f"Topic '{topic.name}' already exists.",
                    )
                )
                continue
            leaders = {p: nodes[p % len(nodes)] for p in range(topic.num_partitions)}
            topic_id = self.add_topic(topic.name, leaders)
            results.append(
                R.CreatableTopicResult(
                    name=topic.name,
                    topic_id=topic_id,
                    num_partitions=topic.num_partitions,
                    replication_factor=topic.replication_factor,
                )
            )
        return R(topics=results)

    async def _delete_topics(self, conn: FakeConn, header: RequestHeader, body: Any) -> ApiMessage:
        R = DeleteTopicsResponse
        names = [t.name for t in body.topics] if header.request_api_version >= 6 else list(body.topic_names)
        responses = []
        for name in names:
            found = self.topics.pop(name, None)
            code = 0 if found is not None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            responses.append(R.DeletableTopicResult(name=name, error_code=code))
        return R(responses=responses)
