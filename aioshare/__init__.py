"""aioshare: asyncio-native Apache Kafka share groups (KIP-932, queues for Kafka)."""

__version__ = "0.1.0"
