"""The adapter between the runtime and ``aioshare.share.ShareConsumer``.

The runtime uses a consumer only through ``ConsumerLike`` (start, getmany, commit, close)
and the consumer's own ``Message`` (accept/release/reject/renew, and keep_alive: the
consumer keeps every held record's lock and applies delayed RELEASEs), and creates consumers
through a ``ConsumerFactory`` given a ``ConsumerSpec``.  Tests pass a factory that builds a
scripted fake; production uses ``share_consumer`` below.

Sizing: a member asks ``getmany()`` for what its route's handler slots can take now or as
soon as a running job ends (its free slots and ``prefetch``), and its consumer fetches only
for such a call (``fetch_ahead=False``: the runtime does its own, bounded, fetching ahead); a
route's members together hold at most ``(concurrency + prefetch) * records_per_job`` records
(``max_in_flight``, split evenly over ``consumers``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aioshare.protocol.types import TopicPartition
from aioshare.share.ack_tracker import AckResultCallback
from aioshare.share.consumer import LockExpiredCallback
from aioshare.share.deserialize import Deserializer
from aioshare.share.message import Message as ShareMessage

__all__ = ["ConsumerFactory", "ConsumerLike", "ConsumerSpec", "share_consumer", "stop_fetching"]


class ConsumerLike(Protocol):
    # The timeouts mirror ShareConsumer's own signatures (hence the ASYNC109 exemptions).
    async def start(self) -> None: ...

    async def getmany(
        self,
        max_records: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[ShareMessage]: ...

    async def commit(self, timeout: float | None = None) -> Mapping[TopicPartition, BaseException | None]: ...  # noqa: ASYNC109

    async def close(self, timeout: float = 30.0) -> Mapping[TopicPartition, BaseException | None]: ...  # noqa: ASYNC109


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    topics: tuple[str, ...]
    group_id: str
    bootstrap_servers: str | tuple[str, ...]
    max_in_flight: int
    max_poll_records: int
    on_lock_expired: LockExpiredCallback
    on_ack_result: AckResultCallback
    value_type: Any = None
    value_deserializer: Deserializer | None = None
    key_deserializer: Deserializer | None = None
    member_index: int = 0  # which of the route's `consumers` this is
    keep_alive_fraction: float = 0.7  # the route's renew_fraction: when kept records are renewed
    options: Mapping[str, Any] = field(default_factory=dict)


ConsumerFactory = Callable[[ConsumerSpec], ConsumerLike]


def share_consumer(spec: ConsumerSpec) -> ConsumerLike:
    """The production factory: one ``ShareConsumer`` in explicit mode (the runtime acks)."""
    from aioshare.share.consumer import ShareConsumer

    options = dict(spec.options)
    for reserved in (
        "ack_mode",
        "max_in_flight",
        "fetch_ahead",
        "on_lock_expired",
        "on_ack_result",
        "keep_alive_fraction",
    ):
        if reserved in options:
            raise ValueError(f"consumer option {reserved!r} is set by the runtime")
    servers: str | Iterable[str] = spec.bootstrap_servers
    return ShareConsumer(
        *spec.topics,
        group_id=spec.group_id,
        bootstrap_servers=servers,
        ack_mode="explicit",
        max_in_flight=spec.max_in_flight,
        # The runtime's demand is its free handler slots (and its prefetch): it asks for them
        # while handlers run; records fetched ahead of that would only wait here with their
        # locks running.
        fetch_ahead=False,
        max_poll_records=options.pop("max_poll_records", spec.max_poll_records),
        value_type=spec.value_type,
        value_deserializer=spec.value_deserializer,
        key_deserializer=spec.key_deserializer,
        on_lock_expired=spec.on_lock_expired,
        on_ack_result=spec.on_ack_result,
        keep_alive_fraction=spec.keep_alive_fraction,
        **options,
    )


def stop_fetching(consumer: ConsumerLike) -> None:
    """Ask ``consumer`` to acquire no more records; acks and renewals keep flowing.

    Called when a route starts shutting down: records acquired after that point could only
    wait in the consumer's buffer until the close released them (and each acquisition
    counts a delivery).  ``ShareConsumer.stop_fetching()`` does exactly that; a consumer
    without the method (a test double) is left alone.
    """
    method = getattr(consumer, "stop_fetching", None)
    if callable(method):
        method()
