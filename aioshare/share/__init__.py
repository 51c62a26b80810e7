"""Share-group consumer: the asyncio ``ShareConsumer`` and the sans-IO parts it drives."""

from aioshare.protocol.types import AckType, TopicPartition
from aioshare.share.ack_tracker import AckInDoubtError, AckResult, AckStatus
from aioshare.share.consumer import AckResults, LockExpiry, ShareConsumer
from aioshare.share.deserialize import DeserializationError
from aioshare.share.fetcher import RenewUnsupportedError
from aioshare.share.message import Message

__all__ = [
    "AckInDoubtError",
    "AckResult",
    "AckResults",
    "AckStatus",
    "AckType",
    "DeserializationError",
    "LockExpiry",
    "Message",
    "RenewUnsupportedError",
    "ShareConsumer",
    "TopicPartition",
]
