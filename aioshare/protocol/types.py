"""Small protocol-level value types shared by the client and the broker."""

from __future__ import annotations

import base64
import enum
import uuid
from typing import NamedTuple

NIL_UUID = uuid.UUID(int=0)


class AckType(enum.IntEnum):
    """AcknowledgeTypes values of ShareFetch/ShareAcknowledge (KIP-932, KIP-1222)."""

    GAP = 0
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3
    RENEW = 4  # v2 only, and only with IsRenewAck


class AcquireMode(enum.IntEnum):
    """ShareFetch v2 ShareAcquireMode (KIP-1206)."""

    BATCH_OPTIMIZED = 0
    RECORD_LIMIT = 1


class RecordState(enum.IntEnum):
    """Share-partition record states; the values are the persisted codes Kafka uses."""

    AVAILABLE = 0
    ACQUIRED = 1
    ACKNOWLEDGED = 2
    ARCHIVED = 4


class TopicIdPartition(NamedTuple):
    topic_id: uuid.UUID
    partition: int


class TopicPartition(NamedTuple):
    topic: str
    partition: int


def kafka_uuid_str(value: uuid.UUID) -> str:
    """Kafka's textual form of a Uuid: URL-safe base64 without padding (22 characters)."""
    return base64.urlsafe_b64encode(value.bytes).decode("ascii").rstrip("=")


def parse_kafka_uuid(text: str) -> uuid.UUID:
    padded = text + "=" * (-len(text) % 4)
    raw = base64.urlsafe_b64decode(padded)
    if len(raw) != 16:
        raise ValueError(f"not a Kafka Uuid: {text!r}")
    return uuid.UUID(bytes=raw)


def random_kafka_uuid() -> uuid.UUID:
    """A random Uuid that Kafka accepts (it reserves the nil and the METADATA_TOPIC ids)."""
    while True:
        value = uuid.uuid4()
        if value.int > 1:
            return value


class ConfigSource(enum.IntEnum):
    """DescribeConfigs ConfigSource values (Kafka's DescribeConfigsResponse.ConfigSource)."""

    UNKNOWN = 0
    TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    CLIENT_METRICS_CONFIG = 7
    GROUP_CONFIG = 8

    @classmethod
    def of(cls, value: int) -> ConfigSource:
        # A newer broker may send a source this list does not know yet.
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN
