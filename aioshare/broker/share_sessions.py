"""The leader's share-session cache (semantics doc, sections 3.2-3.4): sans-IO.

One session per (group id, member id) on a broker, holding the partitions the member fetches
and the epoch its next request must carry. Sessions end on a final epoch (-1), when an epoch-0
request replaces them (records stay acquired), or when the client's connection closes. The
caller feeds requests and disconnects in and gets back error codes, the partitions to fetch in
round-robin order, and which (group, member) must have their records released.

The order a long-lived session fetches in is Kafka's: the session keeps its partitions in the
order they were added, an incremental request's partitions are rotated by its epoch, and a
partition that returned records in an incremental response moves to the end of the session's
order (``ShareSession.respond``, as ShareSessionContext.PartitionIterator does), so a shared
MaxRecords budget reaches every partition. (Within one request the leader also reads a partition
whose fetch offset moved since its last read after the others: ``apis/share_fetch.py``.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

from aioshare.broker import _codes
from aioshare.protocol.types import TopicIdPartition

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
_INT32_MAX = 2**31 - 1


def next_epoch(epoch: int) -> int:
    """ShareRequestMetadata.nextEpoch: final stays final, INT32_MAX wraps to 1 (never 0)."""
    if epoch < 0:
        return FINAL_EPOCH
    if epoch == _INT32_MAX:
        return 1
    return epoch + 1


def rotate_partitions(partitions: Sequence[TopicIdPartition], request_epoch: int) -> list[TopicIdPartition]:
    """Kafka's round-robin PartitionRotateStrategy: start at index ``epoch % n``.

    Rotating by the request's session epoch spreads a shared MaxRecords/MaxBytes budget
    over all partitions of a long-lived session.
    """
    rotated = list(partitions)
    if len(rotated) <= 1 or request_epoch < 1:
        return rotated
    shift = request_epoch % len(rotated)
    return rotated[shift:] + rotated[:shift]


class SessionKey(NamedTuple):
    group_id: str
    member_id: str


@dataclasses.dataclass(slots=True)
class ShareSession:
    key: SessionKey
    # Insertion-ordered set: the order partitions were added, which the rotation starts from.
    partitions: dict[TopicIdPartition, None]
    # The epoch the next ShareFetch/ShareAcknowledge must carry.
    epoch: int
    connection_id: str
    # CachedSharePartition.requiresUpdateInResponse: partitions the next incremental response
    # that reads them must list, records or not (added to the session, or failed last time).
    needs_update: set[TopicIdPartition] = dataclasses.field(default_factory=set)

    def respond(self, partition: TopicIdPartition, *, has_records: bool, has_error: bool) -> bool:
        """Whether an incremental response lists a partition the request read or failed
        (CachedSharePartition.maybeUpdateResponseData): it has records, an error, or an update
        pending. A partition that returned records moves to the end of the session's order, so
        later fetches reach it last (ShareSessionContext.PartitionIterator). Kafka visits the
        partitions in its response map's hash order; the caller goes in session order."""
        listed = has_records or has_error or partition in self.needs_update
        self.needs_update.discard(partition)
        if has_error:
            # Listed again once the error is gone.
            self.needs_update.add(partition)
        if has_records and partition in self.partitions:
            del self.partitions[partition]
            self.partitions[partition] = None
        return listed


@dataclasses.dataclass(slots=True)
class FetchContext:
    """How to serve one ShareFetch, decided from its session epoch (section 3.3).

    An error is top-level and carries no message (Kafka's ShareFetchResponse.of sets none)."""

    error_code: int = _codes.NONE
    # Partitions to fetch: the fetchable ones rotated by the request epoch, then the others (which
    # get their error). Empty for a final-epoch request.
    partitions: list[TopicIdPartition] = dataclasses.field(default_factory=list)
    # Partitions new to the session (the first incremental response that reads them lists them).
    added: list[TopicIdPartition] = dataclasses.field(default_factory=list)
    # Epoch 0: a full response listing every requested partition.
    is_full: bool = False
    # Epoch -1: process acknowledgements, fetch nothing, then call close().
    is_final: bool = False
    # An incremental request's session: it decides which partitions the response lists.
    session: ShareSession | None = None


@dataclasses.dataclass(slots=True)
class AcknowledgeContext:
    """How to serve one ShareAcknowledge (section 3.4)."""

    error_code: int = _codes.NONE
    # Epoch -1: after applying the acknowledgements call close().
    is_final: bool = False


@dataclasses.dataclass(slots=True)
class ClosedSession:
    """A removed session: release ``key.member_id``'s records on these partitions."""

    key: SessionKey
    partitions: list[TopicIdPartition]


@dataclasses.dataclass(slots=True)
class DisconnectResult:
    closed: list[ClosedSession] = dataclasses.field(default_factory=list)
    # Groups with no session left on this broker: drop their cached share-partitions (they are
    # reloaded from persisted state on the next fetch, as Kafka's onGroupEmpty does).
    empty_groups: list[str] = dataclasses.field(default_factory=list)


