"""ShareGroupHeartbeat state machine (sans-IO), following the Java share consumer.

The shell loops: ``build_heartbeat(now)`` → send → ``on_response(data, now)`` or
``on_failure(now)`` (or ``on_fatal(error)`` when the heartbeat could not even be sent and
retrying cannot help); it sleeps until ``next_heartbeat_at()`` and reacts to
``poll_assignment_change()``, ``need_coordinator`` and ``fatal``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aioshare.client.backoff import Backoff
from aioshare.protocol.errors import BrokerError, ErrorCode, KafkaError, error_for_code
from aioshare.protocol.types import TopicIdPartition, kafka_uuid_str, random_kafka_uuid

__all__ = [
    "LEAVE_EPOCH",
    "HeartbeatRequestData",
    "HeartbeatResponseData",
    "MemberState",
    "Membership",
    "MembershipFatal",
]

LEAVE_EPOCH = -1

_FENCED = frozenset({ErrorCode.FENCED_MEMBER_EPOCH, ErrorCode.UNKNOWN_MEMBER_ID})
_COORDINATOR_MOVED = frozenset({ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE})
# Everything else (GROUP_MAX_SIZE_REACHED, GROUP_AUTHORIZATION_FAILED, INVALID_REQUEST,
# UNSUPPORTED_VERSION, TOPIC_AUTHORIZATION_FAILED and any code we do not know) is fatal,
# as in the Java heartbeat manager's default branch: retrying cannot fix it.


def topics_not_authorized(topics: Iterable[str], message: str | None) -> str:
    """Java's TopicAuthorizationException wording, with the broker's message if it sent one."""
    text = f"Not authorized to access topics: [{', '.join(sorted(topics))}]"
    return f"{text}: {message}" if message else text


class MemberState(enum.Enum):
    UNSUBSCRIBED = "unsubscribed"  # not in the group; nothing to send
    JOINING = "joining"  # epoch 0 heartbeat due or in flight
    STABLE = "stable"  # member with epoch > 0
    LEAVING = "leaving"  # epoch -1 heartbeat due or in flight
    FATAL = "fatal"  # stopped by a non-retriable error


@dataclass(frozen=True, slots=True)
class HeartbeatRequestData:
    group_id: str
    member_id: str
    member_epoch: int
    rack_id: str | None  # None = unchanged
    subscribed_topic_names: list[str] | None  # None = unchanged


@dataclass(frozen=True, slots=True)
class HeartbeatResponseData:
    error_code: int = 0
    error_message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    # (topic id, partitions) pairs; None = assignment unchanged.
    assignment: Sequence[tuple[uuid.UUID, Sequence[int]]] | None = None


@dataclass(frozen=True, slots=True)
class MembershipFatal:
    error_code: int
    error_message: str | None
    # The error itself when it was raised on the way to the coordinator rather than answered
    # (see Membership.on_fatal): TLS and SASL failures have no protocol code to rebuild it from.
    exception: KafkaError | None = field(default=None, compare=False)

    def error(self) -> KafkaError:
        """The typed exception (e.g. GroupAuthorizationFailedError)."""
        if self.exception is not None:
            return self.exception
        return error_for_code(self.error_code, self.error_message)


class Membership:
    """One consumer's membership in a share group."""

    def __init__(
        self,
        group_id: str,
        *,
        member_id: str | None = None,
        rack_id: str | None = None,
        backoff: Backoff | None = None,
        default_interval: float = 5.0,
    ) -> None:
        if not group_id:
            raise ValueError("group_id must not be empty")
        if rack_id == "":
            raise ValueError("rack_id must be None or non-empty")  # the broker rejects ""
        self.group_id = group_id
        # Client-generated and kept for the process lifetime, including rejoins (KIP-932).
        self.member_id = member_id or kafka_uuid_str(random_kafka_uuid())
        self.rack_id = rack_id
        self.epoch = 0
        self.state = MemberState.UNSUBSCRIBED
        self.heartbeat_interval = default_interval  # what the next heartbeat waits
        self._given_interval: float | None = None  # what the coordinator last said
        self.need_coordinator = False
        self.fatal: MembershipFatal | None = None
        # Health, for readiness checks: when the coordinator last answered a heartbeat without
        # an error, and how many heartbeats since then were lost or answered with one.
        self.last_answered_at: float | None = None
        self.failures = 0
        self._backoff = backoff if backoff is not None else Backoff()
        self._subscription: frozenset[str] = frozenset()
        self._assignment: frozenset[TopicIdPartition] = frozenset()
        self._assignment_changed = False
        self._next_at: float | None = None
        self._in_flight: HeartbeatRequestData | None = None
        # What the coordinator is known to hold; None forces a full heartbeat.
        self._sent_subscription: frozenset[str] | None = None
        self._rack_sent = False
        self._sent_any = False
        self._rejoin_after_leave = False

    # -- queries ---------------------------------------------------------------------

    @property
    def subscription(self) -> frozenset[str]:
        return self._subscription

    @property
    def assignment(self) -> frozenset[TopicIdPartition]:
        return self._assignment

    @property
    def assignment_changed(self) -> bool:
        return self._assignment_changed

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    @property
    def coordinator_interval(self) -> float | None:
        """The heartbeat interval (seconds) the coordinator gave in its last successful
        answer; None before the first (``heartbeat_interval`` is then the default)."""
        return self._given_interval

    def poll_assignment_change(self) -> frozenset[TopicIdPartition] | None:
        """The new assignment if it changed since the last call, else None."""
        if not self._assignment_changed:
            return None
        self._assignment_changed = False
        return self._assignment

    def next_heartbeat_at(self) -> float | None:
        """When ``build_heartbeat`` will next return a request; None while nothing is due."""
        if self._in_flight is not None or self.state in (MemberState.UNSUBSCRIBED, MemberState.FATAL):
            return None
        return self._next_at

    # -- commands --------------------------------------------------------------------

    def subscribe(self, topics: Iterable[str], now: float) -> None:
        """Set the subscription; a change is sent at once. An empty set means unsubscribe."""
        self._raise_if_fatal()
        new = frozenset(topics)
        if not new:
            self.unsubscribe(now)
            return
        changed = new != self._subscription
        self._subscription = new
        if self.state is MemberState.UNSUBSCRIBED:
            self._start_join(now)
        elif self.state is MemberState.LEAVING:
            self._rejoin_after_leave = True
        elif changed:
            self._next_at = now

    def unsubscribe(self, now: float) -> None:
        """Leave the group (epoch -1) and forget the subscription."""
        self._subscription = frozenset()
        self._rejoin_after_leave = False
        self.leave(now)

    def leave(self, now: float) -> None:
        """Send a leave heartbeat (close/unsubscribe); best effort, one attempt."""
        if self.state in (MemberState.UNSUBSCRIBED, MemberState.FATAL, MemberState.LEAVING):
            return
        self._drop_assignment()
        if not self._sent_any and self._in_flight is None:
            # The coordinator never heard of us: nothing to leave.
            self._finish_leave(now)
            return
        self.state = MemberState.LEAVING
        self._next_at = now

    def coordinator_found(self) -> None:
        self.need_coordinator = False

    def build_heartbeat(self, now: float) -> HeartbeatRequestData | None:
        """The heartbeat to send now, or None (not due, in flight, or nothing to do)."""
        if self.next_heartbeat_at() is None or self._next_at is None or now < self._next_at:
            return None
        if self.state is MemberState.LEAVING:
            req = HeartbeatRequestData(self.group_id, self.member_id, LEAVE_EPOCH, None, None)
        else:
            full = self.epoch == 0 or self._sent_subscription is None
            subs = None
            if full or self._subscription != self._sent_subscription:
                subs = sorted(self._subscription)
            rack = self.rack_id if full or not self._rack_sent else None
            req = HeartbeatRequestData(self.group_id, self.member_id, self.epoch, rack, subs)
        self._in_flight = req
        self._sent_any = True
        return req

    def on_response(self, data: HeartbeatResponseData, now: float) -> bool:
        """Apply a heartbeat response; returns True when the assignment changed."""
        req, self._in_flight = self._in_flight, None
        if req is None:
            return False  # not ours (e.g. arrived after a reset); ignore
        if req.member_epoch == LEAVE_EPOCH:
            self._finish_leave(now)
            return False
        code = data.error_code
        if code == ErrorCode.NONE:
            self.last_answered_at = now
            self.failures = 0
        else:
            self.failures += 1
        if self.state is MemberState.LEAVING:
            # Answer to the heartbeat sent before leave(): now send the leave itself.
            if code in _FENCED:
                self._finish_leave(now)
            else:
                self._next_at = now
            return False
        if code == ErrorCode.NONE:
            return self._on_success(req, data, now)
        self._forget_sent_fields()
        if code in _FENCED:
            # Rejoin at epoch 0 with the same member id, without backoff (Java does the same).
            changed = self._drop_assignment()
            self.epoch = 0
            self.state = MemberState.JOINING
            self._next_at = now
            return changed
        if code in _COORDINATOR_MOVED:
            self.need_coordinator = True
            self._next_at = now + self._backoff.next_delay()
            return False
        if code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
            # Same coordinator, still loading: just retry later.
            self._next_at = now + self._backoff.next_delay()
            return False
        message = data.error_message
        if code == ErrorCode.TOPIC_AUTHORIZATION_FAILED:
            # Kafka sends no ErrorMessage with it: name the topics, as Java's client does.
            message = topics_not_authorized(self._subscription, message)
        return self._die(MembershipFatal(code, message))

    def on_fatal(self, error: KafkaError) -> bool:
        """The heartbeat just built could not be sent, and retrying cannot help.

        For instance the coordinator lookup was refused (GROUP_AUTHORIZATION_FAILED), TLS or
        SASL with the coordinator failed, or it has no ShareGroupHeartbeat.  No heartbeat will
        be answered any more, so the member is dead: FATAL, nothing in flight, and ``leave()``
        has nothing to send (it would otherwise wait for an answer that never comes).  Returns
        True when the assignment changed (it is dropped).
        """
        self._in_flight = None
        if isinstance(error, BrokerError):
            return self._die(MembershipFatal(error.code, error.message, error))
        return self._die(MembershipFatal(ErrorCode.UNKNOWN_SERVER_ERROR, str(error), error))

    def on_failure(self, now: float, *, disconnected: bool = False) -> None:
        """The response was lost (timeout/disconnect): resend later with the same epoch."""
        req, self._in_flight = self._in_flight, None
        if req is None:
            return
        self.failures += 1
        if req.member_epoch == LEAVE_EPOCH:
            self._finish_leave(now)
            return
        if self.state is MemberState.LEAVING:
            self._next_at = now
            return
        if disconnected:
            self.need_coordinator = True
        # We cannot know what the coordinator applied, so the retry carries every field.
        self._forget_sent_fields()
        self._next_at = now + self._backoff.next_delay()

    # -- internals -------------------------------------------------------------------

    def _on_success(self, req: HeartbeatRequestData, data: HeartbeatResponseData, now: float) -> bool:
        self._backoff.reset()
        self.need_coordinator = False
        if data.member_id:
            self.member_id = data.member_id
        self.epoch = data.member_epoch
        if data.heartbeat_interval_ms > 0:
            self.heartbeat_interval = self._given_interval = data.heartbeat_interval_ms / 1000.0
        if req.subscribed_topic_names is not None:
            self._sent_subscription = frozenset(req.subscribed_topic_names)
        if req.rack_id is not None:
            self._rack_sent = True
        self.state = MemberState.STABLE
        changed = False
        if data.assignment is not None:
            new = frozenset(TopicIdPartition(tid, p) for tid, parts in data.assignment for p in parts)
            if new != self._assignment:
                self._assignment = new
                self._assignment_changed = changed = True
        if self._subscription != self._sent_subscription:
            self._next_at = now  # subscription changed while this heartbeat was in flight
        else:
            self._next_at = now + self.heartbeat_interval
        return changed

    def _die(self, fatal: MembershipFatal) -> bool:
        self.fatal = fatal
        self.state = MemberState.FATAL
        self._next_at = None
        return self._drop_assignment()

    def _start_join(self, now: float) -> None:
        self.state = MemberState.JOINING
        self.epoch = 0
        self._sent_any = False
        self._forget_sent_fields()
        self._backoff.reset()
        self._next_at = now

    def _finish_leave(self, now: float) -> None:
        self._drop_assignment()
        self.epoch = 0
        self.state = MemberState.UNSUBSCRIBED
        self._next_at = None
        self._forget_sent_fields()
        if self._rejoin_after_leave and self._subscription:
            self._rejoin_after_leave = False
            self._start_join(now)

    def _forget_sent_fields(self) -> None:
        self._sent_subscription = None
        self._rack_sent = False

    def _drop_assignment(self) -> bool:
        if not self._assignment:
            return False
        self._assignment = frozenset()
        self._assignment_changed = True
        return True

    def _raise_if_fatal(self) -> None:
        if self.fatal is not None:
            raise self.fatal.error()
