"""aioshare: asyncio-native Apache Kafka share groups (KIP-932, queues for Kafka)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aioshare.protocol.errors import KafkaError
from aioshare.protocol.types import AckType, TopicPartition
from aioshare.share import ShareConsumer

if TYPE_CHECKING:
    from aioshare.admin import ShareAdmin
    from aioshare.broker.embedded import EmbeddedBroker

__version__ = "0.1.0"

__all__ = [
    "AckType",
    "EmbeddedBroker",
    "KafkaError",
    "ShareAdmin",
    "ShareConsumer",
    "TopicPartition",
    "__version__",
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
