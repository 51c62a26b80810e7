"""``Message[T]``: the record a handler gets, wrapping the consumer's message.

It forwards the record's fields (``value`` typed as the route's ``value_type``) and adds
what the runtime needs: per-record outcomes that go through the route's policy
(``accept``, ``release``, ``retry``, ``reject`` - for batch handlers that settle records
one by one), ``extend_lock()``, and the runtime's bookkeeping of the delivery (``state``,
inherited from ``HeldRecord`` and changed only by the held-record state machine), kept in
slots so a held record costs one object.  Its lock and retry delay are kept by the consumer
(``keep_alive``): the runtime has no timer per record.

The outcome methods never block: they record the decision; when it needs I/O (a
dead-letter copy) that happens when the handler call ends.  In ``ack_mode="implicit"``
they raise - the handler's return or exception is the only outcome there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from aioshare.protocol.errors import IllegalStateError
from aioshare.runtime.held import HeldRecord, State
from aioshare.runtime.outcomes import ACCEPT, Action, Decision
from aioshare.share.message import Message as ShareMessage

if TYPE_CHECKING:
    from aioshare.share.deserialize import DeserializationError

__all__ = ["Message"]

T = TypeVar("T")


class _Owner(Protocol):
    """Who settles the record's outcomes (aioshare.runtime.settle.Settler)."""

    def decide(self, msg: Message[Any], decision: Decision) -> None: ...

    async def extend_lock(self, msg: Message[Any]) -> float: ...


class Message(HeldRecord, Generic[T]):
    __slots__ = ("_owner", "decision", "route")

    def __init__(self, inner: ShareMessage, owner: _Owner, route: str) -> None:
        self.share_message = inner
        self.state = State.QUEUED
        self.received_at = 0.0
        self.lock_seen = inner.lock_expires_at
        self._owner = owner
        self.route = route
        self.decision: Decision | None = None  # what the handler said about this record, if anything

    @classmethod
    def wrap(cls, batch: list[ShareMessage], owner: _Owner, route: str) -> list[Message[Any]]:
        """``[Message(m, owner, route) for m in batch]``, without an ``__init__`` call per record."""
        out: list[Message[Any]] = []
        new, append, queued = cls.__new__, out.append, State.QUEUED
        for inner in batch:
            msg = new(cls)
            msg.share_message = inner
            msg.state = queued
            msg.received_at = 0.0
            msg.lock_seen = inner.lock_expires_at
            msg._owner = owner
            msg.route = route
            msg.decision = None
            append(msg)
        return out

    def __repr__(self) -> str:
        return (
            f"Message({self.topic}[{self.partition}]@{self.offset}, delivery_count={self.delivery_count}, "
            f"state={self.state.name})"
        )

    # -- the record --------------------------------------------------------------------

    @property
    def topic(self) -> str:
        return self.share_message.topic

    @property
    def partition(self) -> int:
        return self.share_message.partition

    @property
    def offset(self) -> int:
        return self.share_message.offset

    @property
    def key(self) -> Any:
        return self.share_message.key

    @property
    def value(self) -> T:
        """The decoded value; raises ``DeserializationError`` when it does not decode."""
        return cast(T, self.share_message.value)

    @property
    def raw_key(self) -> bytes | None:
        return self.share_message.raw_key

    @property
    def raw_value(self) -> bytes | None:
        return self.share_message.raw_value

    @property
    def error(self) -> DeserializationError | None:
        """Why the key or value did not decode, or None."""
        return self.share_message.error

    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        return self.share_message.headers

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (None when absent)."""
        for key, value in reversed(self.share_message.headers):
            if key == name:
                return value
        return None

    @property
    def timestamp(self) -> int:
        return self.share_message.timestamp

    @property
    def delivery_count(self) -> int:
        """How many times the broker has handed this record out (1 on the first delivery)."""
        return self.share_message.delivery_count

    attempt = delivery_count

    @property
    def lock_expires_at(self) -> float:
        """When the acquisition lock runs out, on the event loop's clock."""
        return self.share_message.lock_expires_at

    @property
    def settled(self) -> bool:
        """The runtime no longer holds the record (acknowledged, or its lock was lost)."""
        return self.state is State.DONE

    # -- outcomes (batch handlers settle records one by one) ---------------------------

    def accept(self) -> None:
        self._owner.decide(self, ACCEPT)

    def release(self) -> None:
        """RELEASE now, no delay (the route's max_attempts still applies)."""
        self._owner.decide(self, Decision(Action.RELEASE, reason="release"))

    def retry(self, delay: float | None = None) -> None:
        """Hold the record ``delay`` seconds (None: the route's backoff), then RELEASE it."""
        if delay is not None and not delay >= 0:
            raise ValueError(f"retry delay must be >= 0, not {delay!r}")
        self._owner.decide(self, Decision(Action.RETRY, delay=delay, reason="retry"))

    def reject(self, reason: str = "", *, dead_letter: bool | None = None) -> None:
        self._owner.decide(
            self, Decision(Action.REJECT, reason=reason or "rejected", dead_letter=dead_letter)
        )

    async def extend_lock(self) -> float:
        """RENEW the acquisition lock now; returns the new ``lock_expires_at``.

        Raises ``InvalidRecordStateError`` when the lock was already lost, and
        ``IllegalStateError`` when the record is settled.
        """
        if self.state is State.DONE:
            raise IllegalStateError(f"{self!r} is settled; its lock cannot be extended")
        return await self._owner.extend_lock(self)
