"""Topic and config administration: CreateTopics (19), DeleteTopics (20), CreatePartitions (37),
DeleteRecords (21), DescribeConfigs (32), IncrementalAlterConfigs (44).

In KRaft any broker accepts these and forwards them to the controller, so every node serves
them. DescribeConfigs/IncrementalAlterConfigs handle TOPIC and BROKER resources here; other
resource types (GROUP = 32 for share-group configs) are served by a `ConfigResourceHandler`
that another module puts in `cluster.config_resources`.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections import Counter
from collections.abc import Sequence

from aioshare.broker.apis._common import leader_error
from aioshare.broker.cluster import AlterOp, Cluster, ConfigChange, ResourceType
from aioshare.broker.config import (
    BROKER_CONFIG_KEYS,
    GROUP_CONFIG_KEYS,
    ConfigEntry,
    ConfigType,
    config_value_to_string,
)
from aioshare.broker.kafka_versions import CONFIGS_SINCE
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.broker.topics import MAX_TOPIC_NAME_LENGTH, TOPIC_CONFIGS, Topic, validate_topic_configs
from aioshare.protocol.errors import (
    BrokerError,
    ErrorCode,
    InvalidConfigError,
    InvalidRequestError,
    InvalidTopicError,
    UnknownTopicOrPartitionError,
    error_for_code,
)
from aioshare.protocol.messages import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteRecordsRequest,
    DeleteRecordsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from aioshare.protocol.types import NIL_UUID, ConfigSource

CREATE_TOPICS = 19
DELETE_TOPICS = 20
DELETE_RECORDS = 21
DESCRIBE_CONFIGS = 32
CREATE_PARTITIONS = 37
INCREMENTAL_ALTER_CONFIGS = 44
_LIST_TYPE = 7

# Broker configs Kafka defines as internal (ConfigDef.defineInternal; group.share.enable is gone
# in 4.4): DescribeConfigs does not list them.
_INTERNAL_BROKER_CONFIGS = frozenset(
    {"group.share.enable", "group.share.initialize.retry.interval.ms", "group.share.persister.class.name"}
)
_LEGAL_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")
_BROKER_KEYS_BY_NAME = {key.name: key for key in BROKER_CONFIG_KEYS}
# Group config name -> (the broker config its default comes from, or None; its own default).
_GROUP_SYNONYMS = {entry.key.name: (entry.broker_default, entry.key.default) for entry in GROUP_CONFIG_KEYS}
# Broker configs whose Kafka default is null (the embedded broker's is "", or for
# log.flush.interval.ms the value it falls back to): unset, Kafka lists them with a null value
# and no DEFAULT_CONFIG synonym (configSynonyms finds no default value).
_NULL_DEFAULT_BROKER_CONFIGS = frozenset(
    {
        "ssl.keystore.location",
        "ssl.keystore.password",
        "ssl.key.password",
        "ssl.truststore.location",
        "ssl.truststore.certificates",
        "log.flush.interval.ms",
    }
)


def register(registry: ApiRegistry, cluster: Cluster) -> None:
    async def create_topics(context: RequestContext, request: CreateTopicsRequest) -> CreateTopicsResponse:
        return handle_create_topics(cluster, context.api_version, request)

    async def delete_topics(context: RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse:
        return handle_delete_topics(cluster, context.api_version, request)

    async def create_partitions(
        context: RequestContext, request: CreatePartitionsRequest
    ) -> CreatePartitionsResponse:
        return handle_create_partitions(cluster, request)

    async def delete_records(context: RequestContext, request: DeleteRecordsRequest) -> DeleteRecordsResponse:
        return handle_delete_records(cluster, context.node_id, request)

    async def describe_configs(
        context: RequestContext, request: DescribeConfigsRequest
    ) -> DescribeConfigsResponse:
        return handle_describe_configs(cluster, context, request)

    async def alter_configs(
        context: RequestContext, request: IncrementalAlterConfigsRequest
    ) -> IncrementalAlterConfigsResponse:
        return handle_alter_configs(cluster, context.node_id, request)

    registry.register(CREATE_TOPICS, create_topics)
    registry.register(DELETE_TOPICS, delete_topics)
    registry.register(CREATE_PARTITIONS, create_partitions)
    registry.register(DELETE_RECORDS, delete_records)
    registry.register(DESCRIBE_CONFIGS, describe_configs)
    registry.register(INCREMENTAL_ALTER_CONFIGS, alter_configs)


# --------------------------------------------------------------------------- CreateTopics


def handle_create_topics(
    cluster: Cluster, version: int, request: CreateTopicsRequest
) -> CreateTopicsResponse:
    counts = Counter(topic.name for topic in request.topics)
    alive = cluster.alive_node_ids()
    results = []
    for wanted in request.topics:
        result = CreateTopicsResponse.CreatableTopicResult(name=wanted.name, error_message=None)
        try:
            if counts[wanted.name] > 1:
                raise InvalidRequestError("Create topics request from client contains duplicate topic names")
            configs = {c.name: c.value for c in wanted.configs}
            if len(configs) != len(wanted.configs):
                raise InvalidRequestError(f"Duplicate config keys in the request for topic {wanted.name}")
            assignments = {a.partition_index: list(a.broker_ids) for a in wanted.assignments}
            if request.validate_only:
                partitions, factor, _ = cluster.topics.check_new_topic(
                    wanted.name, wanted.num_partitions, wanted.replication_factor, configs, alive, assignments
                )
                topic_id = NIL_UUID
                described: Topic | None = Topic(
                    wanted.name, NIL_UUID, validate_topic_configs(configs), cluster.config
                )
            else:
                topic = cluster.topics.create(
                    wanted.name,
                    wanted.num_partitions,
                    wanted.replication_factor,
                    configs,
                    alive=alive,
                    assignments=assignments,
                )
                partitions, factor, topic_id, described = (
                    len(topic.partitions),
                    topic.replication_factor,
                    topic.topic_id,
                    topic,
                )
        except BrokerError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
            described = None
        if version >= 5:
            if described is not None:
                result.num_partitions = partitions
                result.replication_factor = factor
                result.configs = [
                    CreateTopicsResponse.CreatableTopicConfigs(
                        name=entry.name,
                        value=entry.value,
                        read_only=entry.read_only,
                        config_source=entry.source,
                        is_sensitive=entry.is_sensitive,
                    )
                    for entry, _ in described.describe_configs()
                ]
            else:
                result.configs = None if result.error_code else []
            if version >= 7 and described is not None:
                result.topic_id = topic_id
        results.append(result)
    return CreateTopicsResponse(topics=results)


# --------------------------------------------------------------------------- DeleteTopics


def handle_delete_topics(
    cluster: Cluster, version: int, request: DeleteTopicsRequest
) -> DeleteTopicsResponse:
    if version >= 6:
        wanted: list[tuple[str | None, uuid.UUID]] = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, NIL_UUID) for name in request.topic_names]
    counts = Counter(wanted)
    results = []
    for name, topic_id in wanted:
        result = DeleteTopicsResponse.DeletableTopicResult(name=name)
        if version >= 6:
            result.topic_id = topic_id
        try:
            if counts[(name, topic_id)] > 1:
                raise InvalidRequestError("Duplicate topic in request.")
            if name is not None and topic_id != NIL_UUID:
                raise InvalidRequestError("Topic name and topic id cannot both be set.")
            if name is None:
                topic = cluster.topics.by_id(topic_id)
                if topic is None:
                    raise error_for_code(
                        ErrorCode.UNKNOWN_TOPIC_ID, "This server does not host this topic ID."
                    )
                result.name = topic.name
            else:
                topic = cluster.topics.get(name)
                if topic is None:
                    raise UnknownTopicOrPartitionError("This server does not host this topic-partition.")
                if version >= 6:
                    result.topic_id = topic.topic_id
            cluster.topics.delete(topic)
        except BrokerError as exc:
            result.error_code = exc.code
            if version >= 5:
                result.error_message = exc.message
        results.append(result)
    return DeleteTopicsResponse(responses=results)


# --------------------------------------------------------------------------- CreatePartitions


def handle_create_partitions(cluster: Cluster, request: CreatePartitionsRequest) -> CreatePartitionsResponse:
    counts = Counter(t.name for t in request.topics)
    alive = cluster.alive_node_ids()
    results = []
    for wanted in request.topics:
        result = CreatePartitionsResponse.CreatePartitionsTopicResult(name=wanted.name)
        try:
            if counts[wanted.name] > 1:
                raise InvalidRequestError("Duplicate topic in request.")
            topic = cluster.topics.get(wanted.name)
            if topic is None:
                raise UnknownTopicOrPartitionError(f"The topic '{wanted.name}' does not exist.")
            assignments = (
                [list(a.broker_ids) for a in wanted.assignments] if wanted.assignments is not None else None
            )
            if request.validate_only:
                cluster.topics.check_new_partitions(topic, wanted.count, alive, assignments)
            else:
                cluster.topics.add_partitions(topic, wanted.count, alive, assignments)
        except BrokerError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
        results.append(result)
    return CreatePartitionsResponse(results=results)


# --------------------------------------------------------------------------- DeleteRecords


def handle_delete_records(
    cluster: Cluster, node_id: int, request: DeleteRecordsRequest
) -> DeleteRecordsResponse:
    topics = []
    for wanted in request.topics:
        topic = cluster.topics.get(wanted.name)
        results = []
        for asked in wanted.partitions:
            result = DeleteRecordsResponse.DeleteRecordsPartitionResult(
                partition_index=asked.partition_index, low_watermark=-1
            )
            partition = topic.partition(asked.partition_index) if topic is not None else None
            if partition is None:
                result.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif error := leader_error(partition, node_id):
                result.error_code = error
            else:
                try:
                    result.low_watermark = partition.log.delete_records(asked.offset)
                except BrokerError as exc:
                    result.error_code = exc.code
            results.append(result)
        topics.append(DeleteRecordsResponse.DeleteRecordsTopicResult(name=wanted.name, partitions=results))
    return DeleteRecordsResponse(topics=topics)


# --------------------------------------------------------------------------- DescribeConfigs

ResultRow = DescribeConfigsResponse.DescribeConfigsResourceResult


def handle_describe_configs(
    cluster: Cluster, context: RequestContext, request: DescribeConfigsRequest
) -> DescribeConfigsResponse:
    version = context.api_version
    results = []
    for resource in request.resources:
        # Kafka leaves ErrorMessage at its default, "", unless an exception supplied one.
        result = DescribeConfigsResponse.DescribeConfigsResult(
            resource_type=resource.resource_type, resource_name=resource.resource_name
        )
        keys = resource.configuration_keys
        try:
            rows = _describe(cluster, context.node_id, resource.resource_type, resource.resource_name, keys)
        except UnknownTopicOrPartitionError as exc:
            # ConfigHelper sets only the error code for a topic its metadata does not have.
            result.error_code = exc.code
        except BrokerError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
        else:
            result.configs = [
                _row(
                    entry,
                    synonyms if request.include_synonyms else [],
                    version,
                    request.include_documentation,
                )
                for entry, synonyms in rows
            ]
        results.append(result)
    return DescribeConfigsResponse(results=results)


def _describe(
    cluster: Cluster, node_id: int, resource_type: int, name: str, keys: Sequence[str] | None
) -> list[tuple[ConfigEntry, list[ConfigEntry]]]:
    if resource_type == ResourceType.TOPIC:
        _validate_topic_name(name)
        topic = cluster.topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"Topic '{name}' does not exist.")
        return topic.describe_configs(keys)
    if resource_type == ResourceType.BROKER:
        _check_broker_resource(name, node_id)
        # The cluster-default resource ("") lists dynamic defaults only, and there are none.
        return [] if name == "" else _broker_rows(cluster, keys)
    handler = cluster.config_resources.get(resource_type)
    if handler is None:
        raise InvalidRequestError(f"Unsupported resource type {resource_type}")
    if resource_type == ResourceType.GROUP and not name:
        raise InvalidRequestError("Group name must not be empty")
    entries = handler.describe(name, keys)
    if resource_type == ResourceType.GROUP and cluster.kafka_version.at_least("4.3"):
        return [(entry, _group_synonyms(cluster, entry)) for entry in entries]
    # Kafka 4.2 (ConfigHelper.createGroupConfigEntry): the config itself is its only synonym.
    return [(entry, [entry]) for entry in entries]


def _validate_topic_name(name: str) -> None:
    """Kafka's Topic.validate(String), as ConfigHelper calls it (CreateTopics words it otherwise)."""
    if not name:
        reason = "the empty string is not allowed"
    elif name in (".", ".."):
        reason = f"'{name}' is not allowed"
    elif len(name) > MAX_TOPIC_NAME_LENGTH:
        reason = f"the length of '{name}' is longer than the max allowed length {MAX_TOPIC_NAME_LENGTH}"
    elif not _LEGAL_TOPIC_NAME.fullmatch(name):
        reason = f"'{name}' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'"
    else:
        return
    raise InvalidTopicError(f"Topic name is invalid: {reason}")


