"""Share-group coordinator state (semantics doc, sections 2 and 5): sans-IO.

Members join with client-generated ids, heartbeat with epochs, and are removed by a leave
(epoch -1) or when their session timeout passes (``expire_members(now_ms)``). Any change of
membership, subscriptions or subscribed topic metadata bumps the group epoch; the next
heartbeat recomputes the target assignment with the SimpleAssignor and moves the member
straight to it (share groups have no revocation phase).

The embedded broker initialises share-partition state synchronously: partitions of subscribed
topics count as initialised (assignable) as soon as a heartbeat sees them, and the heartbeat
result lists them so the caller can create their state. Topic metadata is passed in by the
caller as name -> TopicMetadata on every call.
"""

from __future__ import annotations

import dataclasses
import heapq
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aioshare.broker import _codes
from aioshare.broker.assignor import ASSIGNOR_NAME, assign
from aioshare.broker.config import BrokerConfig, GroupConfigs

LEAVE_GROUP_MEMBER_EPOCH = -1
_MAX_MEMBER_ID_LENGTH = 36

TopicAssignment = dict[uuid.UUID, frozenset[int]]


@dataclasses.dataclass(frozen=True, slots=True)
class TopicMetadata:
    topic_id: uuid.UUID
    partitions: int


@dataclasses.dataclass(slots=True)
class ShareGroupMember:
    member_id: str
    member_epoch: int = 0
    previous_member_epoch: int = 0
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: frozenset[str] = frozenset()
    assigned: TopicAssignment = dataclasses.field(default_factory=dict)
    session_deadline_ms: int = 0


@dataclasses.dataclass(slots=True)
class ShareGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    # When the target assignment was last computed (0: never); share.assignment.interval.ms
    # (Kafka 4.3+) keeps the next computation at least that long after it.
    assignment_timestamp_ms: int = 0
    members: dict[str, ShareGroupMember] = dataclasses.field(default_factory=dict)
    target_assignment: dict[str, TopicAssignment] = dataclasses.field(default_factory=dict)
    # The subscribed topics' metadata the current group epoch was computed from.
    subscription_metadata: dict[str, TopicMetadata] = dataclasses.field(default_factory=dict)
    # Partitions whose share state exists (ShareGroupStatePartitionMetadata "initialized").
    initialized: dict[uuid.UUID, set[int]] = dataclasses.field(default_factory=dict)

    @property
    def state(self) -> str:
        """ShareGroupDescribe / ListGroups state string."""
        return "Stable" if self.members else "Empty"


