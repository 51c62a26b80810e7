"""The record a share consumer hands to the application, and how it acknowledges itself.

A ``Message`` knows the consumer that delivered it only through the small ``AckSink``
protocol, so it can be created and tested without a consumer.  ``accept()``,
``release()`` and ``reject()`` only record the outcome (they never block); the consumer
sends it on the next request to the partition's leader.  ``await renew()`` is the one
call that waits for the broker, because its answer (the new lock deadline) is the point.
"""

from __future__ import annotations

from typing import Any, Protocol

from aioshare.protocol.errors import IllegalStateError
from aioshare.protocol.types import AckType, TopicIdPartition, TopicPartition
from aioshare.share.deserialize import DeserializationError, Deserializer

__all__ = ["AckSink", "Message", "TopicPartition"]

_UNSET: Any = object()


class AckSink(Protocol):
    def acknowledge(self, msg: Message, type_: AckType) -> None: ...

    async def renew(self, msg: Message) -> float: ...


class Message:
    """One delivered record.

    ``lock_expires_at`` is a deadline on the event loop's clock (``loop.time()``, monotonic):
    after it the broker may hand the record to another consumer, and acknowledging it is
    reported as failed.  ``delivery_count`` is 1 on the first delivery.
    """

    __slots__ = (
        "_ack",
        "_error",
        "_key",
        "_key_decoder",
        "_raw_key",
        "_raw_value",
        "_sink",
        "_value",
        "_value_decoder",
        "delivery_count",
        "headers",
        "lock_expires_at",
        "offset",
        "partition",
        "timestamp",
        "topic",
        "tp",
    )

    def __init__(
        self,
        *,
        topic: str,
        tp: TopicIdPartition,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
        timestamp: int,
        delivery_count: int,
        lock_expires_at: float,
        sink: AckSink | None = None,
        key_decoder: Deserializer | None = None,
        value_decoder: Deserializer | None = None,
    ) -> None:
        self.topic = topic
        self.tp = tp
        self.partition = tp.partition
        self.offset = offset
        self.headers = headers
        self.timestamp = timestamp
        self.delivery_count = delivery_count
        self.lock_expires_at = lock_expires_at
        self._raw_key = key
        self._raw_value = value
        self._key_decoder = key_decoder
        self._value_decoder = value_decoder
        self._key: Any = _UNSET
        self._value: Any = _UNSET
        self._error: DeserializationError | None = None
        self._sink = sink
        self._ack: AckType | None = None

    def __repr__(self) -> str:
        return (
            f"Message({self.topic}[{self.partition}]@{self.offset}, delivery_count={self.delivery_count}"
            f"{', acked=' + self._ack.name if self._ack is not None else ''})"
        )

    # -- payload -----------------------------------------------------------------------

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def raw_key(self) -> bytes | None:
        return self._raw_key

    @property
    def raw_value(self) -> bytes | None:
        return self._raw_value

    @property
    def key(self) -> Any:
        if self._key is _UNSET:
            self._key = self._decode("key", self._raw_key, self._key_decoder)
        if isinstance(self._key, DeserializationError):
            raise self._key
        return self._key

    @property
    def value(self) -> Any:
        """The decoded value; raises the DeserializationError when it did not decode."""
        if self._value is _UNSET:
            self._value = self._decode("value", self._raw_value, self._value_decoder)
        if isinstance(self._value, DeserializationError):
            raise self._value
        return self._value

    @property
    def error(self) -> DeserializationError | None:
        """Why the key or value did not decode, or None (decodes both if not done yet)."""
        for name in ("key", "value"):
            try:
                getattr(self, name)
            except DeserializationError:
                pass
        return self._error

    def _decode(self, field: str, raw: bytes | None, decoder: Deserializer | None) -> Any:
        if decoder is None:
            return raw
        try:
            return decoder(raw)
        except Exception as exc:
            err = DeserializationError(
                f"{self.topic}[{self.partition}]@{self.offset}: {field} does not decode: {exc}",
                field=field,
                raw=raw,
            )
            err.__cause__ = exc
            if self._error is None:
                self._error = err
            return err

    # -- acknowledgement ---------------------------------------------------------------

    @property
    def acknowledged(self) -> AckType | None:
        """The outcome recorded for this delivery, or None."""
        return self._ack

    def accept(self) -> None:
        self._acknowledge(AckType.ACCEPT)

    def release(self) -> None:
        """Give the record back for redelivery (its delivery count is kept)."""
        self._acknowledge(AckType.RELEASE)

    def reject(self) -> None:
        """Mark the record unprocessable: it is archived and never delivered again."""
        self._acknowledge(AckType.REJECT)

    async def renew(self) -> float:
        """Extend the acquisition lock (KIP-1222); returns and stores the new ``lock_expires_at``."""
        if self._ack is not None:
            raise IllegalStateError(f"{self!r} is already acknowledged; nothing to renew")
        if self._sink is None:
            raise IllegalStateError(f"{self!r} was not delivered by a consumer")
        self.lock_expires_at = await self._sink.renew(self)
        return self.lock_expires_at

    def _acknowledge(self, type_: AckType) -> None:
        if self._ack is not None:
            if self._ack == type_:
                return  # idempotent: the same outcome twice is one outcome
            raise IllegalStateError(f"{self!r} is already acknowledged as {self._ack.name}")
        if self._sink is None:
            raise IllegalStateError(f"{self!r} was not delivered by a consumer")
        self._sink.acknowledge(self, type_)
        self._ack = type_
