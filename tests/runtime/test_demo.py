"""`aioshare demo`: it runs to the end by itself and accounts for every job, or says it cannot.

The runs are smaller than the real demo (a few hundred jobs, a 2 s lock) but take every path:
retries, dead-lettering, renewals, the frozen member whose jobs come back on lock expiry.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys

import pytest

from aioshare.cli.demo import DLQ_TOPIC, DemoConfig, DemoResult, Job, Ledger, _summary, plan_jobs, run, verify
from aioshare.runtime import Event, EventKind

needs_sigstop = pytest.mark.skipif(
    not hasattr(signal, "SIGSTOP"), reason="the fifth member is frozen with SIGSTOP"
)


@needs_sigstop
async def test_the_demo_accounts_for_every_job() -> None:
    config = DemoConfig(jobs=300, lock_ms=2000, crash_jobs=10, live=False, timeout=45)
    out = io.StringIO()
    result = await run(config, out=out)
    text = out.getvalue()
    assert result.ok, text
    jobs = plan_jobs(config)
    poison = {j.id for j in jobs if j.kind == "poison"}
    slow = {j.id for j in jobs if j.kind == "slow"}
    assert result.produced == 300
    assert result.unaccounted == []
    assert len(result.accepted) + len(result.dead_lettered) == 300
    assert result.accepted.isdisjoint(result.dead_lettered)
    # poison jobs, and only they, reached the dead-letter topic, once each, after max_attempts
    assert result.dead_lettered == poison
    assert result.dlq_copies == {o: 1 for o in poison}
    assert set(result.dlq_delivery_counts.values()) == {config.max_attempts}
    # the frozen member's jobs came back through lock expiry, not sooner
    assert len(result.frozen) == 10
    assert set(result.came_back) == set(result.frozen)
    assert min(result.came_back.values()) >= 2.0 * 0.9
    # slow jobs outlived the lock only thanks to renewals; no lock was lost by the runtime
    assert result.renewals >= len(slow)
    assert result.runtime_lock_expiries == 0
    assert result.retries > 0
    assert sum(result.attempts.values()) == 300
    assert max(result.attempts) == config.max_attempts
    assert result.broker_lag == 0
    assert (
        f"OK: all 300 jobs accounted for: {len(result.accepted)} accepted + {len(poison)} dead-lettered"
        in text
    )
    assert DLQ_TOPIC in text
    # The wording says what happened: the fifth member is frozen (SIGSTOP), not crashed.
    assert "crash" not in text.lower()
    assert "5 members (4 runtime consumers + 1 that freezes mid-job)" in text
    assert "took 10 jobs (offsets 0-9) and froze mid-job: SIGSTOP" in text
    assert "the frozen member's 10 jobs came back" in text
    assert "the frozen member's 10 jobs, back " in text
    assert f"bar length ~ log(1 + jobs), 40 # = {max(result.attempts.values())} jobs" in text
    assert not re.search(r"(?<![\d.])1 (jobs|copies|consumers|slow ones)\b", text), text


def test_the_command_exits_zero_and_prints_plain_lines_off_a_terminal() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aioshare.cli.main", "demo", "--jobs", "200", "--lock-ms", "2000"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b[" not in done.stdout  # no terminal control sequences into a pipe
    assert "OK: all 200 jobs accounted for" in done.stdout
    assert "Summary" in done.stdout
    # The demo tells each job's story itself: the runtime's per-record log lines stay out of it.
    assert "handler failed on" not in done.stdout + done.stderr
    assert "dead-lettered to 'demo.jobs.dlq'" not in done.stdout + done.stderr


def test_the_command_exits_non_zero_when_jobs_are_unaccounted_for() -> None:
    # Too little time to finish: the run must say so, not pretend.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aioshare.cli.main",
            "demo",
            "--jobs",
            "3000",
            "--crash-jobs",
            "0",
            "--timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED:" in done.stdout
    assert "jobs unaccounted for" in done.stdout
    assert "did not all settle within 1 s" in done.stdout


def _result(produced: int, accepted: set[int], dead: set[int]) -> DemoResult:
    result = DemoResult(produced=produced, accepted=accepted, dead_lettered=dead)
    result.dlq_copies = {o: 1 for o in dead}
    result.dlq_delivery_counts = {o: 4 for o in dead}
    result.broker_start_offset = produced
    result.broker_lag = 0
    return result


def test_verify_flags_every_kind_of_discrepancy() -> None:
    config = DemoConfig(jobs=4, crash_jobs=0)
    jobs = [Job(0, "ok", 1), Job(1, "ok", 1), Job(2, "poison", 1), Job(3, "ok", 1)]

    good = _result(4, {0, 1, 3}, {2})
    verify(good, jobs, config)
    assert good.ok and good.problems == []

    lost = _result(4, {0, 1}, {2})
    verify(lost, jobs, config)
    assert any("1 job unaccounted for: 3" in p for p in lost.problems)

    no_copy = _result(4, {0, 1, 3}, {2})
    no_copy.dlq_copies = {}
    verify(no_copy, jobs, config)
    assert any("without a copy" in p for p in no_copy.problems)

    wrong = _result(4, {0, 2, 3}, {1})
    verify(wrong, jobs, config)
    assert any("should have succeeded: 1" in p for p in wrong.problems)
    assert any("poison jobs accepted: 2" in p for p in wrong.problems)

    held = _result(4, {0, 1, 3}, {2})
    held.broker_lag = 1
    verify(held, jobs, config)
    assert any("the broker still holds jobs" in p for p in held.problems)


def test_duplicates_are_reported_not_failed() -> None:
    config = DemoConfig(jobs=2, crash_jobs=0)
    result = _result(2, {0, 1}, set())
    result.duplicates = {1: ["accepted@1", "accepted@2"]}
    verify(result, [Job(0, "ok", 1), Job(1, "ok", 1)], config)
    assert result.ok  # at-least-once: a second accept is a fact to show, not a lost job


def test_the_job_plan_is_deterministic_and_keeps_special_jobs_off_the_crashed_ones() -> None:
    config = DemoConfig(jobs=3000)
    first, second = plan_jobs(config), plan_jobs(config)
    assert first == second
    kinds = [j.kind for j in first]
    assert kinds.count("poison") == 15 and kinds.count("slow") == 8 and kinds.count("flaky") == 150
    assert all(j.kind == "ok" for j in first[: config.crash_jobs])
    lo, hi = config.slow_range
    assert all(lo <= j.work_ms <= hi and j.work_ms > config.lock_ms for j in first if j.kind == "slow")


async def test_the_summary_names_the_frozen_member_when_its_jobs_are_what_failed() -> None:
    config = DemoConfig(jobs=3, crash_jobs=2)
    jobs = [Job(0, "ok", 1), Job(1, "ok", 1), Job(2, "ok", 1)]
    result = _result(3, {2}, set())
    result.frozen = [0, 1]
    result.attempts = {1: 1}
    verify(result, jobs, config)
    out = io.StringIO()
    _summary(out, result, jobs, Ledger(asyncio.get_running_loop()), config, None)
    text = out.getvalue()
    assert "no frozen member" not in text
    assert "only 0 of the frozen member's 2 jobs came back" in text
    assert "FAILED:" in text and "2 jobs unaccounted for: 0-1" in text
    assert "jobs of the frozen member never redelivered: 0-1" in text
    assert "1 slow one ran" not in text  # no slow job here: "0 slow ones"
    assert "0 slow ones ran" in text
    assert "40 # = 1 job\n" in text


def test_counts_take_the_right_number() -> None:
    from aioshare.cli.demo import _n

    assert _n(1, "job") == "1 job"
    assert _n(2, "job") == "2 jobs"
    assert _n(0, "copy", "copies") == "0 copies"
    assert _n(1, "copy", "copies") == "1 copy"


async def test_a_job_comes_back_only_when_the_app_never_received_its_previous_delivery() -> None:
    ledger = Ledger(asyncio.get_running_loop())

    def event(kind: EventKind, offset: int, delivery: int) -> Event:
        return Event(
            kind, "jobs", 0.0, topic="demo.jobs", partition=0, offset=offset, delivery_count=delivery
        )

    # Released for a retry by one member, redelivered to another before the broker's answer
    # reached the first (its RELEASED event comes last): the app's own retry, not a comeback.
    ledger(event(EventKind.RECEIVED, 7, 1))
    ledger(event(EventKind.RECEIVED, 7, 2))
    ledger(event(EventKind.RELEASED, 7, 1))
    # Held by another member (the frozen one) on delivery 1: it came back.
    ledger(event(EventKind.RECEIVED, 3, 2))
    assert set(ledger.came_back) == {3}