def _group_synonyms(cluster: Cluster, entry: ConfigEntry) -> list[ConfigEntry]:
    """A GROUP config's synonyms from Kafka 4.3 on: its override, then the broker config its
    default comes from (as set in the broker's properties, then that config's default), or the
    group config's own default when no broker config stands behind it."""
    synonyms = [entry] if entry.source == ConfigSource.GROUP_CONFIG else []
    broker_name, group_default = _GROUP_SYNONYMS[entry.name]
    if broker_name is None:
        default = config_value_to_string(group_default)
        synonyms.append(
            dataclasses.replace(entry, value=default, is_default=True, source=ConfigSource.DEFAULT_CONFIG)
        )
        return synonyms
    key = _BROKER_KEYS_BY_NAME[broker_name]
    if broker_name in cluster.config.explicitly_set:
        value = config_value_to_string(cluster.config.get(broker_name))
        synonyms.append(
            ConfigEntry(broker_name, value, False, True, ConfigSource.STATIC_BROKER_CONFIG, key.type)
        )
    default = config_value_to_string(key.default)
    synonyms.append(ConfigEntry(broker_name, default, True, True, ConfigSource.DEFAULT_CONFIG, key.type))
    return synonyms


def _check_broker_resource(name: str, node_id: int) -> None:
    if name not in ("", str(node_id)):
        raise InvalidRequestError(
            f"Unexpected broker id, expected {node_id} or empty string, but received {name}"
        )


