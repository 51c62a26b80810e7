"""The outcome policy on its own: a pure function from (decision, delivery count, route
configuration) to a settlement - no app, no consumer, no clock."""

from __future__ import annotations

import pytest

from aioshare.runtime.outcomes import ACCEPT, Action, Decision
from aioshare.runtime.policy import ACCEPTED, OutcomePolicy, Settlement, Verdict
from aioshare.runtime.retry import Backoff, Reject, Retry
from aioshare.share.deserialize import DeserializationError

BOOM = RuntimeError("boom")
UNDECODABLE = DeserializationError("value does not decode", field="value", raw=b"\xff")
DLQ = "jobs.dlq"


def never() -> float:
    raise AssertionError("no random draw expected")


def fail(error: BaseException = BOOM) -> Decision:
    return Decision(Action.FAIL, error=error, reason="handler")


def retry(delay: float | None = None) -> Decision:
    return Decision(Action.RETRY, delay=delay, error=Retry(delay), reason="retry")


def reject(dead_letter: bool | None = None, reason: str = "bad") -> Decision:
    return Decision(Action.REJECT, error=Reject(reason), reason=reason, dead_letter=dead_letter)


RELEASE = Decision(Action.RELEASE, reason="release")
NO_JITTER = Backoff(initial=1.0, max=8.0, multiplier=2.0, jitter=False)


@pytest.mark.parametrize(
    ("policy", "decision", "delivery_count", "expected"),
    [
        # return -> ACCEPT, whatever the attempt
        (OutcomePolicy(max_attempts=1), ACCEPT, 7, ACCEPTED),
        # Reject: REJECT with its reason; a copy first when asked for and there is a topic
        (OutcomePolicy(), reject(), 1, Settlement(Verdict.REJECT, "bad")),
        (OutcomePolicy(dead_letter_topic=DLQ), reject(), 1, Settlement(Verdict.REJECT, "bad")),
        (OutcomePolicy(dead_letter_topic=DLQ), reject(True), 1, Settlement(Verdict.DEAD_LETTER, "rejected")),
        (
            OutcomePolicy(dead_letter_topic=DLQ, dead_letter_on_reject=True),
            reject(),
            1,
            Settlement(Verdict.DEAD_LETTER, "rejected"),
        ),
        (
            OutcomePolicy(dead_letter_topic=DLQ, dead_letter_on_reject=True),
            reject(False),
            1,
            Settlement(Verdict.REJECT, "bad"),
        ),
        (OutcomePolicy(), reject(True), 1, Settlement(Verdict.REJECT, "bad")),  # no topic: no copy
        (OutcomePolicy(), Decision(Action.REJECT), 1, Settlement(Verdict.REJECT, "rejected")),
        # an exception: on_error
        (
            OutcomePolicy(on_error="release", max_attempts=5),
            fail(),
            1,
            Settlement(Verdict.RELEASE, "handler"),
        ),
        (OutcomePolicy(on_error="reject"), fail(), 1, Settlement(Verdict.REJECT, "error")),
        (
            OutcomePolicy(on_error="reject", dead_letter_topic=DLQ),
            fail(),
            1,
            Settlement(Verdict.DEAD_LETTER, "error"),
        ),
        (
            OutcomePolicy(on_error="retry", retry=NO_JITTER, max_attempts=5),
            fail(),
            3,
            Settlement(Verdict.RETRY, "retry", delay=4.0),  # 1 * 2 ** (3 - 1)
        ),
        (
            OutcomePolicy(on_error="retry", retry=None),
            fail(),
            1,
            Settlement(Verdict.RETRY, "retry", delay=0.0),
        ),
        # undecodable: never retried, whatever on_error says
        (
            OutcomePolicy(on_error="retry", max_attempts=9),
            fail(UNDECODABLE),
            1,
            Settlement(Verdict.REJECT, "undecodable"),
        ),
        (
            OutcomePolicy(on_error="release", dead_letter_topic=DLQ),
            fail(UNDECODABLE),
            1,
            Settlement(Verdict.DEAD_LETTER, "undecodable"),
        ),
        # the last permitted attempt: exhausted, whether it retries or releases
        (OutcomePolicy(max_attempts=3), retry(5.0), 3, Settlement(Verdict.REJECT, "exhausted")),
        (OutcomePolicy(max_attempts=3), RELEASE, 4, Settlement(Verdict.REJECT, "exhausted")),
        (
            OutcomePolicy(max_attempts=3, dead_letter_topic=DLQ),
            fail(),
            3,
            Settlement(Verdict.DEAD_LETTER, "exhausted"),
        ),
        (OutcomePolicy(max_attempts=3), retry(5.0), 2, Settlement(Verdict.RETRY, "retry", delay=5.0)),
        (OutcomePolicy(max_attempts=None), RELEASE, 99, Settlement(Verdict.RELEASE, "release")),
        # retry delays: the one asked for, else the backoff's, capped at max_retry_delay
        (
            OutcomePolicy(retry=NO_JITTER, max_attempts=None),
            retry(),
            10,
            Settlement(Verdict.RETRY, "retry", delay=8.0),
        ),
        (
            OutcomePolicy(max_retry_delay=60.0, max_attempts=None),
            retry(600.0),
            1,
            Settlement(Verdict.RETRY, "retry", delay=60.0, capped_from=600.0),
        ),
    ],
)
def test_the_policy_table(
    policy: OutcomePolicy, decision: Decision, delivery_count: int, expected: Settlement
) -> None:
    got = policy.settle(decision, delivery_count, never)
    # The error travels with the settlement (events, logs, dead-letter headers).
    assert got == Settlement(
        expected.verdict, expected.reason, decision.error, expected.delay, expected.capped_from
    )


