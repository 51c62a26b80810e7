"""Share-group coordinator rules (semantics doc, sections 2 and 5), with a fake clock."""

from __future__ import annotations

import uuid

import pytest

from aioshare.broker import _codes
from aioshare.broker.config import BrokerConfig, GroupConfigs
from aioshare.broker.share_groups import HeartbeatResult, ShareGroupCoordinator, TopicMetadata

T1 = TopicMetadata(uuid.UUID(int=1), 2)
T2 = TopicMetadata(uuid.UUID(int=2), 1)
TOPICS = {"t1": T1, "t2": T2}
G = "group"


def coordinator(
    other_groups: frozenset[str] = frozenset(), broker: dict[str, str] | None = None
) -> ShareGroupCoordinator:
    config = BrokerConfig.from_mapping(broker or {})
    return ShareGroupCoordinator(config, is_other_group_type=other_groups.__contains__)


def join(
    c: ShareGroupCoordinator, member: str, topics: list[str] | None = None, now: int = 0
) -> HeartbeatResult:
    return c.heartbeat(G, member, 0, subscribed_topic_names=topics or ["t1"], topics=TOPICS, now_ms=now)


def beat(
    c: ShareGroupCoordinator,
    member: str,
    epoch: int,
    now: int = 0,
    topics: list[str] | None = None,
    metadata: dict[str, TopicMetadata] | None = None,
) -> HeartbeatResult:
    return c.heartbeat(
        G,
        member,
        epoch,
        subscribed_topic_names=topics,
        topics=TOPICS if metadata is None else metadata,
        now_ms=now,
    )


class TestRequestValidation:
    @pytest.mark.parametrize(
        ("group", "member", "epoch", "rack", "subscribed", "message"),
        [
            (G, None, 0, None, ["t1"], "MemberId can't be empty."),
            (G, "  ", 0, None, ["t1"], "MemberId can't be empty."),
            (G, "m" * 37, 0, None, ["t1"], "MemberId can't be longer than 36 characters."),
            (" ", "m", 0, None, ["t1"], "GroupId can't be empty."),
            (G, "m", 0, "", ["t1"], "RackId can't be empty."),
            (G, "m", 0, None, None, "SubscribedTopicNames must be set in first request."),
            (G, "m", 0, None, [], "SubscribedTopicNames must be set in first request."),
            (G, "m", -2, None, None, "MemberEpoch is invalid."),
        ],
    )
    def test_invalid_requests(
        self,
        group: str,
        member: str | None,
        epoch: int,
        rack: str | None,
        subscribed: list[str] | None,
        message: str,
    ) -> None:
        c = coordinator()
        result = c.heartbeat(
            group, member, epoch, subscribed_topic_names=subscribed, rack_id=rack, topics=TOPICS, now_ms=0
        )
        assert (result.error_code, result.error_message) == (_codes.INVALID_REQUEST, message)
        assert c.list_groups() == []

    def test_a_36_character_member_id_is_fine(self) -> None:
        assert join(coordinator(), "m" * 36).error_code == _codes.NONE


