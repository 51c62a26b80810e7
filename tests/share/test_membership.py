import re
import uuid

import pytest

from aioshare.client.backoff import Backoff
from aioshare.protocol.errors import (
    BrokerError,
    ErrorCode,
    GroupAuthorizationFailedError,
    SslAuthenticationError,
    TopicAuthorizationFailedError,
)
from aioshare.protocol.types import TopicIdPartition
from aioshare.share.membership import (
    HeartbeatResponseData,
    Membership,
    MembershipFatal,
    MemberState,
)

TOPIC_A = uuid.UUID(int=0xA)
TOPIC_B = uuid.UUID(int=0xB)
MID = "AAAAAAAAAAAAAAAAAAAAAA"


def make(rack: str | None = None) -> Membership:
    return Membership(
        "g1", member_id=MID, rack_id=rack, backoff=Backoff(initial=1.0, maximum=8.0, jitter=0.0)
    )


def ok(epoch: int, assignment=None, interval_ms: int = 5000) -> HeartbeatResponseData:  # type: ignore[no-untyped-def]
    return HeartbeatResponseData(
        member_id=MID, member_epoch=epoch, heartbeat_interval_ms=interval_ms, assignment=assignment
    )


def err(code: int, msg: str | None = None) -> HeartbeatResponseData:
    return HeartbeatResponseData(error_code=code, error_message=msg, member_epoch=-1)


def state(m: Membership) -> MemberState:
    # A function call stops mypy from narrowing m.state across transitions.
    return m.state


def joined(now: float = 0.0, rack: str | None = None) -> Membership:
    m = make(rack)
    m.subscribe(["b", "a"], now)
    assert m.build_heartbeat(now) is not None
    m.on_response(ok(3, assignment=[]), now)
    return m


def test_generated_member_id_is_a_kafka_uuid() -> None:
    m = Membership("g")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", m.member_id)
    assert Membership("g").member_id != m.member_id


def test_nothing_to_send_before_subscribe() -> None:
    m = make()
    assert state(m) is MemberState.UNSUBSCRIBED
    assert m.build_heartbeat(0.0) is None
    assert m.next_heartbeat_at() is None


def test_first_heartbeat_is_a_full_join_at_epoch_0() -> None:
    m = make(rack="r1")
    m.subscribe(["b", "a"], 10.0)
    assert m.next_heartbeat_at() == 10.0
    req = m.build_heartbeat(10.0)
    assert req is not None
    assert (req.group_id, req.member_id, req.member_epoch) == ("g1", MID, 0)
    assert req.subscribed_topic_names == ["a", "b"]
    assert req.rack_id == "r1"


def test_no_second_request_while_one_is_in_flight() -> None:
    m = make()
    m.subscribe(["a"], 0.0)
    assert m.build_heartbeat(0.0) is not None
    assert m.build_heartbeat(100.0) is None
    assert m.next_heartbeat_at() is None


def test_later_heartbeats_send_only_changed_fields_on_the_interval() -> None:
    m = make(rack="r1")
    m.subscribe(["a"], 0.0)
    m.build_heartbeat(0.0)
    assert not m.on_response(ok(5, interval_ms=2000), 0.5)
    assert state(m) is MemberState.STABLE and m.epoch == 5
    assert m.next_heartbeat_at() == 2.5
    assert m.build_heartbeat(2.4) is None
    req = m.build_heartbeat(2.5)
    assert req is not None
    assert (req.member_epoch, req.subscribed_topic_names, req.rack_id) == (5, None, None)


def test_empty_first_assignment_then_real_one() -> None:
    m = make()
    m.subscribe(["a"], 0.0)
    m.build_heartbeat(0.0)
    assert not m.on_response(ok(1, assignment=[]), 0.0)
    assert m.assignment == frozenset()
    assert m.poll_assignment_change() is None
    m.build_heartbeat(5.0)
    assert m.on_response(ok(2, assignment=[(TOPIC_A, [0, 1]), (TOPIC_B, [2])]), 5.0)
    expected = frozenset(
        {TopicIdPartition(TOPIC_A, 0), TopicIdPartition(TOPIC_A, 1), TopicIdPartition(TOPIC_B, 2)}
    )
    assert m.assignment == expected
    assert m.assignment_changed
    assert m.poll_assignment_change() == expected
    assert m.poll_assignment_change() is None
    # Null assignment means unchanged.
    m.build_heartbeat(10.0)
    assert not m.on_response(ok(2, assignment=None), 10.0)
    assert m.assignment == expected
    # Same assignment again is not a change.
    m.build_heartbeat(15.0)
    assert not m.on_response(ok(2, assignment=[(TOPIC_B, [2]), (TOPIC_A, [1, 0])]), 15.0)