def _broker_rows(cluster: Cluster, keys: Sequence[str] | None) -> list[tuple[ConfigEntry, list[ConfigEntry]]]:
    config = cluster.config
    rows: list[tuple[ConfigEntry, list[ConfigEntry]]] = []
    for key in sorted(BROKER_CONFIG_KEYS, key=lambda k: k.name):
        if key.name in _INTERNAL_BROKER_CONFIGS or (keys is not None and key.name not in keys):
            continue
        since = CONFIGS_SINCE.get(key.name)
        if since is not None and not cluster.kafka_version.at_least(since):
            continue  # a config of a later release than the one emulated
        explicit = key.name in config.explicitly_set
        # KafkaConfig.maybeSensitive: a password's value is never sent (null), synonyms' neither.
        sensitive = key.type == ConfigType.PASSWORD
        entry = ConfigEntry(
            name=key.name,
            value=config_value_to_string(config.get(key.name)),
            is_default=not explicit,
            read_only=True,
            source=ConfigSource.STATIC_BROKER_CONFIG if explicit else ConfigSource.DEFAULT_CONFIG,
            config_type=key.type,
            is_sensitive=sensitive,
        )
        if not explicit and key.name in _NULL_DEFAULT_BROKER_CONFIGS:
            rows.append((entry, []))
            continue
        synonyms = [entry]
        if explicit:
            synonyms.append(
                ConfigEntry(
                    name=key.name,
                    value=config_value_to_string(key.default),
                    is_default=True,
                    read_only=True,
                    source=ConfigSource.DEFAULT_CONFIG,
                    config_type=key.type,
                    is_sensitive=sensitive,
                )
            )
        rows.append((entry, synonyms))
    return rows