def test_jitter_comes_from_the_given_draw_only() -> None:
    policy = OutcomePolicy(retry=Backoff(initial=2.0, max=60.0, jitter=True), max_attempts=None)
    assert policy.settle(fail(), 1, lambda: 0.0).delay == 1.0  # [d/2, d]
    assert policy.settle(fail(), 1, lambda: 1.0).delay == 2.0
    # the same inputs, the same answer: nothing else is read
    assert policy.settle(fail(), 4, lambda: 0.5) == policy.settle(fail(), 4, lambda: 0.5)


@pytest.mark.parametrize(
    ("policy", "error", "delivery_count", "final"),
    [
        (OutcomePolicy(max_attempts=3), BOOM, 2, False),
        (OutcomePolicy(max_attempts=3), BOOM, 3, True),
        (OutcomePolicy(max_attempts=None), BOOM, 50, False),
        (OutcomePolicy(on_error="reject"), BOOM, 1, True),
        (OutcomePolicy(max_attempts=9), UNDECODABLE, 1, True),
    ],
)
def test_final_attempt_is_when_a_failure_gives_the_record_up(
    policy: OutcomePolicy, error: BaseException, delivery_count: int, final: bool
) -> None:
    assert policy.gives_up_on_failure(error, delivery_count) is final
    gives_up = policy.settle(fail(error), delivery_count, lambda: 1.0).verdict in (
        Verdict.REJECT,
        Verdict.DEAD_LETTER,
    )
    assert gives_up is final


@pytest.mark.parametrize(
    ("policy", "decision", "delivery_count", "expected"),
    [
        # the group's delivery-count limit below max_attempts: its last delivery is the final one
        (
            OutcomePolicy(max_attempts=5, retry=NO_JITTER, dead_letter_topic=DLQ, delivery_count_limit=2),
            fail(),
            2,
            Settlement(Verdict.DEAD_LETTER, "exhausted"),
        ),
        (
            OutcomePolicy(max_attempts=5, delivery_count_limit=2),
            fail(),
            2,
            Settlement(Verdict.REJECT, "exhausted"),
        ),
        (
            OutcomePolicy(max_attempts=5, delivery_count_limit=2),
            RELEASE,
            2,
            Settlement(Verdict.REJECT, "exhausted"),
        ),
        (
            OutcomePolicy(max_attempts=5, delivery_count_limit=2),
            retry(1.0),
            2,
            Settlement(Verdict.REJECT, "exhausted"),
        ),
        # ... and the deliveries before it are retried as usual
        (
            OutcomePolicy(max_attempts=5, retry=NO_JITTER, dead_letter_topic=DLQ, delivery_count_limit=2),
            fail(),
            1,
            Settlement(Verdict.RETRY, "retry", delay=1.0),
        ),
        # max_attempts=None: the limit alone bounds the attempts
        (
            OutcomePolicy(max_attempts=None, delivery_count_limit=2),
            RELEASE,
            2,
            Settlement(Verdict.REJECT, "exhausted"),
        ),
        (
            OutcomePolicy(max_attempts=None, delivery_count_limit=2),
            RELEASE,
            1,
            Settlement(Verdict.RELEASE, "release"),
        ),
        # max_attempts below the limit: unchanged, max_attempts decides
        (
            OutcomePolicy(max_attempts=2, delivery_count_limit=5),
            retry(1.0),
            2,
            Settlement(Verdict.REJECT, "exhausted"),
        ),
        (
            OutcomePolicy(max_attempts=3, delivery_count_limit=5),
            retry(1.0),
            2,
            Settlement(Verdict.RETRY, "retry", delay=1.0),
        ),
        # neither the outcomes that do not retry nor ACCEPT change
        (OutcomePolicy(max_attempts=5, delivery_count_limit=2), ACCEPT, 2, ACCEPTED),
        (
            OutcomePolicy(max_attempts=5, delivery_count_limit=2),
            reject(),
            1,
            Settlement(Verdict.REJECT, "bad"),
        ),
    ],
)
def test_the_delivery_count_limit_bounds_the_attempts(
    policy: OutcomePolicy, decision: Decision, delivery_count: int, expected: Settlement
) -> None:
    got = policy.settle(decision, delivery_count, never)
    assert got == Settlement(
        expected.verdict, expected.reason, decision.error, expected.delay, expected.capped_from
    )


@pytest.mark.parametrize(
    ("max_attempts", "limit", "last"),
    [(5, 2, 2), (2, 5, 2), (5, 5, 5), (None, 3, 3), (4, None, 4), (None, None, None)],
)
def test_the_last_attempt_is_the_lower_bound(
    max_attempts: int | None, limit: int | None, last: int | None
) -> None:
    policy = OutcomePolicy(max_attempts=max_attempts, delivery_count_limit=limit)
    assert policy.last_attempt == last
    if last is not None:
        assert not policy.gives_up_on_failure(BOOM, last - 1)
        assert policy.gives_up_on_failure(BOOM, last)
    else:
        assert not policy.gives_up_on_failure(BOOM, 1000)
