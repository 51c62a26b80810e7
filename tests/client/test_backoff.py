import random

import pytest

from aioshare.client.backoff import Backoff


def test_without_jitter_doubles_up_to_the_cap() -> None:
    b = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.0)
    assert [round(b.next_delay(), 6) for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert b.attempts == 7


def test_reset_restarts_the_schedule() -> None:
    b = Backoff(initial=0.5, maximum=10.0, jitter=0.0)
    b.next_delay()
    b.next_delay()
    b.reset()
    assert b.next_delay() == 0.5


def test_jitter_is_deterministic_with_a_seeded_rng() -> None:
    a = Backoff(jitter=0.2, rng=random.Random(42))
    b = Backoff(jitter=0.2, rng=random.Random(42))
    assert [a.next_delay() for _ in range(10)] == [b.next_delay() for _ in range(10)]


def test_jitter_stays_within_its_fraction_and_the_cap() -> None:
    b = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.2, rng=random.Random(7))
    for attempt in range(12):
        term = 0.1 * 2.0**attempt
        d = b.delay(attempt)
        assert d <= 1.0
        assert d >= min(term * 0.8, 1.0) - 1e-12
        assert d <= term * 1.2 + 1e-12


def test_jitter_actually_varies() -> None:
    b = Backoff(jitter=0.2, rng=random.Random(3))
    assert len({b.delay(0) for _ in range(20)}) > 1


def test_huge_attempt_numbers_do_not_overflow() -> None:
    b = Backoff(initial=0.1, maximum=30.0, jitter=0.0)
    assert b.delay(10_000) == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1.0}, {"multiplier": 0.5}, {"jitter": 1.0}, {"jitter": -0.1}],
)
def test_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]