def _row(entry: ConfigEntry, synonyms: list[ConfigEntry], version: int, documentation: bool) -> ResultRow:
    null_default = entry.is_default and entry.name in _NULL_DEFAULT_BROKER_CONFIGS
    row = ResultRow(
        name=entry.name,
        value=None if entry.is_sensitive or null_default else entry.value,
        read_only=entry.read_only,
        config_source=entry.source,
        is_sensitive=entry.is_sensitive,
        synonyms=[
            DescribeConfigsResponse.DescribeConfigsSynonym(
                name=s.name, value=None if s.is_sensitive else s.value, source=s.source
            )
            for s in synonyms
        ],
    )
    if version >= 3:
        row.config_type = entry.config_type
        row.documentation = "" if documentation else None
    return row


# --------------------------------------------------------------------------- IncrementalAlterConfigs


def handle_alter_configs(
    cluster: Cluster, node_id: int, request: IncrementalAlterConfigsRequest
) -> IncrementalAlterConfigsResponse:
    counts = Counter((r.resource_type, r.resource_name) for r in request.resources)
    responses = []
    for resource in request.resources:
        response = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
            resource_type=resource.resource_type, resource_name=resource.resource_name, error_message=None
        )
        try:
            if counts[(resource.resource_type, resource.resource_name)] > 1:
                raise InvalidRequestError("Error due to duplicate config keys")
            changes = [ConfigChange(c.name, _op(c.config_operation), c.value) for c in resource.configs]
            if len({c.name for c in changes}) != len(changes):
                raise InvalidRequestError("Error due to duplicate config keys")
            _alter(
                cluster,
                node_id,
                resource.resource_type,
                resource.resource_name,
                changes,
                request.validate_only,
            )
        except BrokerError as exc:
            response.error_code = exc.code
            response.error_message = exc.message
        responses.append(response)
    return IncrementalAlterConfigsResponse(responses=responses)


