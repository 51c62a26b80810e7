"""aioshare: asyncio-native Apache Kafka share groups (KIP-932, queues for Kafka)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aioshare.protocol.errors import KafkaError
from aioshare.protocol.types import AckType, TopicPartition
from aioshare.runtime import (
    App,
    Backoff,
    Event,
    EventKind,
    Handler,
    Message,
    Reject,
    Retry,
    per_batch,
    per_key,
    per_message,
    per_partition,
)
from aioshare.share import ShareConsumer

if TYPE_CHECKING:
    from aioshare.admin import ShareAdmin
    from aioshare.broker.embedded import EmbeddedBroker

__version__ = "0.1.0"

__all__ = [
    "AckType",
    "App",
    "Backoff",
    "EmbeddedBroker",
    "Event",
    "EventKind",
    "Handler",
    "KafkaError",
    "Message",
    "Reject",
    "Retry",
    "ShareAdmin",
    "ShareConsumer",
    "TopicPartition",
    "__version__",
    "per_batch",
    "per_key",
    "per_message",
    "per_partition",
]


def __getattr__(name: str) -> Any:
    # The admin client and the broker are imported on first use: a worker process that only
    # consumes never loads the broker.
    if name == "ShareAdmin":
        from aioshare.admin import ShareAdmin

        return ShareAdmin
    if name == "EmbeddedBroker":
        from aioshare.broker.embedded import EmbeddedBroker

        return EmbeddedBroker
    raise AttributeError(f"module 'aioshare' has no attribute {name!r}")
