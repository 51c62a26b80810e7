"""The held-record state machine on its own: every transition, legal and illegal."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aioshare.protocol.errors import IllegalStateError
from aioshare.protocol.types import TopicPartition
from aioshare.runtime import Message
from aioshare.runtime.delays import DelayBudget
from aioshare.runtime.held import HeldRecords, IllegalTransitionError, State
from aioshare.share.consumer import LockExpiry

from .kit import message_at

QUEUED, RUNNING, DEAD_LETTERING, DELAYED, DONE = State


def record(offset: int = 0, topic: str = "t", partition: int = 0) -> Message[Any]:
    return message_at(topic, offset, partition)


def held_in(state: State, records: HeldRecords[Message[Any]]) -> Message[Any]:
    """A received record brought to ``state`` by legal transitions."""
    msg = record(offset=records.held_count + 100)
    records.receive([msg], 5.0)
    if state is RUNNING or state is DELAYED or state is DEAD_LETTERING:
        records.start(msg)
    if state is DELAYED:
        assert records.delay(msg)
    elif state is DEAD_LETTERING:
        records.dead_letter(msg)
    elif state is DONE:
        records.finish(msg)
    assert msg.state is state
    return msg


Transition = Callable[[HeldRecords[Message[Any]], Message[Any]], object]
TRANSITIONS: dict[str, tuple[Transition, State]] = {
    "start": (lambda r, m: r.start(m), RUNNING),
    "delay": (lambda r, m: r.delay(m), DELAYED),
    "dead_letter": (lambda r, m: r.dead_letter(m), DEAD_LETTERING),
    "finish": (lambda r, m: r.finish(m), DONE),
}
LEGAL = {
    (QUEUED, "start"),
    (QUEUED, "finish"),
    (RUNNING, "delay"),
    (RUNNING, "dead_letter"),
    (RUNNING, "finish"),
    (DELAYED, "finish"),
    (DEAD_LETTERING, "finish"),
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_every_transition_from_every_state(state: State, name: str) -> None:
    records: HeldRecords[Message[Any]] = HeldRecords(DelayBudget(10))
    msg = held_in(state, records)
    transition, target = TRANSITIONS[name]
    if (state, name) in LEGAL:
        transition(records, msg)
        assert msg.state is target
        assert (records.get(msg.share_message) is None) is (target is DONE)
    else:
        with pytest.raises(IllegalTransitionError) as caught:
            transition(records, msg)
        assert isinstance(caught.value, IllegalStateError)
        assert (caught.value.current, caught.value.wanted) == (state, target)
        assert msg.state is state  # nothing changed


def test_receive_indexes_a_new_record_once() -> None:
    records: HeldRecords[Message[Any]] = HeldRecords(DelayBudget(10))
    a, b = record(0), record(1)
    records.receive([a], 7.0)
    records.receive([b], 8.0)
    assert (a.state, a.received_at, b.received_at) == (QUEUED, 7.0, 8.0)
    assert records.held_count == 2 and records.get(a.share_message) is a
    with pytest.raises(IllegalTransitionError):
        records.receive([a], 9.0)  # already held
    with pytest.raises(IllegalTransitionError):
        records.receive([record(2), b], 9.0)
    records.finish(a)
    with pytest.raises(IllegalTransitionError):
        records.receive([a], 9.0)  # DONE is final: a redelivery is a new record


def test_finish_returns_the_state_left_and_updates_the_counts() -> None:
    budget = DelayBudget(10)
    records: HeldRecords[Message[Any]] = HeldRecords(budget)
    delayed = held_in(DELAYED, records)
    running = held_in(RUNNING, records)
    assert (records.held_count, records.delayed_count, budget.used) == (2, 1, 1)
    assert records.finish(delayed) is DELAYED
    assert (records.held_count, records.delayed_count, budget.used) == (1, 0, 0)  # budget given back
    assert records.finish(running) is RUNNING
    assert records.held_count == 0 and records.all() == []


def test_delay_takes_from_the_apps_budget_and_refuses_past_it() -> None:
    budget = DelayBudget(1)
    records: HeldRecords[Message[Any]] = HeldRecords(budget)
    first, second = held_in(RUNNING, records), held_in(RUNNING, records)
    assert records.delay(first) is True
    assert records.delay(second) is False  # no room: no transition
    assert second.state is RUNNING and records.delayed_count == 1


def test_ranges_and_partitions_are_read_from_the_held_records() -> None:
    records: HeldRecords[Message[Any]] = HeldRecords(DelayBudget(10))
    msgs = [record(o, "t", 0) for o in range(5)] + [record(3, "t", 1), record(3, "u", 0)]
    records.receive(msgs, 1.0)
    records.finish(msgs[2])
    lost = records.in_ranges([LockExpiry(TopicPartition("t", 0), 1, 3)])
    assert sorted(m.offset for m in lost) == [1, 3]
    assert records.count_by_partition() == {("t", 0): 4, ("t", 1): 1, ("u", 0): 1}


def test_only_the_state_machine_changes_a_records_state() -> None:
    # h11's rule, checked on the source: no other runtime module assigns a record's ``.state``
    # (Message's constructor sets the first one, QUEUED; a process report's ``state`` is text).
    runtime = Path(__file__).resolve().parents[2] / "aioshare" / "runtime"
    offenders = []
    for path in runtime.glob("*.py"):
        if path.name in ("held.py", "message.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            value: ast.expr | None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets, value = [node.target], node.value
            else:
                continue
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                continue
            offenders += [
                f"{path.name}:{node.lineno}"
                for t in targets
                if isinstance(t, ast.Attribute) and t.attr == "state"
            ]
    assert offenders == []