def _op(code: int) -> AlterOp:
    try:
        return AlterOp(code)
    except ValueError:
        raise InvalidRequestError(f"Unknown alter config operation {code}") from None


def _alter(
    cluster: Cluster,
    node_id: int,
    resource_type: int,
    name: str,
    changes: list[ConfigChange],
    validate_only: bool,
) -> None:
    if resource_type == ResourceType.TOPIC:
        topic = cluster.topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"Topic '{name}' does not exist.")
        configs = validate_topic_configs(apply_changes(topic, changes))
        if not validate_only:
            cluster.topics.set_configs(topic, configs)
        return
    if resource_type == ResourceType.BROKER:
        _check_broker_resource(name, node_id)
        names = {key.name for key in BROKER_CONFIG_KEYS}
        for change in changes:
            if change.name not in names:
                raise InvalidConfigError(f"Unknown broker config name: {change.name}")
        # The embedded broker's configs are all static (server.properties), as Kafka treats
        # every config outside its dynamic set.
        raise InvalidConfigError(
            f"Cannot update these configs dynamically: Set({', '.join(c.name for c in changes)})"
        )
    handler = cluster.config_resources.get(resource_type)
    if handler is None:
        raise InvalidRequestError(f"Unsupported resource type {resource_type}")
    handler.alter(name, changes, validate_only)


def apply_changes(topic: Topic, changes: Sequence[ConfigChange]) -> dict[str, str | None]:
    """The topic's overrides after SET/DELETE/APPEND/SUBTRACT (validated by the caller)."""
    configs: dict[str, str | None] = dict(topic.configs)
    for change in changes:
        definition = TOPIC_CONFIGS.get(change.name)
        if definition is None:
            raise InvalidConfigError(f"Unknown topic config name: {change.name}")
        if change.operation == AlterOp.SET:
            configs[change.name] = change.value
        elif change.operation == AlterOp.DELETE:
            configs.pop(change.name, None)
        else:
            if definition.type != _LIST_TYPE:
                verb = "append" if change.operation == AlterOp.APPEND else "subtract"
                raise InvalidConfigError(f"Config value {verb} is not allowed for config key: {change.name}")
            current = [item for item in topic.config(change.name).split(",") if item]
            items = [item.strip() for item in (change.value or "").split(",") if item.strip()]
            if change.operation == AlterOp.APPEND:
                current += [item for item in items if item not in current]
            else:
                current = [item for item in current if item not in items]
            configs[change.name] = ",".join(current)
    return configs
