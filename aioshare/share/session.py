"""Share-session bookkeeping for one partition leader (sans-IO).

One ``ShareSessionState`` per (consumer, leader).  It decides the ShareSessionEpoch, which
partitions a ShareFetch must list (all of them at epoch 0, then only additions, with
removals in ForgottenTopicsData) and what a response or a lost connection does to the
session.  Requests are strictly sequential per session: the broker checks each epoch
against the one it expects, so a second request cannot be built while one is in flight.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aioshare.protocol.errors import ErrorCode, IllegalStateError
from aioshare.protocol.types import AckType, AcquireMode, TopicIdPartition
from aioshare.share.acks import AckBatch

__all__ = [
    "FINAL_EPOCH",
    "INITIAL_EPOCH",
    "FetchParams",
    "SessionError",
    "SessionOutcome",
    "ShareAcknowledgeRequestData",
    "ShareFetchRequestData",
    "ShareSessionState",
    "next_epoch",
]

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
_INT32_MAX = 2**31 - 1

_SESSION_ERRORS = frozenset(
    {
        ErrorCode.SHARE_SESSION_NOT_FOUND,
        ErrorCode.INVALID_SHARE_SESSION_EPOCH,
        ErrorCode.SHARE_SESSION_LIMIT_REACHED,
    }
)

AckMap = Mapping[TopicIdPartition, Sequence[AckBatch]]


def next_epoch(epoch: int) -> int:
    """The broker's epoch sequence: 0 → 1 → … → INT32_MAX → 1 (never back to 0)."""
    return 1 if epoch >= _INT32_MAX else epoch + 1


class SessionError(IllegalStateError):
    """The shell asked for a request the session rules forbid."""


@dataclass(frozen=True, slots=True)
class FetchParams:
    """Client fetch settings (defaults are the Java consumer's)."""

    max_wait_ms: int = 500
    min_bytes: int = 1
    max_bytes: int = 52_428_800
    max_records: int = 500
    batch_size: int = 500
    acquire_mode: AcquireMode = AcquireMode.BATCH_OPTIMIZED


def _by_topic(parts: Mapping[TopicIdPartition, list[AckBatch]]) -> dict[uuid.UUID, dict[int, list[AckBatch]]]:
    out: dict[uuid.UUID, dict[int, list[AckBatch]]] = {}
    for tp, batches in parts.items():
        out.setdefault(tp.topic_id, {})[tp.partition] = batches
    return out


@dataclass(frozen=True, slots=True)
class ShareFetchRequestData:
    group_id: str
    member_id: str
    share_session_epoch: int
    max_wait_ms: int
    min_bytes: int
    max_bytes: int
    max_records: int
    batch_size: int
    share_acquire_mode: int
    is_renew_ack: bool
    # Partitions listed in Topics with their AcknowledgementBatches (possibly empty).
    topics: dict[TopicIdPartition, list[AckBatch]]
    forgotten_topics_data: list[TopicIdPartition]

    def topics_by_id(self) -> dict[uuid.UUID, dict[int, list[AckBatch]]]:
        return _by_topic(self.topics)

    def forgotten_by_id(self) -> dict[uuid.UUID, list[int]]:
        out: dict[uuid.UUID, list[int]] = {}
        for tp in self.forgotten_topics_data:
            out.setdefault(tp.topic_id, []).append(tp.partition)
        return out


@dataclass(frozen=True, slots=True)
class ShareAcknowledgeRequestData:
    group_id: str
    member_id: str
    share_session_epoch: int
    is_renew_ack: bool
    topics: dict[TopicIdPartition, list[AckBatch]]

    def topics_by_id(self) -> dict[uuid.UUID, dict[int, list[AckBatch]]]:
        return _by_topic(self.topics)


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """What a response (or its loss) did to the session."""

    error_code: int
    reset: bool  # session gone: the next fetch is a full epoch-0 one
    closed: bool  # the final (-1) request completed; the session is finished
    # Partitions whose acks rode the request.  When ``acks_failed`` they got no
    # per-partition result and must be reported failed with ``error_code``.
    ack_partitions: frozenset[TopicIdPartition]
    acks_failed: bool