class TestJoin:
    def test_first_join_creates_the_group_and_assigns_at_once(self) -> None:
        c = coordinator()
        result = join(c, "a")
        assert (result.error_code, result.member_id, result.member_epoch) == (_codes.NONE, "a", 1)
        assert result.heartbeat_interval_ms == 5000
        assert result.assignment == {T1.topic_id: [0, 1]}
        assert result.newly_initialized == {T1.topic_id: [0, 1]}
        group = c.group(G)
        assert group is not None
        assert (group.state, group.group_epoch, group.assignment_epoch) == ("Stable", 1, 1)
        assert c.list_groups() == [(G, "Stable")] and c.is_share_group(G)

    def test_second_member_rebalances_and_the_first_learns_on_its_next_heartbeat(self) -> None:
        c = coordinator()
        join(c, "a")
        second = join(c, "b")
        assert second.member_epoch == 2
        first = beat(c, "a", 1)
        assert first.member_epoch == 2
        assert first.assignment is not None
        assert sorted(first.assignment[T1.topic_id] + second.assignment[T1.topic_id]) == [0, 1]  # type: ignore[index]
        assert beat(c, "a", 2).assignment is None

    def test_members_share_a_partition_when_there_are_more_members(self) -> None:
        c = coordinator()
        a = join(c, "a", ["t2"])
        b = join(c, "b", ["t2"])
        assert a.assignment == b.assignment == {T2.topic_id: [0]}

    def test_unknown_topics_are_not_assigned_until_they_exist(self) -> None:
        c = coordinator()
        result = c.heartbeat(G, "a", 0, subscribed_topic_names=["later"], topics=TOPICS, now_ms=0)
        assert result.assignment == {}
        later = TopicMetadata(uuid.UUID(int=3), 1)
        result = beat(c, "a", result.member_epoch, metadata={**TOPICS, "later": later})
        assert result.member_epoch == 2
        assert result.assignment == {later.topic_id: [0]}
        assert result.newly_initialized == {later.topic_id: [0]}

    def test_new_partitions_bump_the_epoch(self) -> None:
        c = coordinator()
        join(c, "a")
        grown = {**TOPICS, "t1": TopicMetadata(T1.topic_id, 3)}
        result = beat(c, "a", 1, metadata=grown)
        assert result.assignment == {T1.topic_id: [0, 1, 2]}
        assert result.newly_initialized == {T1.topic_id: [2]}

    def test_subscription_change_bumps_the_epoch_and_moves_the_assignment(self) -> None:
        c = coordinator()
        join(c, "a")
        result = beat(c, "a", 1, topics=["t2"])
        assert (result.member_epoch, result.assignment) == (2, {T2.topic_id: [0]})

    def test_rejoin_of_a_known_member_is_accepted_and_gets_the_assignment(self) -> None:
        c = coordinator()
        join(c, "a")
        join(c, "b")
        beat(c, "a", 1)
        result = join(c, "a")
        assert result.error_code == _codes.NONE and result.member_epoch == 2
        assert result.assignment is not None
        group = c.group(G)
        assert group is not None and group.group_epoch == 2

    def test_group_max_size(self) -> None:
        c = coordinator(broker={"group.share.max.size": "1"})
        join(c, "a")
        result = join(c, "b")
        assert (result.error_code, result.error_message) == (
            _codes.GROUP_MAX_SIZE_REACHED,
            "The share group has reached its maximum capacity of 1 members.",
        )
        assert beat(c, "b", 3).error_code == _codes.GROUP_MAX_SIZE_REACHED
        assert join(c, "a").error_code == _codes.NONE
        assert beat(c, "a", 1).error_code == _codes.NONE

    def test_heartbeat_interval_and_session_timeout_come_from_group_configs(self) -> None:
        broker = BrokerConfig()
        configs = GroupConfigs(
            broker, {"share.heartbeat.interval.ms": "6000", "share.session.timeout.ms": "50000"}
        )
        c = ShareGroupCoordinator(broker, group_configs=lambda _group: configs)
        assert join(c, "a", now=10).heartbeat_interval_ms == 6000
        assert c.next_deadline() == 50_010


class TestEpochValidation:
    def test_greater_epoch_is_fenced(self) -> None:
        c = coordinator()
        join(c, "a")
        result = beat(c, "a", 5)
        assert result.error_code == _codes.FENCED_MEMBER_EPOCH
        assert result.error_message is not None and "greater member epoch (5)" in result.error_message

    def test_previous_epoch_is_tolerated_for_a_lost_response(self) -> None:
        c = coordinator()
        join(c, "a")
        join(c, "b")
        beat(c, "a", 1)  # a moves from 1 to 2
        result = beat(c, "a", 1)
        assert (result.error_code, result.member_epoch) == (_codes.NONE, 2)

    def test_older_epoch_is_fenced(self) -> None:
        c = coordinator()
        join(c, "a")
        join(c, "b")
        beat(c, "a", 1)
        c.heartbeat(G, "c", 0, subscribed_topic_names=["t1"], topics=TOPICS, now_ms=0)
        beat(c, "a", 2)  # a at 3, previous 2
        result = beat(c, "a", 1)
        assert result.error_code == _codes.FENCED_MEMBER_EPOCH
        assert (
            result.error_message is not None
            and "does not match the previous member epoch (2)" in result.error_message
        )

    def test_unknown_member(self) -> None:
        c = coordinator()
        join(c, "a")
        result = beat(c, "zz", 1)
        assert (result.error_code, result.error_message) == (
            _codes.UNKNOWN_MEMBER_ID,
            "Member zz is not a member of group group.",
        )

    def test_unknown_group(self) -> None:
        result = beat(coordinator(), "a", 1)
        assert (result.error_code, result.error_message) == (
            _codes.GROUP_ID_NOT_FOUND,
            "Share group group not found.",
        )

    def test_group_id_of_another_group_type(self) -> None:
        c = coordinator(frozenset({G}))
        for result in (join(c, "a"), beat(c, "a", 1), beat(c, "a", -1)):
            assert (result.error_code, result.error_message) == (
                _codes.GROUP_ID_NOT_FOUND,
                "Group group is not a share group.",
            )
        assert c.list_groups() == []


class TestAssignmentInResponse:
    def test_only_on_join_full_request_or_change(self) -> None:
        c = coordinator()
        join(c, "a")
        assert beat(c, "a", 1).assignment is None
        assert beat(c, "a", 1, topics=["t1"]).assignment == {T1.topic_id: [0, 1]}