def test_subscription_change_is_sent_immediately() -> None:
    m = joined()
    m.subscribe(["a", "b", "c"], 1.0)
    req = m.build_heartbeat(1.0)
    assert req is not None
    assert req.member_epoch == 3 and req.subscribed_topic_names == ["a", "b", "c"]
    m.on_response(ok(4), 1.2)
    assert m.next_heartbeat_at() == 6.2
    m.subscribe(["a", "b", "c"], 2.0)  # unchanged: no early heartbeat
    assert m.next_heartbeat_at() == 6.2


def test_subscription_change_while_in_flight_goes_right_after_the_response() -> None:
    m = joined()
    m.build_heartbeat(5.0)
    m.subscribe(["z"], 5.1)
    m.on_response(ok(3), 5.2)
    assert m.next_heartbeat_at() == 5.2
    req = m.build_heartbeat(5.2)
    assert req is not None and req.subscribed_topic_names == ["z"]


@pytest.mark.parametrize("code", [110, 25])
def test_fencing_drops_assignment_and_rejoins_at_epoch_0_with_same_id(code: int) -> None:
    m = joined(rack="r1")
    m.build_heartbeat(5.0)
    m.on_response(ok(4, assignment=[(TOPIC_A, [0])]), 5.0)
    m.poll_assignment_change()
    m.build_heartbeat(10.0)
    assert m.on_response(err(code), 10.0)
    assert m.assignment == frozenset()
    assert m.poll_assignment_change() == frozenset()
    assert state(m) is MemberState.JOINING and m.epoch == 0
    req = m.build_heartbeat(10.0)
    assert req is not None
    assert (req.member_id, req.member_epoch, req.subscribed_topic_names, req.rack_id) == (
        MID,
        0,
        ["a", "b"],
        "r1",
    )


@pytest.mark.parametrize("code", [16, 15])
def test_coordinator_moved_needs_coordinator_and_backs_off(code: int) -> None:
    m = joined()
    m.build_heartbeat(5.0)
    assert not m.on_response(err(code), 5.0)
    assert m.need_coordinator
    assert m.epoch == 3 and m.state is MemberState.STABLE
    assert m.next_heartbeat_at() == 6.0
    m.coordinator_found()
    assert not m.need_coordinator
    req = m.build_heartbeat(6.0)
    assert req is not None
    # After an error the next heartbeat repeats every field with the same epoch.
    assert req.member_epoch == 3 and req.subscribed_topic_names == ["a", "b"]


def test_load_in_progress_backs_off_without_dropping_the_coordinator() -> None:
    m = joined()
    m.build_heartbeat(5.0)
    m.on_response(err(14), 5.0)
    assert not m.need_coordinator
    assert m.next_heartbeat_at() == 6.0


def test_backoff_grows_and_resets_on_success() -> None:
    m = joined()
    now = 5.0
    delays = []
    for _ in range(5):
        m.build_heartbeat(now)
        m.on_response(err(14), now)
        nxt = m.next_heartbeat_at()
        assert nxt is not None
        delays.append(nxt - now)
        now = nxt
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    m.build_heartbeat(now)
    m.on_response(ok(3), now)
    m.build_heartbeat(now + 5)
    m.on_response(err(14), now + 5)
    assert m.next_heartbeat_at() == now + 6


@pytest.mark.parametrize("code", [81, 30, 42, 35, 9999])
def test_fatal_errors_stop_the_member(code: int) -> None:
    m = joined()
    m.build_heartbeat(5.0)
    m.on_response(err(code, "nope"), 5.0)
    assert state(m) is MemberState.FATAL
    assert m.fatal == MembershipFatal(code, "nope")
    assert m.build_heartbeat(100.0) is None
    assert m.next_heartbeat_at() is None
    with pytest.raises(BrokerError) as info:
        m.subscribe(["x"], 100.0)
    assert info.value.code == code and info.value.message == "nope"


@pytest.mark.parametrize(
    ("broker_message", "expected"),
    [
        (None, "Not authorized to access topics: [a, b]"),  # what Kafka sends
        ("", "Not authorized to access topics: [a, b]"),
        ("denied", "Not authorized to access topics: [a, b]: denied"),
    ],
)
def test_topic_authorization_failure_names_the_subscribed_topics(
    broker_message: str | None, expected: str
) -> None:
    m = joined()
    m.build_heartbeat(5.0)
    m.on_response(err(29, broker_message), 5.0)
    assert state(m) is MemberState.FATAL
    with pytest.raises(TopicAuthorizationFailedError) as info:
        m.subscribe(["x"], 6.0)
    assert info.value.message == expected


def test_a_refused_join_leaves_nothing_to_wait_for() -> None:
    """The join's coordinator lookup is refused (GROUP_AUTHORIZATION_FAILED): the heartbeat built
    for it is never answered, so the member is dead, and leave() has nothing to send or await."""
    m = make()
    m.subscribe(["a"], 0.0)
    assert m.build_heartbeat(0.0) is not None
    error = GroupAuthorizationFailedError("group 'g1'")
    assert not m.on_fatal(error)
    assert state(m) is MemberState.FATAL
    assert not m.in_flight
    assert m.fatal is not None and m.fatal.error() is error
    m.leave(1.0)
    assert state(m) is MemberState.FATAL
    assert m.build_heartbeat(1.0) is None and m.next_heartbeat_at() is None
    with pytest.raises(GroupAuthorizationFailedError):
        m.subscribe(["b"], 1.0)


