"""Kafka's wire protocol, sans-IO: generated messages, framing, record batches, errors."""