class TestLeaveAndTimeout:
    def test_leave_removes_the_member_and_bumps_the_epoch(self) -> None:
        c = coordinator()
        join(c, "a")
        join(c, "b")
        result = beat(c, "a", -1)
        assert (result.error_code, result.member_id, result.member_epoch) == (_codes.NONE, "a", -1)
        group = c.group(G)
        assert group is not None and set(group.members) == {"b"} and group.group_epoch == 3
        assert beat(c, "b", 2).assignment == {T1.topic_id: [0, 1]}
        beat(c, "b", -1)
        assert c.list_groups() == [(G, "Empty")]

    def test_leave_of_unknown_group_or_member(self) -> None:
        c = coordinator()
        assert (beat(c, "a", -1).error_code, beat(c, "a", -1).error_message) == (
            _codes.GROUP_ID_NOT_FOUND,
            "Group group not found.",
        )
        join(c, "a")
        assert beat(c, "b", -1).error_code == _codes.UNKNOWN_MEMBER_ID

    def test_session_timeout_removes_the_member_like_a_leave(self) -> None:
        c = coordinator()
        join(c, "a", now=0)
        join(c, "b", now=0)
        beat(c, "a", 1, now=20_000)
        assert c.next_deadline() == 45_000
        assert c.expire_members(44_999) == []
        assert c.expire_members(45_000) == [(G, "b")]
        assert c.next_deadline() == 65_000
        assert beat(c, "b", 2, now=45_001).error_code == _codes.UNKNOWN_MEMBER_ID
        group = c.group(G)
        assert group is not None and group.group_epoch == 3

    def test_a_left_member_has_no_timer(self) -> None:
        c = coordinator()
        join(c, "a")
        beat(c, "a", -1)
        assert c.next_deadline() is None
        assert c.expire_members(10**9) == []


class TestDescribe:
    def test_describes_a_group_its_members_and_errors(self) -> None:
        c = coordinator(frozenset({"classic"}))
        c.heartbeat(
            G,
            "a",
            0,
            subscribed_topic_names=["t1"],
            rack_id="r1",
            client_id="cid",
            client_host="/127.0.0.1",
            topics=TOPICS,
            now_ms=0,
        )
        described = c.describe([G, "nope", "classic", ""], TOPICS)
        group = described[0]
        assert (group.group_state, group.group_epoch, group.assignment_epoch, group.assignor_name) == (
            "Stable",
            1,
            1,
            "simple",
        )
        member = group.members[0]
        assert (member.member_id, member.rack_id, member.client_id, member.client_host) == (
            "a",
            "r1",
            "cid",
            "/127.0.0.1",
        )
        assert member.subscribed_topic_names == ["t1"]
        assert member.assignment == [(T1.topic_id, "t1", [0, 1])]
        assert (described[1].error_code, described[1].error_message) == (
            _codes.GROUP_ID_NOT_FOUND,
            "Group nope not found.",
        )
        assert described[2].error_message == "Group classic is not a share group."
        assert described[3].error_code == _codes.INVALID_GROUP_ID


class TestAdmin:
    def test_delete_group_only_when_empty(self) -> None:
        c = coordinator(frozenset({"classic"}))
        join(c, "a")
        assert c.delete_group(G).error_code == _codes.NON_EMPTY_GROUP
        beat(c, "a", -1)
        result = c.delete_group(G)
        assert result.error_code == _codes.NONE
        assert result.deleted == {T1.topic_id: frozenset({0, 1})}
        assert c.group(G) is None
        assert c.delete_group(G).error_code == _codes.GROUP_ID_NOT_FOUND
        assert c.delete_group("classic").error_message == "Group classic is not a share group."

    def test_alter_offsets_needs_an_empty_group_and_creates_a_missing_one(self) -> None:
        c = coordinator(frozenset({"classic"}))
        assert c.prepare_alter_offsets("fresh").error_code == _codes.NONE
        c.mark_initialized("fresh", T1.topic_id, [0])
        assert c.list_groups() == [("fresh", "Empty")]
        assert c.initialized_partitions("fresh") == {T1.topic_id: frozenset({0})}
        join(c, "a")
        assert c.prepare_alter_offsets(G).error_code == _codes.NON_EMPTY_GROUP
        assert c.prepare_alter_offsets("classic").error_code == _codes.GROUP_ID_NOT_FOUND

    def test_delete_offsets_per_topic_and_reinitialise_on_next_subscription(self) -> None:
        c = coordinator()
        join(c, "a")
        assert c.delete_offsets(G, [T1.topic_id]).error_code == _codes.NON_EMPTY_GROUP
        beat(c, "a", -1)
        result = c.delete_offsets(G, [T1.topic_id, T2.topic_id])
        assert result.deleted == {T1.topic_id: frozenset({0, 1})}
        assert result.topic_errors == {
            T2.topic_id: (_codes.UNKNOWN_TOPIC_OR_PARTITION, "There is no offset information to delete.")
        }
        assert c.initialized_partitions(G) == {}
        assert join(c, "b").newly_initialized == {T1.topic_id: [0, 1]}
        assert c.delete_offsets("nope", []).error_code == _codes.GROUP_ID_NOT_FOUND

    def test_deleted_topic_is_dropped_from_initialised_state(self) -> None:
        c = coordinator()
        join(c, "a")
        assert c.topic_deleted(T1.topic_id) == [G]
        assert c.initialized_partitions(G) == {}
