"""KIP-1191's broker-side dead-letter queue for share groups (Kafka 4.4, share.version 2).

A share group whose ``errors.deadletterqueue.topic.name`` is set has the records it REJECTs, and
those that use up their deliveries, written to that topic by the share-partition leader before
they are ARCHIVED (Kafka's ShareGroupDLQStateManager). Each record of the range becomes one DLQ
record, on partition ``source partition % DLQ partitions``, timestamped with the write time, with
Kafka's headers::

    __dlq.errors.topic           the source topic's name
    __dlq.errors.partition       the source partition
    __dlq.errors.offset          the record's offset
    __dlq.errors.group           the share group
    __dlq.errors.delivery.count  the record's delivery count
    __dlq.errors.message         "Offset rejected by client." or
                                 "Offset delivery count exceeded the threshold."

and, with ``errors.deadletterqueue.copy.record.enable``, the source record's key and value (not
its headers). The DLQ topic must not start with ``__``, must carry the broker's
``errors.deadletterqueue.topic.name.prefix`` (default ``dlq.``), and must either exist as a DLQ
topic (topic config ``errors.deadletterqueue.group.enable=true``) or be created on first use when
``errors.deadletterqueue.auto.create.topics.enable`` is on (default partitions and replication,
``errors.deadletterqueue.group.enable=true``, ``message.timestamp.type=CreateTime``). A write that
fails any of these is logged with Kafka's message, and the records are archived all the same.

Deviation: Kafka writes asynchronously, through ARCHIVING (persisted) to ARCHIVED once the write
is acknowledged; the embedded broker appends to the DLQ partition's log synchronously, so the
records go straight to ARCHIVED and ARCHIVING is never seen.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from aioshare.broker.cluster import Cluster
from aioshare.broker.share_partition import DeadLetter
from aioshare.broker.topics import TOPIC_CONFIGS, Partition, Topic
from aioshare.protocol.errors import BrokerError
from aioshare.protocol.records import RecordToWrite, encode_batch, iter_batches

logger = logging.getLogger("aioshare.broker.dlq")

# The topic config that makes a topic a DLQ topic (TopicConfig.ERRORS_DEADLETTERQUEUE_GROUP_ENABLE).
DLQ_ENABLE_CONFIG = "errors.deadletterqueue.group.enable"
_HEADER = "__dlq.errors."


class DeadLetterWriter:
    """Writes dead-lettered records of any share-partition to its group's DLQ topic."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        # DLQ topics this broker created. Kafka marks them with the DLQ_ENABLE_CONFIG topic
        # config; while the topic registry does not define that config, this set stands in.
        self._created: set[uuid.UUID] = set()

    def enabled(self, group_id: str) -> bool:
        """SharePartition.isDLQEnabledForGroup: share.version 2 and a DLQ topic name."""
        release = self._cluster.kafka_version
        return release.supports_share_group_dlq and bool(
            self._cluster.group_configs.get(group_id).dead_letter_topic
        )

    def write(self, group_id: str, source: Partition, letters: Sequence[DeadLetter]) -> None:
        """Append one DLQ record per dead-lettered offset; failures are logged, never raised."""
        configs = self._cluster.group_configs.get(group_id)
        name = configs.dead_letter_topic
        problem = self._check(group_id, name)
        if problem is not None:
            logger.error("Failed to write to DLQ, proceeding to ARCHIVED regardless: %s", problem)
            return
        try:
            topic = self._cluster.topics.get(name) or self._create(name)
            target = topic.partitions[source.index % len(topic.partitions)]
            originals = _records(source, letters) if configs.dead_letter_copy_record else {}
            now = self._cluster.now_ms()
            records = [
                RecordToWrite(
                    *originals.get(offset, (None, None)),
                    headers=_headers(source, offset, group_id, letter),
                    timestamp_ms=now,
                )
                for letter in letters
                for offset in range(letter.first_offset, letter.last_offset + 1)
            ]
            target.log.append(encode_batch(records), leader_epoch=target.leader_epoch, now_ms=now)
        except BrokerError as exc:
            logger.error("Failed to write to DLQ topic %s for share group %s: %s", name, group_id, exc)

    def _check(self, group_id: str, name: str) -> str | None:
        """ShareGroupDLQStateManager.validateDlqTopic, with Kafka's messages."""
        if not name:
            return f"Configured DLQ topic name in share group: {group_id} is empty."
        if name.startswith("__"):
            return (
                f"Configured DLQ topic name in share group: {group_id} cannot start with __, topic: {name}."
            )
        topic = self._cluster.topics.get(name)
        if topic is not None and not self._is_dlq_topic(topic):
            return f"DLQ is not enabled on configured DLQ topic for share group: {group_id}, topic: {name}."
        config = self._cluster.config
        if topic is None and not config.errors_deadletterqueue_auto_create_topics_enable:
            return (
                "DLQ topic does not exist and auto create is disabled on cluster for share group: "
                f"{group_id}, topic: {name}."
            )
        prefix = config.errors_deadletterqueue_topic_name_prefix
        if prefix and not name.startswith(prefix):
            return (
                "Configured DLQ topic name does not comply with the DLQ topic prefix in share group: "
                f"{group_id}, topic: {name}, prefix: {prefix}."
            )
        return None

    def _is_dlq_topic(self, topic: Topic) -> bool:
        return topic.configs.get(DLQ_ENABLE_CONFIG) == "true" or topic.topic_id in self._created

    def _create(self, name: str) -> Topic:
        """CreateTopics as the DLQ manager sends it: the broker's default partitions and
        replication, CreateTime timestamps (the DLQ records carry the write time)."""
        configs = {"message.timestamp.type": "CreateTime"}
        if DLQ_ENABLE_CONFIG in TOPIC_CONFIGS:
            configs[DLQ_ENABLE_CONFIG] = "true"
        cluster = self._cluster
        topic = cluster.topics.create(name, -1, -1, configs, alive=cluster.alive_node_ids())
        self._created.add(topic.topic_id)
        return topic


def _headers(source: Partition, offset: int, group_id: str, letter: DeadLetter) -> list[tuple[str, bytes]]:
    return [
        (f"{_HEADER}topic", source.topic.name.encode()),
        (f"{_HEADER}partition", str(source.index).encode()),
        (f"{_HEADER}offset", str(offset).encode()),
        (f"{_HEADER}group", group_id.encode()),
        (f"{_HEADER}delivery.count", str(letter.delivery_count).encode()),
        (f"{_HEADER}message", letter.cause.encode()),
    ]


def _records(
    source: Partition, letters: Sequence[DeadLetter]
) -> dict[int, tuple[bytes | None, bytes | None]]:
    """Key and value of each dead-lettered offset still in the source log (errors.deadletterqueue
    .copy.record.enable); offsets retention removed are written with the headers only, as Kafka does."""
    wanted = {offset for letter in letters for offset in range(letter.first_offset, letter.last_offset + 1)}
    log = source.log
    found: dict[int, tuple[bytes | None, bytes | None]] = {}
    for letter in letters:
        data = log.read_batches(log.batches_between(letter.first_offset, letter.last_offset))
        for batch in iter_batches(data):
            if batch.is_control:
                continue
            for record in batch.records():
                if record.offset in wanted:
                    found[record.offset] = (record.key, record.value)
    return found
