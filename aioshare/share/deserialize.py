"""Turning record keys and values into application objects.

A consumer gets one decoder for keys and one for values.  Decoding runs lazily, the first
time the application reads ``msg.value`` (or ``msg.error``), so records it never looks at
cost nothing; a decoder that raises does not fail the fetch: the message carries the error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from aioshare.protocol.errors import ConfigError, KafkaError

__all__ = ["DeserializationError", "Deserializer", "identity", "make_key_decoder", "make_value_decoder"]

Deserializer = Callable[[bytes | None], Any]


class DeserializationError(KafkaError):
    """A record's key or value could not be decoded; ``__cause__`` is the decoder's exception."""

    def __init__(self, message: str, *, field: str, raw: bytes | None) -> None:
        super().__init__(message)
        self.field = field
        self.raw = raw


def identity(data: bytes | None) -> bytes | None:
    return data


def make_value_decoder(
    value_type: Any = None, value_deserializer: Deserializer | None = None
) -> Deserializer:
    """``value_deserializer`` wins; else ``value_type`` is decoded as JSON by msgspec; else raw bytes."""
    if value_type is not None and value_deserializer is not None:
        raise ConfigError("give value_type or value_deserializer, not both")
    if value_deserializer is not None:
        return value_deserializer
    if value_type is None:
        return identity
    decoder = msgspec.json.Decoder(value_type)

    def decode(data: bytes | None) -> Any:
        if data is None:
            # A tombstone has no JSON to decode; it is only valid when the type admits None.
            return msgspec.convert(None, value_type)
        return decoder.decode(data)

    return decode


def make_key_decoder(key_deserializer: Deserializer | None = None) -> Deserializer:
    return key_deserializer if key_deserializer is not None else identity