@dataclasses.dataclass(slots=True)
class HeartbeatResult:
    error_code: int = _codes.NONE
    error_message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    # Topic id -> sorted partitions; None means "unchanged, keep the previous assignment".
    assignment: dict[uuid.UUID, list[int]] | None = None
    # Partitions whose share state this heartbeat initialised (start offset not yet decided).
    newly_initialized: dict[uuid.UUID, list[int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class DescribedMember:
    member_id: str
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: list[str]
    # (topic id, topic name, sorted partitions)
    assignment: list[tuple[uuid.UUID, str, list[int]]]


@dataclasses.dataclass(frozen=True, slots=True)
class DescribedGroup:
    group_id: str
    error_code: int = _codes.NONE
    error_message: str | None = None
    group_state: str = ""
    group_epoch: int = 0
    assignment_epoch: int = 0
    assignor_name: str = ASSIGNOR_NAME
    members: list[DescribedMember] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class AdminResult:
    """Outcome of an admin operation on a share group (DeleteGroups, Alter/DeleteShareGroupOffsets)."""

    error_code: int = _codes.NONE
    error_message: str | None = None
    # Initialised partitions whose persisted share state the caller must delete.
    deleted: dict[uuid.UUID, frozenset[int]] = dataclasses.field(default_factory=dict)
    # DeleteShareGroupOffsets per-topic errors: topic id -> (error code, message).
    topic_errors: dict[uuid.UUID, tuple[int, str]] = dataclasses.field(default_factory=dict)


class _HeartbeatError(Exception):
    def __init__(self, error_code: int, message: str | None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def _not_share_group(group_id: str) -> _HeartbeatError:
    return _HeartbeatError(_codes.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group.")


class ShareGroupCoordinator:
    """The group coordinator's share groups on one broker."""

    def __init__(
        self,
        broker: BrokerConfig,
        *,
        group_configs: Callable[[str], GroupConfigs] | None = None,
        is_other_group_type: Callable[[str], bool] | None = None,
    ) -> None:
        """``group_configs(group_id)`` gives a group's dynamic configs (default: broker defaults);
        ``is_other_group_type(group_id)`` says whether a classic/consumer/streams group owns the id."""
        self._broker = broker
        default_configs = GroupConfigs(broker)
        self._group_configs = group_configs or (lambda _group_id: default_configs)
        self._is_other_group_type = is_other_group_type or (lambda _group_id: False)
        self._groups: dict[str, ShareGroup] = {}
        # (deadline, group id, member id); stale entries are skipped when popped.
        self._session_deadlines: list[tuple[int, str, str]] = []

    # ---------------------------------------------------------------- lookups

    def group(self, group_id: str) -> ShareGroup | None:
        return self._groups.get(group_id)

    def is_share_group(self, group_id: str) -> bool:
        """For the other group types' APIs: this id belongs to a share group."""
        return group_id in self._groups

    def list_groups(self) -> list[tuple[str, str]]:
        """(group id, state) of every share group, for ListGroups (type and protocol type "share")."""
        return [(group.group_id, group.state) for group in self._groups.values()]

    def initialized_partitions(self, group_id: str) -> dict[uuid.UUID, frozenset[int]]:
        group = self._groups.get(group_id)
        if group is None:
            return {}
        return {topic_id: frozenset(partitions) for topic_id, partitions in group.initialized.items()}

    # ---------------------------------------------------------------- heartbeat

    def heartbeat(
        self,
        group_id: str,
        member_id: str | None,
        member_epoch: int,
        *,
        topics: Mapping[str, TopicMetadata],
        now_ms: int,
        subscribed_topic_names: Sequence[str] | None = None,
        rack_id: str | None = None,
        client_id: str = "",
        client_host: str = "",
    ) -> HeartbeatResult:
        """Handle one ShareGroupHeartbeat; errors come back in the result, never raised."""
        try:
            _validate_request(group_id, member_id, member_epoch, rack_id, subscribed_topic_names)
            assert member_id is not None
            if member_epoch == LEAVE_GROUP_MEMBER_EPOCH:
                return self._leave(group_id, member_id)
            return self._heartbeat(
                group_id,
                member_id,
                member_epoch,
                topics,
                now_ms,
                subscribed_topic_names,
                rack_id,
                client_id,
                client_host,
            )
        except _HeartbeatError as error:
            return HeartbeatResult(error.error_code, error.message)

    def _existing_group(self, group_id: str, missing_message: str) -> ShareGroup:
        if self._is_other_group_type(group_id):
            raise _not_share_group(group_id)
        group = self._groups.get(group_id)
        if group is None:
            raise _HeartbeatError(_codes.GROUP_ID_NOT_FOUND, missing_message)
        return group

    def _leave(self, group_id: str, member_id: str) -> HeartbeatResult:
        group = self._existing_group(group_id, f"Group {group_id} not found.")
        if member_id not in group.members:
            raise _unknown_member(group_id, member_id)
        self._remove_member(group, member_id)
        # Kafka's leave response echoes the member and epoch -1 and sets no heartbeat interval.
        return HeartbeatResult(member_id=member_id, member_epoch=LEAVE_GROUP_MEMBER_EPOCH)

    def _heartbeat(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        topics: Mapping[str, TopicMetadata],
        now_ms: int,
        subscribed_topic_names: Sequence[str] | None,
        rack_id: str | None,
        client_id: str,
        client_host: str,
    ) -> HeartbeatResult:
        joining = member_epoch == 0
        if joining and group_id not in self._groups and not self._is_other_group_type(group_id):
            group = ShareGroup(group_id)
            created = True
        else:
            group = self._existing_group(group_id, f"Share group {group_id} not found.")
            created = False
        max_size = self._broker.group_share_max_size
        if len(group.members) >= max_size and member_id not in group.members:
            raise _HeartbeatError(
                _codes.GROUP_MAX_SIZE_REACHED,
                f"The share group has reached its maximum capacity of {max_size} members.",
            )
        member = group.members.get(member_id)
        if member is None:
            if not joining:
                raise _unknown_member(group_id, member_id)
            member = ShareGroupMember(member_id)
        elif not joining:
            _check_member_epoch(member, member_epoch)
        # An epoch-0 request for a known member id is a rejoin: accepted, assignment resent.
        if created:
            self._groups[group_id] = group

        old_assignment = member.assigned
        subscription_changed = (
            subscribed_topic_names is not None
            and frozenset(subscribed_topic_names) != member.subscribed_topic_names
        ) or member_id not in group.members
        if subscribed_topic_names is not None:
            member.subscribed_topic_names = frozenset(subscribed_topic_names)
        if rack_id is not None:
            member.rack_id = rack_id
        member.client_id, member.client_host = client_id, client_host
        group.members[member_id] = member

        metadata = _subscription_metadata(group, topics)
        epoch_bumped = subscription_changed or metadata != group.subscription_metadata
        if epoch_bumped:
            group.group_epoch += 1
            group.subscription_metadata = metadata
        newly_initialized = _initialize_partitions(group, metadata)
        configs = self._group_configs(group_id)
        if group.group_epoch > group.assignment_epoch and _can_compute_assignment(
            group, configs.share_assignment_interval_ms, now_ms
        ):
            self._update_target_assignment(group)
            group.assignment_timestamp_ms = now_ms
        self._reconcile(group, member, topics, force=epoch_bumped)

        member.session_deadline_ms = now_ms + configs.share_session_timeout_ms
        heapq.heappush(self._session_deadlines, (member.session_deadline_ms, group_id, member_id))

        result = HeartbeatResult(
            member_id=member_id,
            member_epoch=member.member_epoch,
            heartbeat_interval_ms=configs.share_heartbeat_interval_ms,
            newly_initialized=newly_initialized,
        )
        # Sent on (re)join, on a full request, or when it changed (section 2.4).
        if joining or subscribed_topic_names is not None or member.assigned != old_assignment:
            result.assignment = {topic_id: sorted(parts) for topic_id, parts in member.assigned.items()}
        return result

    def _update_target_assignment(self, group: ShareGroup) -> None:
        metadata = group.subscription_metadata
        name_by_id = {meta.topic_id: name for name, meta in metadata.items()}
        previous = {
            member_id: {
                name_by_id[topic_id]: parts
                for topic_id, parts in assignment.items()
                if topic_id in name_by_id
            }
            for member_id, assignment in group.target_assignment.items()
            if member_id in group.members
        }
        # Only initialised partitions are assignable; here that is every partition of an existing topic.
        counts = {name: meta.partitions for name, meta in metadata.items()}
        subscriptions = {
            member_id: member.subscribed_topic_names for member_id, member in group.members.items()
        }
        target = assign(subscriptions, counts, previous)
        group.target_assignment = {
            member_id: {metadata[name].topic_id: parts for name, parts in assignment.items() if parts}
            for member_id, assignment in target.items()
        }
        group.assignment_epoch = group.group_epoch

    @staticmethod
    def _reconcile(
        group: ShareGroup, member: ShareGroupMember, topics: Mapping[str, TopicMetadata], *, force: bool
    ) -> None:
        """No revocation phase: the member moves straight to its target assignment and epoch.

        The assignment keeps only topics the member subscribes to that still exist
        (ShareGroupAssignmentBuilder.filterAssignedPartitions). When this heartbeat bumped the
        group epoch (``force``) but the target assignment is not recomputed yet
        (share.assignment.interval.ms), the member keeps its epoch and its assignment is
        filtered the same way: a deleted or unsubscribed topic leaves it at once.
        """
        if member.member_epoch != group.assignment_epoch:
            member.previous_member_epoch = member.member_epoch
            member.member_epoch = group.assignment_epoch
        elif not force:
            return
        subscribed = {topics[name].topic_id for name in member.subscribed_topic_names if name in topics}
        member.assigned = {
            topic_id: parts
            for topic_id, parts in group.target_assignment.get(member.member_id, {}).items()
            if topic_id in subscribed
        }

    def _remove_member(self, group: ShareGroup, member_id: str) -> None:
        del group.members[member_id]
        group.target_assignment.pop(member_id, None)
        group.group_epoch += 1

    # ---------------------------------------------------------------- session timeouts

    def next_deadline(self) -> int | None:
        """Earliest live member session deadline, or None."""
        heap = self._session_deadlines
        while heap and not self._is_live_deadline(*heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _is_live_deadline(self, deadline: int, group_id: str, member_id: str) -> bool:
        group = self._groups.get(group_id)
        member = group.members.get(member_id) if group is not None else None
        return member is not None and member.session_deadline_ms == deadline

    def expire_members(self, now_ms: int) -> list[tuple[str, str]]:
        """Remove members whose session timed out (like a leave); returns (group id, member id).

        This does not release their records on partition leaders: that happens when their share
        sessions close or their acquisition locks expire (section 2.3).
        """
        expired = []
        heap = self._session_deadlines
        while heap and heap[0][0] <= now_ms:
            deadline, group_id, member_id = heapq.heappop(heap)
            if self._is_live_deadline(deadline, group_id, member_id):
                self._remove_member(self._groups[group_id], member_id)
                expired.append((group_id, member_id))
        return expired

    # ---------------------------------------------------------------- describe

    def describe(self, group_ids: Iterable[str], topics: Mapping[str, TopicMetadata]) -> list[DescribedGroup]:
        """ShareGroupDescribe (section 5.1); one entry per requested id, in order."""
        name_by_id = {meta.topic_id: name for name, meta in topics.items()}
        described = []
        for group_id in group_ids:
            if not group_id:
                described.append(DescribedGroup(group_id, _codes.INVALID_GROUP_ID, None))
                continue
            group = self._groups.get(group_id)
            if self._is_other_group_type(group_id):
                error = _not_share_group(group_id)
                described.append(DescribedGroup(group_id, error.error_code, error.message))
            elif group is None:
                described.append(
                    DescribedGroup(group_id, _codes.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
                )
            else:
                described.append(_describe_group(group, name_by_id))
        return described

    # ---------------------------------------------------------------- admin operations

    def delete_group(self, group_id: str) -> AdminResult:
        """DeleteGroups for a share group: only when Empty; the caller deletes ``deleted`` state."""
        if self._is_other_group_type(group_id):
            return AdminResult(_codes.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group.")
        group = self._groups.get(group_id)
        if group is None:
            return AdminResult(_codes.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        if group.members:
            return AdminResult(_codes.NON_EMPTY_GROUP, "The group is not empty.")
        deleted = self.initialized_partitions(group_id)
        del self._groups[group_id]
        return AdminResult(deleted=deleted)

    def prepare_alter_offsets(self, group_id: str) -> AdminResult:
        """AlterShareGroupOffsets gate: the group must be empty; a missing group is created.

        After this succeeds the caller resets each valid partition's state and calls
        ``mark_initialized`` for it.
        """
        if self._is_other_group_type(group_id):
            return AdminResult(_codes.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group.")
        group = self._groups.setdefault(group_id, ShareGroup(group_id))
        if group.members:
            return AdminResult(_codes.NON_EMPTY_GROUP, "The group is not empty.")
        return AdminResult()

    def bump_group_epoch(self, group_id: str) -> int:
        """AlterShareGroupOffsets: a new group epoch, which becomes the reset state's state epoch."""
        group = self._groups.setdefault(group_id, ShareGroup(group_id))
        group.group_epoch += 1
        return group.group_epoch

    def mark_initialized(self, group_id: str, topic_id: uuid.UUID, partitions: Iterable[int]) -> None:
        group = self._groups.setdefault(group_id, ShareGroup(group_id))
        group.initialized.setdefault(topic_id, set()).update(partitions)

    def delete_offsets(self, group_id: str, topic_ids: Iterable[uuid.UUID]) -> AdminResult:
        """DeleteShareGroupOffsets for whole topics; ``deleted`` lists the state to remove.

        A topic with no initialised state gets UNKNOWN_TOPIC_OR_PARTITION; a deleted topic is
        re-initialised (auto offset reset applies again) when a member subscribes later.
        """
        if self._is_other_group_type(group_id):
            return AdminResult(_codes.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group.")
        group = self._groups.get(group_id)
        if group is None:
            return AdminResult(_codes.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        if group.members:
            return AdminResult(_codes.NON_EMPTY_GROUP, "The group is not empty.")
        result = AdminResult()
        for topic_id in topic_ids:
            partitions = group.initialized.pop(topic_id, None)
            if partitions is None:
                result.topic_errors[topic_id] = (
                    _codes.UNKNOWN_TOPIC_OR_PARTITION,
                    "There is no offset information to delete.",
                )
            else:
                result.deleted[topic_id] = frozenset(partitions)
        if result.deleted:
            # Forget the metadata so a later subscription bumps the epoch and re-initialises.
            group.subscription_metadata = {
                name: meta
                for name, meta in group.subscription_metadata.items()
                if meta.topic_id not in result.deleted
            }
        return result

    def topic_deleted(self, topic_id: uuid.UUID) -> list[str]:
        """A topic was deleted: drop its initialised state from every group; returns the groups."""
        affected = []
        for group in self._groups.values():
            if group.initialized.pop(topic_id, None) is not None:
                affected.append(group.group_id)
        return affected

    # ---------------------------------------------------------------- persistence

    def snapshot(self, group_id: str) -> dict[str, Any] | None:
        """The durable state of one group as JSON-able data, or None when the group does not exist.

        This is what Kafka writes to __consumer_offsets for a share group (group epoch,
        member metadata and epochs, target assignment, initialised partitions); session
        deadlines are left out because Kafka restarts every member's session timer on load.
        """
        group = self._groups.get(group_id)
        if group is None:
            return None
        return {
            "group_id": group.group_id,
            "group_epoch": group.group_epoch,
            "assignment_epoch": group.assignment_epoch,
            "assignment_timestamp_ms": group.assignment_timestamp_ms,
            "members": [
                {
                    "member_id": member.member_id,
                    "member_epoch": member.member_epoch,
                    "previous_member_epoch": member.previous_member_epoch,
                    "rack_id": member.rack_id,
                    "client_id": member.client_id,
                    "client_host": member.client_host,
                    "subscribed_topic_names": sorted(member.subscribed_topic_names),
                    "assigned": _assignment_to_json(member.assigned),
                }
                for member in group.members.values()
            ],
            "target_assignment": {
                member_id: _assignment_to_json(assignment)
                for member_id, assignment in group.target_assignment.items()
            },
            "subscription_metadata": {
                name: [str(meta.topic_id), meta.partitions]
                for name, meta in group.subscription_metadata.items()
            },
            "initialized": {
                str(topic_id): sorted(partitions) for topic_id, partitions in group.initialized.items()
            },
        }

    def restore(self, snapshot: Mapping[str, Any], now_ms: int) -> None:
        """Load a group written by ``snapshot`` (replacing any group of that id).

        Like Kafka's coordinator when it loads a __consumer_offsets partition, every member
        gets a fresh session timer starting now: members that do not heartbeat again are
        removed once it runs out.
        """
        group = ShareGroup(
            group_id=str(snapshot["group_id"]),
            group_epoch=int(snapshot["group_epoch"]),
            assignment_epoch=int(snapshot["assignment_epoch"]),
            assignment_timestamp_ms=int(snapshot.get("assignment_timestamp_ms", 0)),
            target_assignment={
                str(member_id): _assignment_from_json(assignment)
                for member_id, assignment in snapshot["target_assignment"].items()
            },
            subscription_metadata={
                str(name): TopicMetadata(uuid.UUID(str(topic_id)), int(partitions))
                for name, (topic_id, partitions) in snapshot["subscription_metadata"].items()
            },
            initialized={
                uuid.UUID(str(topic_id)): {int(p) for p in partitions}
                for topic_id, partitions in snapshot["initialized"].items()
            },
        )
        timeout_ms = self._group_configs(group.group_id).share_session_timeout_ms
        for entry in snapshot["members"]:
            member = ShareGroupMember(
                member_id=str(entry["member_id"]),
                member_epoch=int(entry["member_epoch"]),
                previous_member_epoch=int(entry["previous_member_epoch"]),
                rack_id=None if entry["rack_id"] is None else str(entry["rack_id"]),
                client_id=str(entry["client_id"]),
                client_host=str(entry["client_host"]),
                subscribed_topic_names=frozenset(str(name) for name in entry["subscribed_topic_names"]),
                assigned=_assignment_from_json(entry["assigned"]),
                session_deadline_ms=now_ms + timeout_ms,
            )
            group.members[member.member_id] = member
            heapq.heappush(
                self._session_deadlines, (member.session_deadline_ms, group.group_id, member.member_id)
            )
        self._groups[group.group_id] = group


def _can_compute_assignment(group: ShareGroup, interval_ms: int, now_ms: int) -> bool:
    """GroupMetadataManager.canComputeNextTargetAssignment: the first assignment and an interval
    of 0 go at once; otherwise the group keeps its last target assignment (a joining member gets
    nothing yet) until a heartbeat comes at least the interval after the last computation."""
    if group.assignment_timestamp_ms == 0 or interval_ms == 0:
        return True
    return now_ms >= group.assignment_timestamp_ms + interval_ms


def validate_heartbeat_request(
    group_id: str,
    member_id: str | None,
    member_epoch: int,
    rack_id: str | None,
    subscribed_topic_names: Sequence[str] | None,
) -> tuple[int, str | None] | None:
    """The request checks alone, as (error code, message), or None when the request is valid.

    Kafka's GroupCoordinatorService runs them before it looks for the group's coordinator
    shard, so an invalid request gets INVALID_REQUEST even on a broker that is not the
    group's coordinator.
    """
    try:
        _validate_request(group_id, member_id, member_epoch, rack_id, subscribed_topic_names)
    except _HeartbeatError as error:
        return error.error_code, error.message
    return None


# --------------------------------------------------------------------------------------
# Helpers


def _validate_request(
    group_id: str,
    member_id: str | None,
    member_epoch: int,
    rack_id: str | None,
    subscribed_topic_names: Sequence[str] | None,
) -> None:
    """ShareGroupHeartbeat request checks (KafkaApis + throwIfShareGroupHeartbeatRequestIsInvalid)."""
    if member_id is None or not member_id.strip():
        raise _HeartbeatError(_codes.INVALID_REQUEST, "MemberId can't be empty.")
    if len(member_id) > _MAX_MEMBER_ID_LENGTH:
        # [unconfirmed wording] 4.1+ brokers refuse ids longer than a UUID string.
        raise _HeartbeatError(_codes.INVALID_REQUEST, "MemberId can't be longer than 36 characters.")
    if not group_id.strip():
        raise _HeartbeatError(_codes.INVALID_REQUEST, "GroupId can't be empty.")
    if rack_id is not None and not rack_id.strip():
        raise _HeartbeatError(_codes.INVALID_REQUEST, "RackId can't be empty.")
    if member_epoch == 0 and not subscribed_topic_names:
        raise _HeartbeatError(_codes.INVALID_REQUEST, "SubscribedTopicNames must be set in first request.")
    if member_epoch < LEAVE_GROUP_MEMBER_EPOCH:
        raise _HeartbeatError(_codes.INVALID_REQUEST, "MemberEpoch is invalid.")


def _unknown_member(group_id: str, member_id: str) -> _HeartbeatError:
    return _HeartbeatError(
        _codes.UNKNOWN_MEMBER_ID, f"Member {member_id} is not a member of group {group_id}."
    )


def _check_member_epoch(member: ShareGroupMember, received: int) -> None:
    """Kafka's throwIfShareGroupMemberEpochIsInvalid; the previous epoch covers a lost response."""
    known = member.member_epoch
    if received > known:
        raise _HeartbeatError(
            _codes.FENCED_MEMBER_EPOCH,
            f"The share group member has a greater member epoch ({received}) than the one known by the "
            f"group coordinator ({known}). The member must abandon all its partitions and rejoin.",
        )
    if received < known and received != member.previous_member_epoch:
        raise _HeartbeatError(
            _codes.FENCED_MEMBER_EPOCH,
            f"The share group member has a smaller member epoch ({received}) than the one known by the "
            f"group coordinator ({known}), and it does not match the previous member epoch "
            f"({member.previous_member_epoch}). The member must abandon all its partitions and rejoin.",
        )


def _subscription_metadata(
    group: ShareGroup, topics: Mapping[str, TopicMetadata]
) -> dict[str, TopicMetadata]:
    subscribed = set[str]().union(*(member.subscribed_topic_names for member in group.members.values()))
    return {name: topics[name] for name in sorted(subscribed) if name in topics}


def _initialize_partitions(
    group: ShareGroup, metadata: Mapping[str, TopicMetadata]
) -> dict[uuid.UUID, list[int]]:
    fresh: dict[uuid.UUID, list[int]] = {}
    for meta in metadata.values():
        known = group.initialized.setdefault(meta.topic_id, set())
        missing = [partition for partition in range(meta.partitions) if partition not in known]
        if missing:
            known.update(missing)
            fresh[meta.topic_id] = missing
    return fresh


def _describe_group(group: ShareGroup, name_by_id: Mapping[uuid.UUID, str]) -> DescribedGroup:
    members = [
        DescribedMember(
            member_id=member.member_id,
            rack_id=member.rack_id,
            member_epoch=member.member_epoch,
            client_id=member.client_id,
            client_host=member.client_host,
            subscribed_topic_names=sorted(member.subscribed_topic_names),
            # A deleted topic stays in the assignment until the member's next heartbeat; Kafka
            # (ShareGroupMember.topicPartitionsFromMap) leaves topics unknown to its metadata out.
            assignment=[
                (topic_id, name_by_id[topic_id], sorted(parts))
                for topic_id, parts in sorted(member.assigned.items(), key=lambda item: str(item[0]))
                if topic_id in name_by_id
            ],
        )
        for member in group.members.values()
    ]
    return DescribedGroup(
        group_id=group.group_id,
        group_state=group.state,
        group_epoch=group.group_epoch,
        assignment_epoch=group.assignment_epoch,
        members=members,
    )


def _assignment_to_json(assignment: TopicAssignment) -> dict[str, list[int]]:
    return {str(topic_id): sorted(parts) for topic_id, parts in assignment.items()}


def _assignment_from_json(data: Mapping[str, Any]) -> TopicAssignment:
    return {uuid.UUID(str(topic_id)): frozenset(int(p) for p in parts) for topic_id, parts in data.items()}