def test_a_client_side_fatal_error_drops_the_assignment() -> None:
    # TLS refused by a new coordinator: an error with no protocol code, kept as it was raised.
    m = joined()
    m.build_heartbeat(5.0)
    m.on_response(ok(4, assignment=[(TOPIC_A, [0])]), 5.0)
    m.poll_assignment_change()
    m.build_heartbeat(10.0)
    error = SslAuthenticationError("TLS with 127.0.0.1:9093 failed")
    assert m.on_fatal(error)
    assert m.poll_assignment_change() == frozenset()
    assert state(m) is MemberState.FATAL
    assert m.fatal is not None and m.fatal.error() is error


def test_lost_response_resends_with_the_same_epoch() -> None:
    m = joined()
    m.build_heartbeat(5.0)
    m.on_failure(5.5)
    assert m.epoch == 3
    assert m.next_heartbeat_at() == 6.5
    assert not m.need_coordinator
    req = m.build_heartbeat(6.5)
    assert req is not None and req.member_epoch == 3 and req.subscribed_topic_names == ["a", "b"]
    m.on_failure(7.0, disconnected=True)
    assert m.need_coordinator


def test_lost_join_resends_epoch_0() -> None:
    m = make()
    m.subscribe(["a"], 0.0)
    m.build_heartbeat(0.0)
    m.on_failure(1.0)
    req = m.build_heartbeat(2.0)
    assert req is not None and req.member_epoch == 0 and req.subscribed_topic_names == ["a"]


def test_leave_sends_epoch_minus_1_and_ends_unsubscribed() -> None:
    m = joined()
    m.build_heartbeat(5.0)
    m.on_response(ok(4, assignment=[(TOPIC_A, [0])]), 5.0)
    m.leave(6.0)
    assert state(m) is MemberState.LEAVING
    assert m.assignment == frozenset()
    req = m.build_heartbeat(6.0)
    assert req is not None
    assert (req.member_epoch, req.subscribed_topic_names, req.rack_id) == (-1, None, None)
    m.on_response(HeartbeatResponseData(member_id=MID, member_epoch=-1), 6.1)
    assert state(m) is MemberState.UNSUBSCRIBED
    assert m.build_heartbeat(100.0) is None


def test_leave_waits_for_the_in_flight_heartbeat() -> None:
    m = joined()
    m.build_heartbeat(5.0)
    m.leave(5.1)
    assert m.build_heartbeat(5.1) is None
    m.on_response(ok(3), 5.2)
    req = m.build_heartbeat(5.2)
    assert req is not None and req.member_epoch == -1


def test_leave_before_anything_was_sent_needs_no_request() -> None:
    m = make()
    m.subscribe(["a"], 0.0)
    m.leave(0.0)
    assert state(m) is MemberState.UNSUBSCRIBED
    assert m.build_heartbeat(0.0) is None


def test_lost_leave_response_is_best_effort() -> None:
    m = joined()
    m.leave(6.0)
    m.build_heartbeat(6.0)
    m.on_failure(7.0)
    assert state(m) is MemberState.UNSUBSCRIBED


def test_unsubscribe_then_resubscribe_rejoins_after_the_leave() -> None:
    m = joined()
    m.subscribe([], 6.0)  # empty subscription = unsubscribe
    assert state(m) is MemberState.LEAVING
    m.build_heartbeat(6.0)
    m.subscribe(["q"], 6.1)
    m.on_response(HeartbeatResponseData(member_id=MID, member_epoch=-1), 6.2)
    assert state(m) is MemberState.JOINING
    req = m.build_heartbeat(6.2)
    assert req is not None and (req.member_id, req.member_epoch, req.subscribed_topic_names) == (
        MID,
        0,
        ["q"],
    )


def test_response_without_a_request_is_ignored() -> None:
    m = make()
    assert not m.on_response(ok(3), 0.0)
    assert m.epoch == 0


def test_health_counts_failed_heartbeats_since_the_last_clean_answer() -> None:
    m = make()
    assert m.last_answered_at is None and m.failures == 0
    m.subscribe(["a"], 0.0)
    m.build_heartbeat(0.0)
    m.on_response(ok(1), 0.5)
    assert m.last_answered_at == 0.5 and m.failures == 0
    m.build_heartbeat(5.5)
    m.on_failure(6.0)  # lost
    req = m.build_heartbeat(m.next_heartbeat_at() or 7.0)
    assert req is not None
    m.on_response(err(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS), 7.5)  # answered with an error
    assert m.last_answered_at == 0.5 and m.failures == 2
    m.build_heartbeat(m.next_heartbeat_at() or 9.0)
    m.on_response(ok(1), 9.5)
    assert m.last_answered_at == 9.5 and m.failures == 0