@dataclass(frozen=True, slots=True)
class _InFlight:
    final: bool
    after: frozenset[TopicIdPartition] | None  # session partitions if accepted; None = unchanged
    ack_partitions: frozenset[TopicIdPartition]


class ShareSessionState:
    """Epochs and partition set of the share session with one leader."""

    def __init__(self, group_id: str, member_id: str, node_id: int | None = None) -> None:
        self.group_id = group_id
        self.member_id = member_id
        self.node_id = node_id
        self.epoch = INITIAL_EPOCH
        self.closed = False
        # Dicts as ordered sets, so requests list partitions deterministically.
        self._wanted: dict[TopicIdPartition, None] = {}
        self._in_session: dict[TopicIdPartition, None] = {}
        self._in_flight: _InFlight | None = None

    # -- partition set ---------------------------------------------------------------

    @property
    def partitions(self) -> list[TopicIdPartition]:
        """Partitions the consumer wants fetched from this leader."""
        return list(self._wanted)

    @property
    def session_partitions(self) -> list[TopicIdPartition]:
        """Partitions the broker's session holds, as far as we know."""
        return list(self._in_session)

    def add(self, tp: TopicIdPartition) -> None:
        self._wanted[tp] = None

    def remove(self, tp: TopicIdPartition) -> None:
        self._wanted.pop(tp, None)

    def set_partitions(self, tps: Iterable[TopicIdPartition]) -> None:
        self._wanted = dict.fromkeys(tps)

    # -- state -----------------------------------------------------------------------

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    @property
    def is_open(self) -> bool:
        """The broker holds a session for us (acks may be sent)."""
        return self.epoch != INITIAL_EPOCH and not self.closed

    def reset(self) -> None:
        """Forget the session (e.g. the connection dropped while idle): next fetch is full."""
        self.epoch = INITIAL_EPOCH
        self._in_session = {}

    # -- building requests -----------------------------------------------------------

    def build_fetch(self, params: FetchParams, acks: AckMap | None = None) -> ShareFetchRequestData:
        """The next ShareFetch (RENEWs go in a ShareAcknowledge: ``build_acknowledge``).

        Acks may only be given for partitions in ``partitions`` and only while the
        session is open; at epoch 0 they must wait (or be failed by the shell).
        """
        self._require_idle()
        acks = {tp: b for tp, b in (acks or {}).items() if b}
        _check_types(acks, False)
        for tp in acks:
            if tp not in self._wanted:
                raise SessionError(f"{tp} is not fetched from this leader; use build_acknowledge")
        if acks and not self.is_open:
            raise SessionError("acknowledgements cannot ride an epoch-0 ShareFetch")
        topics: dict[TopicIdPartition, list[AckBatch]]
        forgotten: list[TopicIdPartition] = []
        if self.epoch == INITIAL_EPOCH:
            topics = {tp: [] for tp in self._wanted}
            after = set(topics)
        else:
            topics = {tp: [] for tp in self._wanted if tp not in self._in_session}
            topics.update((tp, list(b)) for tp, b in acks.items())
            forgotten = [tp for tp in self._in_session if tp not in self._wanted]
            after = {tp for tp in self._in_session if tp in self._wanted} | set(topics)
        self._in_flight = _InFlight(False, frozenset(after), frozenset(acks))
        return ShareFetchRequestData(
            group_id=self.group_id,
            member_id=self.member_id,
            share_session_epoch=self.epoch,
            max_wait_ms=params.max_wait_ms,
            min_bytes=params.min_bytes,
            max_bytes=params.max_bytes,
            max_records=params.max_records,
            batch_size=params.batch_size,
            share_acquire_mode=int(params.acquire_mode),
            is_renew_ack=False,
            topics=topics,
            forgotten_topics_data=forgotten,
        )

    def build_acknowledge(self, acks: AckMap, *, renew: bool = False) -> ShareAcknowledgeRequestData:
        """A standalone ShareAcknowledge; the broker refuses epoch 0 for it, so the session must be open."""
        self._require_idle()
        acks = {tp: b for tp, b in acks.items() if b}
        if not acks:
            raise SessionError("a ShareAcknowledge needs acknowledgements")
        _check_types(acks, renew)
        if not self.is_open:
            raise SessionError("ShareAcknowledge needs an open session (epoch > 0)")
        self._in_flight = _InFlight(False, None, frozenset(acks))
        return ShareAcknowledgeRequestData(
            self.group_id, self.member_id, self.epoch, renew, {tp: list(b) for tp, b in acks.items()}
        )

    def build_close(self, acks: AckMap | None = None) -> ShareAcknowledgeRequestData | None:
        """The final-epoch ShareAcknowledge that closes the session and releases our records.

        Returns None (and marks the session closed) when no session exists: there is
        nothing to close, and acks cannot be delivered without a session.
        """
        self._require_idle()
        acks = {tp: b for tp, b in (acks or {}).items() if b}
        _check_types(acks, False)
        if not self.is_open:
            self.closed = True
            return None
        self._in_flight = _InFlight(True, None, frozenset(acks))
        return ShareAcknowledgeRequestData(
            self.group_id, self.member_id, FINAL_EPOCH, False, {tp: list(b) for tp, b in acks.items()}
        )

    # -- results ---------------------------------------------------------------------

    def on_response(self, error_code: int) -> SessionOutcome:
        """Apply the top-level ErrorCode of a ShareFetch/ShareAcknowledge response."""
        sent = self._take_in_flight()
        failed = error_code != 0 and bool(sent.ack_partitions)
        if sent.final:
            self._close()
            return SessionOutcome(error_code, False, True, sent.ack_partitions, failed)
        if error_code in _SESSION_ERRORS:
            self.reset()
            return SessionOutcome(error_code, True, False, sent.ack_partitions, failed)
        # Any other top-level error came after the broker accepted the epoch.
        self.epoch = next_epoch(self.epoch)
        if sent.after is not None:
            self._in_session = dict.fromkeys(sent.after)
        return SessionOutcome(error_code, False, False, sent.ack_partitions, failed)

    on_fetch_response = on_response
    on_acknowledge_response = on_response

    def on_failure(self, error_code: int = ErrorCode.NETWORK_EXCEPTION) -> SessionOutcome:
        """The request got no response (disconnect, timeout): the broker drops the session."""
        sent = self._take_in_flight()
        acked = sent.ack_partitions
        if sent.final:
            self._close()
            return SessionOutcome(error_code, False, True, acked, bool(acked))
        self.reset()
        return SessionOutcome(error_code, True, False, acked, bool(acked))

    # -- internals -------------------------------------------------------------------

    def _require_idle(self) -> None:
        if self.closed:
            raise SessionError("share session is closed")
        if self._in_flight is not None:
            raise SessionError("a request is already in flight on this share session")

    def _take_in_flight(self) -> _InFlight:
        sent = self._in_flight
        if sent is None:
            raise SessionError("no request in flight on this share session")
        self._in_flight = None
        return sent

    def _close(self) -> None:
        self.closed = True
        self.epoch = INITIAL_EPOCH
        self._in_session = {}


def _check_types(acks: AckMap, renew: bool) -> None:
    # Kafka accepts RENEW only in IsRenewAck requests, and those carry nothing else.
    for tp, batches in acks.items():
        for batch in batches:
            is_renew = [t == AckType.RENEW for t in batch.acknowledge_types]
            if renew and not all(is_renew):
                raise SessionError(f"renew request carries a non-RENEW ack for {tp}")
            if not renew and any(is_renew):
                raise SessionError(f"RENEW ack for {tp} outside a renew request")
