"""ShareAdmin: administering share groups (KIP-932) and the topics they read, over asyncio.

    async with ShareAdmin("localhost:9092") as admin:
        for listing in await admin.list_share_groups():
            ...
        await admin.reset_share_group_offsets("workers", "jobs", to="earliest")

Group requests go to the group's coordinator and are retried while it moves or loads (see
`_routing`); everything one call does, retries included, fits in `request_timeout`. Errors the
broker reports for one item (a group, a partition, a topic) come back as typed exceptions in
the result; errors about the whole call are raised.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
import uuid
from collections.abc import Iterable, Mapping
from typing import Final

from aioshare._validate import check_bootstrap, check_seconds
from aioshare.admin import _parse
from aioshare.admin._offsets import list_offsets, timestamp_of
from aioshare.admin._routing import Router
from aioshare.admin.types import (
    ConfigEntry,
    PartitionOffsetInfo,
    ResetTarget,
    ShareGroupDescription,
    ShareGroupListing,
    TopicListing,
    TopicPartition,
)
from aioshare.client.cluster import Cluster
from aioshare.client.connection import Connection
from aioshare.client.sasl import SaslConfig
from aioshare.protocol.errors import (
    BrokerError,
    ConfigError,
    ErrorCode,
    UnknownTopicOrPartitionError,
    error_for_code,
    raise_for_code,
)
from aioshare.protocol.messages import (
    AlterShareGroupOffsetsRequest,
    AlterShareGroupOffsetsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    ShareGroupDescribeRequest,
    ShareGroupDescribeResponse,
)

__all__ = ["ShareAdmin"]

GROUP_RESOURCE: Final = 32  # ConfigResource.Type.GROUP
BROKER_RESOURCE: Final = 4  # ConfigResource.Type.BROKER
# The group config (Kafka 4.3+, KIP-1240) and the broker config it defaults to.
GROUP_DELIVERY_COUNT_LIMIT: Final = "share.delivery.count.limit"
BROKER_DELIVERY_COUNT_LIMIT: Final = "group.share.delivery.count.limit"
_SET, _DELETE = 0, 1  # IncrementalAlterConfigs operations
_LIST_GROUPS_STATES: Final = 4  # StatesFilter and GroupState arrive in ListGroups v4
_LIST_GROUPS_TYPES: Final = 5  # TypesFilter and GroupType arrive in v5
_CONFIG_DOCS: Final = 3  # DescribeConfigs IncludeDocumentation arrives in v3
_TOPICS_BY_STATE: Final = 6  # DeleteTopics v6 names topics in Topics[] instead of TopicNames


class ShareAdmin:
    """An admin client for share groups. Use `async with ShareAdmin(...) as admin:`.

    `request_timeout` bounds each request and each admin call including its retries;
    `retry_backoff`/`retry_backoff_max` shape the pauses between retries.
    """

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str],
        *,
        client_id: str = "aioshare-admin",
        ssl: _ssl.SSLContext | None = None,
        sasl: SaslConfig | None = None,
        request_timeout: float = 30.0,
        retry_backoff: float = 0.1,
        retry_backoff_max: float = 1.0,
    ) -> None:
        check_bootstrap(bootstrap_servers)
        check_seconds("request_timeout", request_timeout, positive=True)
        check_seconds("retry_backoff", retry_backoff)
        check_seconds("retry_backoff_max", retry_backoff_max)
        self._cluster = Cluster(
            bootstrap_servers,
            client_id=client_id,
            ssl=ssl,
            sasl=sasl,
            request_timeout=request_timeout,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
        )
        self._router = Router(self._cluster, request_timeout, (retry_backoff, retry_backoff_max))

    @property
    def cluster(self) -> Cluster:
        return self._cluster

    async def __aenter__(self) -> ShareAdmin:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Bootstraps: reads cluster metadata from one of the bootstrap servers, trying them
        again with backoff for up to `request_timeout` (then KafkaTimeoutError)."""
        await self._cluster.start(timeout=self._router.timeout)

    async def close(self) -> None:
        await self._cluster.close()

    # ----------------------------------------------------------------------------- groups

    async def list_share_groups(self, states: Iterable[str] | None = None) -> list[ShareGroupListing]:
        """Every share group in the cluster, sorted by id.

        Each broker lists only the groups it coordinates, so ListGroups goes to every broker
        and the answers are merged, as Kafka's admin does. `states` (e.g. `["Stable"]`) is
        passed to brokers that support ListGroups v4 and ignored by older ones.
        """
        wanted = list(states or [])

        async def ask(conn: Connection) -> list[ShareGroupListing]:
            version = conn.version_for(ListGroupsRequest.API_KEY)
            request = ListGroupsRequest()
            if version >= _LIST_GROUPS_TYPES:
                request.types_filter = [_parse.SHARE]
            # Before v5 every group comes back and share groups are picked by protocol type.
            if wanted and version >= _LIST_GROUPS_STATES:
                request.states_filter = wanted
            response = await conn.send(request, version, response_type=ListGroupsResponse)
            raise_for_code(response.error_code)
            return _parse.share_listings(response, version)

        nodes = sorted(self._cluster.metadata.brokers) or [-1]
        answers = await asyncio.gather(*(self._router.on_node(n, ask, "ListGroups") for n in nodes))
        merged = {g.group_id: g for listings in answers for g in listings}
        return [merged[g] for g in sorted(merged)]

    async def describe_share_groups(
        self, group_ids: Iterable[str]
    ) -> dict[str, ShareGroupDescription | BrokerError]:
        """Each group's state, epochs, assignor and members, or its error (GROUP_ID_NOT_FOUND, ...)."""

        async def ask(conn: Connection, ids: list[str]) -> dict[str, ShareGroupDescription | BrokerError]:
            request = ShareGroupDescribeRequest(group_ids=ids)
            response = await conn.send(request, response_type=ShareGroupDescribeResponse)
            return {g.group_id: _parse.description(g) for g in response.groups}

        return await self._router.for_groups(_names(group_ids), ask)

    async def delete_share_groups(self, group_ids: Iterable[str]) -> dict[str, BrokerError | None]:
        """Deletes groups (each must be empty, else NON_EMPTY_GROUP); None means deleted."""

        async def ask(conn: Connection, ids: list[str]) -> dict[str, BrokerError | None]:
            response = await conn.send(
                DeleteGroupsRequest(groups_names=ids), response_type=DeleteGroupsResponse
            )
            return {
                r.group_id: error_for_code(r.error_code, r.error_message) if r.error_code else None
                for r in response.results
            }

        return await self._router.for_groups(_names(group_ids), ask)

    # ----------------------------------------------------------------------------- offsets

    async def describe_share_group_offsets(
        self, group_id: str, topics: Iterable[str] | Mapping[str, Iterable[int]] | None = None
    ) -> dict[TopicPartition, PartitionOffsetInfo]:
        """The group's share-partition start offsets (and lag, from brokers with v1).

        `topics=None` asks for every topic the group has state for; topic names ask for all
        their partitions; a mapping asks for the given partitions. A group-level error is raised;
        a partition's error is in its `error`. For a group that does not exist, Kafka answers
        `topics=None` with nothing (an empty dict here), not GROUP_ID_NOT_FOUND.
        """
        wanted = None if topics is None else await self._requested_partitions(topics)

        async def ask(conn: Connection) -> dict[TopicPartition, PartitionOffsetInfo] | BrokerError:
            Group = DescribeShareGroupOffsetsRequest.DescribeShareGroupOffsetsRequestGroup
            Topic = DescribeShareGroupOffsetsRequest.DescribeShareGroupOffsetsRequestTopic
            request = DescribeShareGroupOffsetsRequest(
                groups=[
                    Group(
                        group_id=group_id,
                        topics=None
                        if wanted is None
                        else [Topic(topic_name=t, partitions=ps) for t, ps in wanted.items()],
                    )
                ]
            )
            response = await conn.send(request, response_type=DescribeShareGroupOffsetsResponse)
            for group in response.groups:
                if group.group_id == group_id:
                    return _parse.offsets(group)
            return _left_out(f"group {group_id!r}")

        return await self._router.for_group(group_id, ask)

    async def reset_share_group_offsets(
        self,
        group_id: str,
        topic: str,
        *,
        to: ResetTarget,
        partitions: Iterable[int] | None = None,
    ) -> dict[int, int | BrokerError]:
        """Moves the group's start offset on `topic`; returns each partition's new start offset.

        `to` is "earliest", "latest", a datetime (the first record at or after it; the log
        end when there is none) or `{partition: offset}`. `partitions` limits the first three
        to some partitions (default: all). Kafka only allows this on an empty group:
        NonEmptyGroupError is raised while members are subscribed. Partitions whose offset
        could not be looked up or set carry their error instead of an offset.
        """
        resolved: dict[int, int | BrokerError]
        if isinstance(to, Mapping):
            if partitions is not None:
                raise ConfigError("give either explicit offsets or partitions, not both")
            if any(offset < 0 for offset in to.values()):
                raise ConfigError(f"offsets must be >= 0, got {dict(to)!r}")
            resolved = dict(sorted(to.items()))
        else:
            timestamp = timestamp_of(to)
            resolved = await self._resolve(topic, partitions, timestamp)
        chosen = {p: offset for p, offset in resolved.items() if isinstance(offset, int)}
        if not chosen:
            return resolved

        async def ask(conn: Connection) -> dict[int, BrokerError | None] | BrokerError:
            Topic = AlterShareGroupOffsetsRequest.AlterShareGroupOffsetsRequestTopic
            Partition = AlterShareGroupOffsetsRequest.AlterShareGroupOffsetsRequestPartition
            request = AlterShareGroupOffsetsRequest(
                group_id=group_id,
                topics=[
                    Topic(
                        topic_name=topic,
                        partitions=[Partition(partition_index=p, start_offset=o) for p, o in chosen.items()],
                    )
                ],
            )
            response = await conn.send(request, response_type=AlterShareGroupOffsetsResponse)
            if response.error_code:
                return error_for_code(response.error_code, response.error_message)
            return {
                p.partition_index: error_for_code(p.error_code, p.error_message) if p.error_code else None
                for t in response.responses
                if t.topic_name == topic
                for p in t.partitions
            }

        errors = await self._router.for_group(group_id, ask)
        for p in chosen:
            error = errors[p] if p in errors else _left_out(f"partition {topic}-{p}")
            if error is not None:
                resolved[p] = error
        return resolved

    async def list_offsets(
        self, topic: str, to: ResetTarget, partitions: Iterable[int] | None = None
    ) -> dict[int, int | BrokerError]:
        """The log offsets a reset `to` "earliest", "latest" or a datetime would use, per partition
        of `topic` (default all), looked up with ListOffsets on the leaders; a partition whose
        offset could not be looked up carries its error (UnknownTopicOrPartitionError, ...)."""
        return await self._resolve(topic, partitions, timestamp_of(to))

    async def delete_share_group_offsets(
        self, group_id: str, topics: Iterable[str]
    ) -> dict[str, BrokerError | None]:
        """Deletes the group's state for whole topics (the group must be empty).

        A later subscription starts those topics afresh (share.auto.offset.reset applies).
        Group-level errors are raised; None per topic means deleted.
        """
        names = _names(topics)

        async def ask(conn: Connection) -> dict[str, BrokerError | None] | BrokerError:
            Topic = DeleteShareGroupOffsetsRequest.DeleteShareGroupOffsetsRequestTopic
            request = DeleteShareGroupOffsetsRequest(
                group_id=group_id, topics=[Topic(topic_name=t) for t in names]
            )
            response = await conn.send(request, response_type=DeleteShareGroupOffsetsResponse)
            if response.error_code:
                return error_for_code(response.error_code, response.error_message)
            return {
                t.topic_name: error_for_code(t.error_code, t.error_message) if t.error_code else None
                for t in response.responses
            }

        found = await self._router.for_group(group_id, ask)
        return {t: found[t] if t in found else _left_out(f"topic {t!r}") for t in names}

    async def _requested_partitions(
        self, topics: Iterable[str] | Mapping[str, Iterable[int]]
    ) -> dict[str, list[int]]:
        if isinstance(topics, Mapping):
            return {t: sorted(set(ps)) for t, ps in topics.items()}
        names = _names(topics)
        await self._refresh_topics(names)
        return {t: self._partitions_of(t) for t in names}

    async def _resolve(
        self, topic: str, partitions: Iterable[int] | None, timestamp: int
    ) -> dict[int, int | BrokerError]:
        await self._refresh_topics([topic])
        known = self._partitions_of(topic)
        wanted = known if partitions is None else sorted(set(partitions))
        unknown = {
            p: UnknownTopicOrPartitionError(f"{topic} has no partition {p}") for p in wanted if p not in known
        }
        found: dict[int, int | BrokerError] = {**unknown}
        found.update(
            await list_offsets(self._router, topic, [p for p in wanted if p not in unknown], timestamp)
        )
        return dict(sorted(found.items()))

    async def _refresh_topics(self, topics: list[str]) -> None:
        errors = await self._router.retrying(lambda: self._cluster.refresh(topics), "Metadata")
        for topic in topics:
            error = errors.get(topic)
            if error is not None:
                raise type(error)(error.message, context=f"topic {topic!r}")

    def _partitions_of(self, topic: str) -> list[int]:
        found = self._cluster.topic(topic)
        if found is None:
            raise UnknownTopicOrPartitionError(context=f"topic {topic!r}")
        return sorted(found.partitions)

    # ----------------------------------------------------------------------------- group configs

    async def describe_group_config(self, group_id: str) -> dict[str, ConfigEntry]:
        """The group's configs (share.* and the other group types' names), by name."""

        async def ask(conn: Connection) -> dict[str, ConfigEntry]:
            version = conn.version_for(DescribeConfigsRequest.API_KEY)
            resource = DescribeConfigsRequest.DescribeConfigsResource(
                resource_type=GROUP_RESOURCE, resource_name=group_id, configuration_keys=None
            )
            request = DescribeConfigsRequest(
                resources=[resource], include_documentation=version >= _CONFIG_DOCS
            )
            response = await conn.send(request, version, response_type=DescribeConfigsResponse)
            for result in response.results:
                if result.resource_type == GROUP_RESOURCE and result.resource_name == group_id:
                    entries = _parse.config_entries(result)
                    if isinstance(entries, BrokerError):
                        raise entries.with_context(f"group {group_id!r}")
                    return entries
            raise _left_out(f"group {group_id!r}")

        return await self._router.on_any_node(ask, "DescribeConfigs")

    async def alter_group_config(
        self,
        group_id: str,
        set: Mapping[str, str] | None = None,  # shadows the builtin: the name Kafka tools use
        delete: Iterable[str] = (),
        *,
        validate_only: bool = False,
    ) -> None:
        """Sets and/or deletes (back to the default) group configs, e.g.
        `set={"share.auto.offset.reset": "earliest"}`. Unknown names or bad values raise
        InvalidConfigError; a group need not exist to be configured."""
        to_set = dict(set or {})
        to_delete = _names(delete)
        if not to_set and not to_delete:
            raise ConfigError("nothing to alter: give configs to set or delete")
        both = to_set.keys() & to_delete
        if both:
            raise ConfigError(f"configs both set and deleted: {sorted(both)}")
        Config = IncrementalAlterConfigsRequest.AlterableConfig
        configs = [Config(name=k, config_operation=_SET, value=v) for k, v in to_set.items()]
        configs += [Config(name=k, config_operation=_DELETE, value=None) for k in to_delete]

        async def ask(conn: Connection) -> None:
            resource = IncrementalAlterConfigsRequest.AlterConfigsResource(
                resource_type=GROUP_RESOURCE, resource_name=group_id, configs=configs
            )
            request = IncrementalAlterConfigsRequest(resources=[resource], validate_only=validate_only)
            response = await conn.send(request, response_type=IncrementalAlterConfigsResponse)
            for result in response.responses:
                if result.resource_type == GROUP_RESOURCE and result.resource_name == group_id:
                    if result.error_code:
                        raise error_for_code(result.error_code, result.error_message).with_context(
                            f"group {group_id!r}"
                        )
                    return
            raise _left_out(f"group {group_id!r}")

        await self._router.on_any_node(ask, "IncrementalAlterConfigs")

    async def describe_broker_config(
        self, broker_id: int | None = None, names: Iterable[str] | None = None
    ) -> dict[str, ConfigEntry]:
        """A broker's configs (`names` only, when given), by name; `broker_id` defaults to the
        lowest id in the metadata. Kafka answers for a broker only on that broker itself, so
        the request goes there (DescribeConfigs on the cluster needs DESCRIBE_CONFIGS on it)."""
        node = broker_id if broker_id is not None else min(self._cluster.metadata.brokers, default=-1)
        keys = None if names is None else _names(names)

        async def ask(conn: Connection) -> dict[str, ConfigEntry]:
            return await _describe_configs(conn, BROKER_RESOURCE, str(node), keys, f"broker {node}")

        return await self._router.on_node(node, ask, "DescribeConfigs")

    async def delivery_count_limit(self, group_id: str) -> int:
        """How many times the brokers deliver a record of `group_id` before they archive it.

        That is the group config `share.delivery.count.limit` on Kafka 4.3+, whose DescribeConfigs
        answer carries the broker's `group.share.delivery.count.limit` when the group has none
        set; Kafka 4.2 has no such group config, so the broker's is read instead. Errors are
        raised (GroupAuthorizationFailedError, ClusterAuthorizationFailedError, KafkaTimeoutError ...).
        """

        async def ask_group(conn: Connection) -> dict[str, ConfigEntry]:
            keys = [GROUP_DELIVERY_COUNT_LIMIT]
            return await _describe_configs(conn, GROUP_RESOURCE, group_id, keys, f"group {group_id!r}")

        entry = (await self._router.on_any_node(ask_group, "DescribeConfigs")).get(GROUP_DELIVERY_COUNT_LIMIT)
        if entry is None:
            found = await self.describe_broker_config(names=[BROKER_DELIVERY_COUNT_LIMIT])
            entry = found.get(BROKER_DELIVERY_COUNT_LIMIT)
        if entry is None or entry.value is None or not entry.value.strip().isdigit():
            shown = "nothing" if entry is None else repr(entry.value)
            raise error_for_code(
                ErrorCode.UNKNOWN_SERVER_ERROR,
                f"group {group_id!r}: the broker reported {shown} for the delivery-count limit",
            )
        return int(entry.value)

    # ----------------------------------------------------------------------------- topics

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> uuid.UUID:
        """Creates a topic; returns its id (the nil UUID from brokers before CreateTopics v7)."""
        Config = CreateTopicsRequest.CreatableTopicConfig
        topic = CreateTopicsRequest.CreatableTopic(
            name=name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            configs=[Config(name=k, value=v) for k, v in (config or {}).items()],
        )

        async def ask(conn: Connection) -> uuid.UUID:
            request = CreateTopicsRequest(topics=[topic], timeout_ms=self._timeout_ms())
            response = await conn.send(request, response_type=CreateTopicsResponse)
            for result in response.topics:
                if result.name == name:
                    raise_for_code(result.error_code, result.error_message)
                    return result.topic_id
            raise _left_out(f"topic {name!r}")

        return await self._router.on_any_node(ask, "CreateTopics", controller=True)

    async def delete_topic(self, name: str) -> None:
        async def ask(conn: Connection) -> None:
            version = conn.version_for(DeleteTopicsRequest.API_KEY)
            request = DeleteTopicsRequest(timeout_ms=self._timeout_ms())
            if version >= _TOPICS_BY_STATE:
                request.topics = [DeleteTopicsRequest.DeleteTopicState(name=name)]
            else:
                request.topic_names = [name]
            response = await conn.send(request, version, response_type=DeleteTopicsResponse)
            for result in response.responses:
                if result.name == name:
                    raise_for_code(result.error_code, result.error_message)
                    return
            raise _left_out(f"topic {name!r}")

        await self._router.on_any_node(ask, "DeleteTopics", controller=True)
        self._cluster.request_refresh()

    async def list_topics(self, *, include_internal: bool = False) -> list[TopicListing]:
        """Every topic, sorted by name (internal ones such as __consumer_offsets on request)."""
        await self._router.retrying(self._cluster.refresh, "Metadata")
        return [
            TopicListing(t.name, t.topic_id, len(t.partitions), t.is_internal)
            for name, t in sorted(self._cluster.metadata.topics.items())
            if include_internal or not t.is_internal
        ]

    async def finalized_features(self) -> dict[str, int]:
        """The cluster's finalized feature levels, e.g. ``{"share.version": 2, ...}``: share
        groups need ``share.version`` >= 1, the broker-side dead-letter queue (KIP-1191,
        Kafka 4.4) >= 2."""
        return await self._router.retrying(self._cluster.finalized_features, "ApiVersions")

    def _timeout_ms(self) -> int:
        return int(self._router.timeout * 1000)


async def _describe_configs(
    conn: Connection, resource_type: int, name: str, keys: list[str] | None, what: str
) -> dict[str, ConfigEntry]:
    resource = DescribeConfigsRequest.DescribeConfigsResource(
        resource_type=resource_type, resource_name=name, configuration_keys=keys
    )
    request = DescribeConfigsRequest(resources=[resource])
    response = await conn.send(request, response_type=DescribeConfigsResponse)
    for result in response.results:
        if result.resource_type == resource_type and result.resource_name == name:
            entries = _parse.config_entries(result)
            if isinstance(entries, BrokerError):
                raise entries.with_context(what)
            return entries
    raise _left_out(what)


def _names(items: Iterable[str]) -> list[str]:
    # A lone string is a name, not an iterable of one-letter names.
    return [items] if isinstance(items, str) else list(dict.fromkeys(items))


def _left_out(what: str) -> BrokerError:
    return error_for_code(ErrorCode.UNKNOWN_SERVER_ERROR, f"the broker's response left out {what}")
