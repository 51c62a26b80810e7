"""``Message[T]``: the record a handler gets, wrapping the consumer's message.

It forwards the record's fields (``value`` typed as the route's ``value_type``) and adds
what the runtime needs: per-record outcomes that go through the route's policy
(``accept``, ``release``, ``retry``, ``reject`` - for batch handlers that settle records
one by one), ``extend_lock()``, and the runtime's own bookkeeping (state, the lock deadline
last reported), kept here in slots so a held record costs one object.  Its lock and retry
delay are kept by the consumer (``keep_alive``): the runtime has no timer per record.

The outcome methods never block: they record the decision; when it needs I/O (a
dead-letter copy) that happens when the handler call ends.  In ``ack_mode="implicit"``
they raise - the handler's return or exception is the only outcome there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from aioshare.protocol.errors import IllegalStateError
from aioshare.runtime.outcomes import ACCEPT, Action, Decision, State
from aioshare.share.message import Message as ShareMessage

if TYPE_CHECKING:
    from aioshare.share.deserialize import DeserializationError

__all__ = ["Message"]

T = TypeVar("T")


class _Owner(Protocol):
    """The route runner holding the record (worker.RouteRunner)."""

    def decide(self, msg: Message[Any], decision: Decision) -> None: ...

    async def extend_lock(self, msg: Message[Any]) -> float: ...


class Message(Generic[T]):
    __slots__ = (
        "_inner",
        "_lock_seen",
        "_member",
        "_owner",
        "_received_at",
        "_state",
        "decision",
        "route",
    )

    def __init__(
        self, inner: ShareMessage, owner: _Owner, member: Any, route: str, received_at: float
    ) -> None:
        self._inner = inner
        self._owner = owner
        self._member = member  # the worker.Member whose consumer delivered it
        self.route = route
        self._received_at = received_at
        self._state = State.QUEUED
        # The lock deadline the runtime last reported: a later one at settle time means the
        # consumer's keep-alive renewed it (a RENEWED event).
        self._lock_seen = inner.lock_expires_at
        self.decision: Decision | None = None  # what the handler said about this record, if anything

    def __repr__(self) -> str:
        return (
            f"Message({self.topic}[{self.partition}]@{self.offset}, delivery_count={self.delivery_count}, "
            f"state={self._state.name})"
        )

    # -- the record --------------------------------------------------------------------

    @property
    def topic(self) -> str:
        return self._inner.topic

    @property
    def partition(self) -> int:
        return self._inner.partition

    @property
    def offset(self) -> int:
        return self._inner.offset

    @property
    def key(self) -> Any:
        return self._inner.key

    @property
    def value(self) -> T:
        """The decoded value; raises ``DeserializationError`` when it does not decode."""
        return cast(T, self._inner.value)

    @property
    def raw_key(self) -> bytes | None:
        return self._inner.raw_key

    @property
    def raw_value(self) -> bytes | None:
        return self._inner.raw_value

    @property
    def error(self) -> DeserializationError | None:
        """Why the key or value did not decode, or None."""
        return self._inner.error

    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        return self._inner.headers

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (None when absent)."""
        for key, value in reversed(self._inner.headers):
            if key == name:
                return value
        return None

    @property
    def timestamp(self) -> int:
        return self._inner.timestamp

    @property
    def delivery_count(self) -> int:
        """How many times the broker has handed this record out (1 on the first delivery)."""
        return self._inner.delivery_count

    attempt = delivery_count

    @property
    def lock_expires_at(self) -> float:
        """When the acquisition lock runs out, on the event loop's clock."""
        return self._inner.lock_expires_at

    @property
    def settled(self) -> bool:
        """The runtime no longer holds the record (acknowledged, or its lock was lost)."""
        return self._state == State.DONE

    @property
    def share_message(self) -> ShareMessage:
        """The consumer's own message (acknowledging it directly bypasses the runtime)."""
        return self._inner

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
        if self._state == State.DONE:
            raise IllegalStateError(f"{self!r} is settled; its lock cannot be extended")
        return await self._owner.extend_lock(self)
