"""The record a share consumer hands to the application, and how it acknowledges itself.

A ``Message`` knows the consumer that delivered it only through the small ``AckSink``
protocol, so it can be created and tested without a consumer.  ``accept()``,
``release()`` and ``reject()`` only record the outcome (they never block); the consumer
sends it on the next request to the partition's leader.  ``await renew()`` is the one
call that waits for the broker, because its answer (the new lock deadline) is the point.
``keep_alive()`` hands the lock to the consumer: it renews it until the record is
acknowledged, or until a given time, when it applies a given acknowledgement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aioshare.protocol.errors import IllegalStateError
from aioshare.protocol.record_reader import RecordFields
from aioshare.protocol.types import AckType, TopicIdPartition, TopicPartition
from aioshare.share.deserialize import DeserializationError, Deserializer, identity

if TYPE_CHECKING:
    from aioshare.share.leases import Lease

__all__ = [
    "AckSink",
    "DeliveryContext",
    "Message",
    "TopicPartition",
    "detached_message",
]

_UNSET: Any = object()
_ACCEPT = AckType.ACCEPT


class AckSink(Protocol):
    def acknowledge(self, msg: Message, type_: AckType) -> None: ...

    async def renew(self, msg: Message) -> float: ...

    def keep_alive(
        self,
        msg: Message,
        until: float | None,
        then: AckType | None,
        on_end: Callable[[Message, BaseException | None], object] | None = None,
    ) -> None: ...

    def stop_keep_alive(self, msg: Message) -> None: ...

    def is_kept_alive(self, msg: Message) -> bool: ...


class DeliveryContext:
    """What every message of one partition shares, built once per partition, not per record.

    ``acks`` belongs to the ``AckTracker``: the acknowledgements recorded for this partition
    since it last moved them into its ``AckBook``, as flat (first, last, type) triples, so
    recording one in order only moves the last ``last`` (no lookup, no object per ack).
    """

    __slots__ = ("acks", "key_decoder", "partition", "sink", "topic", "tp", "value_decoder")

    def __init__(
        self,
        topic: str,
        tp: TopicIdPartition,
        sink: AckSink | None,
        key_decoder: Deserializer | None,
        value_decoder: Deserializer | None,
    ) -> None:
        self.topic = topic
        self.tp = tp
        self.partition = tp.partition
        self.sink = sink
        # None (not ``identity``) for raw bytes: msg.value then skips the decode cache.
        self.key_decoder = None if key_decoder is identity else key_decoder
        self.value_decoder = None if value_decoder is identity else value_decoder
        self.acks: list[int] = []


class Message:
    """One delivered record.

    ``lock_expires_at`` is a deadline on the event loop's clock (``loop.time()``, monotonic):
    after it the broker may hand the record to another consumer, and acknowledging it is
    reported as failed.  ``delivery_count`` is 1 on the first delivery.

    A message keeps the decoded record and its partition's ``DeliveryContext`` as they came,
    and reads topic, key, value, headers and timestamp from them when asked: building one
    costs a few slot writes, and decoding runs only for the fields the application reads.
    """

    __slots__ = (
        "_ack",
        "_ctx",
        "_error",
        "_key",
        "_lease",
        "_rec",
        "_value",
        "delivery_count",
        "lock_expires_at",
        "offset",
    )

    _ctx: DeliveryContext
    _rec: RecordFields
    _lease: Lease | None  # the lease it was delivered under: a LeaseTable lookup hint

    def __init__(
        self,
        ctx: DeliveryContext,
        rec: RecordFields,
        delivery_count: int,
        lock_expires_at: float,
        lease: Lease | None = None,
    ) -> None:
        # Positional and minimal: the consumer builds one per record handed out (ReadyBuffer), and
        # compiled (setup.py) this is a direct call.  ``detached_message`` builds one by fields.
        self._ctx = ctx
        self._rec = rec
        self.offset = rec[0]
        self.delivery_count = delivery_count
        self.lock_expires_at = lock_expires_at
        self._lease = lease
        self._key: Any = _UNSET
        self._value: Any = _UNSET
        self._error: DeserializationError | None = None
        self._ack: AckType | None = None

    def __repr__(self) -> str:
        return (
            f"Message({self.topic}[{self.partition}]@{self.offset}, delivery_count={self.delivery_count}"
            f"{', acked=' + self._ack.name if self._ack is not None else ''})"
        )

    # -- payload -----------------------------------------------------------------------

    @property
    def topic(self) -> str:
        return self._ctx.topic

    @property
    def partition(self) -> int:
        return self._ctx.partition

    @property
    def tp(self) -> TopicIdPartition:
        return self._ctx.tp

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self._ctx.topic, self._ctx.partition)

    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        """(key, value) pairs in the record's order; a new empty list each time if it has none."""
        headers = self._rec[4]
        return headers if headers is not None else []

    @property
    def timestamp(self) -> int:
        return self._rec[1]

    @property
    def raw_key(self) -> bytes | None:
        return self._rec[2]

    @property
    def raw_value(self) -> bytes | None:
        return self._rec[3]

    @property
    def key(self) -> Any:
        key = self._key
        if key is _UNSET:
            decoder = self._ctx.key_decoder
            if decoder is None:
                return self._rec[2]
            key = self._key = self._decode("key", self._rec[2], decoder)
        if isinstance(key, DeserializationError):
            raise key
        return key

    @property
    def value(self) -> Any:
        """The decoded value; raises the DeserializationError when it did not decode."""
        value = self._value
        if value is _UNSET:
            decoder = self._ctx.value_decoder
            if decoder is None:
                return self._rec[3]
            value = self._value = self._decode("value", self._rec[3], decoder)
        if isinstance(value, DeserializationError):
            raise value
        return value

    @property
    def error(self) -> DeserializationError | None:
        """Why the key or value did not decode, or None (decodes both if not done yet)."""
        for name in ("key", "value"):
            try:
                getattr(self, name)
            except DeserializationError:
                pass
        return self._error

    def _decode(self, field: str, raw: bytes | None, decoder: Deserializer) -> Any:
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
        sink = self._ctx.sink
        if self._ack is None and sink is not None:
            # The per-record path of most applications: one call less than _acknowledge.
            sink.acknowledge(self, _ACCEPT)
            self._ack = _ACCEPT
            return
        self._acknowledge(_ACCEPT)

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
        sink = self._ctx.sink
        if sink is None:
            raise IllegalStateError(f"{self!r} was not delivered by a consumer")
        self.lock_expires_at = await sink.renew(self)
        return self.lock_expires_at

    def keep_alive(
        self,
        until: float | None = None,
        then: AckType | None = None,
        *,
        on_end: Callable[[Message, BaseException | None], object] | None = None,
    ) -> None:
        """Have the consumer keep this record's lock: it RENEWs the lock before it runs out
        (at the consumer's ``keep_alive_fraction`` of the lock left) until the record is
        acknowledged, ``stop_keep_alive()`` is called or the consumer closes.

        With ``until`` (a ``loop.time()``) it stops then, and applies ``then`` (ACCEPT,
        RELEASE or REJECT) if given: ``msg.keep_alive(until=loop.time() + 60,
        then=AckType.RELEASE)`` holds the record for a minute, then gives it back.  No RENEW
        is sent if ``until`` comes before the renewal would be due.  Calling it again
        replaces ``until``, ``then`` and ``on_end``.  Raises ``IllegalStateError`` if the
        record is acknowledged or the consumer closed, ``InvalidRecordStateError`` if its lock
        is already gone.

        When the consumer ends the keep-alive by itself, ``on_end(msg, exc)`` is called:
        ``exc`` None once ``until`` came (and ``then`` was applied), or the error -
        ``InvalidRecordStateError`` (the lock was lost), ``RenewUnsupportedError`` (the
        broker cannot RENEW and there is no ``then``; with one, ``then`` is applied early
        and ``exc`` is None).  Without ``on_end`` errors go to the consumer's
        ``on_keep_alive_error``.  Not called when the application ends it (an
        acknowledgement, ``stop_keep_alive()``) or the consumer closes.
        """
        if self._ack is not None:
            raise IllegalStateError(f"{self!r} is already acknowledged; nothing to keep alive")
        sink = self._ctx.sink
        if sink is None:
            raise IllegalStateError(f"{self!r} was not delivered by a consumer")
        sink.keep_alive(self, until, then, on_end)

    def stop_keep_alive(self) -> None:
        """Stop renewing the lock (it then runs out as usual unless acknowledged); no-op if
        the record is not kept alive."""
        sink = self._ctx.sink
        if sink is not None:
            sink.stop_keep_alive(self)

    @property
    def kept_alive(self) -> bool:
        """Whether the consumer is keeping this record's lock (``keep_alive()``)."""
        sink = self._ctx.sink
        return sink is not None and sink.is_kept_alive(self)

    def _acknowledge(self, type_: AckType) -> None:
        if self._ack is not None:
            if self._ack == type_:
                return  # idempotent: the same outcome twice is one outcome
            raise IllegalStateError(f"{self!r} is already acknowledged as {self._ack.name}")
        sink = self._ctx.sink
        if sink is None:
            raise IllegalStateError(f"{self!r} was not delivered by a consumer")
        sink.acknowledge(self, type_)
        self._ack = type_


def detached_message(
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
) -> Message:
    """A Message built from its fields, delivered by no consumer unless ``sink`` is given
    (for tests and tools that hand a record to code that reads messages)."""
    ctx = DeliveryContext(topic, tp, sink, key_decoder, value_decoder)
    return Message(ctx, (offset, timestamp, key, value, headers), delivery_count, lock_expires_at)