class ShareSessionCache:
    """All share sessions of one broker, bounded by ``group.share.max.share.sessions``."""

    def __init__(self, max_sessions: int) -> None:
        self._max_sessions = max_sessions
        self._sessions: dict[SessionKey, ShareSession] = {}
        self._sessions_per_group: dict[str, int] = {}
        # Deviation: Kafka maps a connection to one key (a second session opened on the same
        # connection overwrites the first mapping); we remember all keys a connection opened.
        self._keys_by_connection: dict[str, set[SessionKey]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, group_id: str, member_id: str) -> ShareSession | None:
        return self._sessions.get(SessionKey(group_id, member_id))

    def session_count(self, group_id: str) -> int:
        return self._sessions_per_group.get(group_id, 0)

    def open_fetch(
        self,
        group_id: str,
        member_id: str,
        epoch: int,
        *,
        connection_id: str,
        topics: Sequence[TopicIdPartition] = (),
        forgotten: Sequence[TopicIdPartition] = (),
        has_acknowledgements: bool = False,
        fetchable: Callable[[TopicIdPartition], bool] = lambda _partition: True,
    ) -> FetchContext:
        """Resolve a ShareFetch's session (SharePartitionManager.newContext).

        ``fetchable`` tells the partitions the broker's metadata knows: only those are rotated
        (KafkaApis answers the others UNKNOWN_TOPIC_ID / UNKNOWN_TOPIC_OR_PARTITION before
        SharePartitionManager.fetchMessages rotates the rest)."""
        key = SessionKey(group_id, member_id)
        if epoch == FINAL_EPOCH:
            if key not in self._sessions:
                return FetchContext(_codes.SHARE_SESSION_NOT_FOUND)
            return FetchContext(is_final=True)
        if epoch == INITIAL_EPOCH:
            if has_acknowledgements:
                # Checked before the old session is touched: it stays in place.
                return FetchContext(_codes.INVALID_REQUEST)
            # Replacing a session does not release records: they stay acquired by the member id.
            self._remove(key)
            if len(self._sessions) >= self._max_sessions:
                return FetchContext(_codes.SHARE_SESSION_LIMIT_REACHED)
            partitions = dict.fromkeys(topics)
            self._add(ShareSession(key, partitions, next_epoch(INITIAL_EPOCH), connection_id))
            return FetchContext(partitions=list(partitions), added=list(partitions), is_full=True)
        session = self._sessions.get(key)
        if session is None:
            return FetchContext(_codes.SHARE_SESSION_NOT_FOUND)
        if session.epoch != epoch:
            return FetchContext(_codes.INVALID_SHARE_SESSION_EPOCH)
        added = [partition for partition in topics if partition not in session.partitions]
        session.partitions.update(dict.fromkeys(topics))
        session.needs_update.update(added)
        for partition in forgotten:
            session.partitions.pop(partition, None)
            session.needs_update.discard(partition)
        session.epoch = next_epoch(session.epoch)
        known: list[TopicIdPartition] = []
        unknown: list[TopicIdPartition] = []
        for partition in session.partitions:
            (known if fetchable(partition) else unknown).append(partition)
        return FetchContext(
            partitions=rotate_partitions(known, epoch) + unknown,
            added=[partition for partition in added if partition in session.partitions],
            session=session,
        )

    def open_acknowledge(self, group_id: str, member_id: str, epoch: int) -> AcknowledgeContext:
        """Resolve a ShareAcknowledge's session (acknowledgeSessionUpdate)."""
        if epoch == INITIAL_EPOCH:
            # A session can only be opened by ShareFetch.
            return AcknowledgeContext(_codes.INVALID_SHARE_SESSION_EPOCH)
        session = self._sessions.get(SessionKey(group_id, member_id))
        if session is None:
            return AcknowledgeContext(_codes.SHARE_SESSION_NOT_FOUND)
        if epoch == FINAL_EPOCH:
            return AcknowledgeContext(is_final=True)
        if session.epoch != epoch:
            return AcknowledgeContext(_codes.INVALID_SHARE_SESSION_EPOCH)
        session.epoch = next_epoch(session.epoch)
        return AcknowledgeContext()

    def close(self, group_id: str, member_id: str) -> ClosedSession | None:
        """Remove a session after its final-epoch request; the caller releases the member's
        records on the returned partitions. None if there was no such session."""
        session = self._remove(SessionKey(group_id, member_id))
        if session is None:
            return None
        return ClosedSession(session.key, list(session.partitions))

    def disconnect(self, connection_id: str) -> DisconnectResult:
        """The client connection closed: close the sessions it opened and report empty groups.

        Only sessions this connection opened are removed: a session that a later epoch-0
        request replaced from another connection is left alone (KAFKA-19950, in Kafka 4.2 and
        4.4: the old connection's mapping is marked stale when its session is removed).
        """
        result = DisconnectResult()
        for key in sorted(self._keys_by_connection.pop(connection_id, ())):
            current = self._sessions.get(key)
            if current is not None and current.connection_id == connection_id:
                session = self._remove(key)
                assert session is not None
                result.closed.append(ClosedSession(key, list(session.partitions)))
            # Kafka checks the group count whether or not this disconnect removed the session.
            if self._sessions_per_group.get(key.group_id, 0) == 0 and key.group_id not in result.empty_groups:
                result.empty_groups.append(key.group_id)
        return result

    def _add(self, session: ShareSession) -> None:
        self._sessions[session.key] = session
        group_id = session.key.group_id
        self._sessions_per_group[group_id] = self._sessions_per_group.get(group_id, 0) + 1
        self._keys_by_connection.setdefault(session.connection_id, set()).add(session.key)

    def _remove(self, key: SessionKey) -> ShareSession | None:
        session = self._sessions.pop(key, None)
        if session is not None:
            remaining = self._sessions_per_group[key.group_id] - 1
            if remaining:
                self._sessions_per_group[key.group_id] = remaining
            else:
                del self._sessions_per_group[key.group_id]
        return session
