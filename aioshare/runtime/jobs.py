"""Jobs builders: how the records of one fetch become handler calls.

A *job* is one handler call.  Builders:

* ``per_message()`` (default) - one record per call; the handler takes a ``Message``.
* ``per_batch(max_messages_per_job)`` - up to that many records of one topic per call, in
  delivery order; the handler takes a ``list[Message]``.
* ``per_partition(max_messages_per_job)`` - records of one partition per call, in offset
  order; calls for the same partition never overlap within this process.
* ``per_key(max_messages_per_job)`` - records of one topic and key per call; calls for the
  same key never overlap within this process.  Records without a key are independent.
* any callable ``(list[Message]) -> Iterable[Sequence[Message]]`` - each sequence is one
  call (a batch handler); wrap it in ``custom(fn, max_messages_per_job=...)`` to size it.

Share groups do not order deliveries: a released record comes back after later ones, and
other members process the same partition concurrently.  ``per_partition``/``per_key``
only serialise the records *this process* holds for a partition or key.

Every job holds records of a single topic, so class handlers (one instance per topic)
always know which instance runs it.  ``records_per_job`` sizes how many records a route
fetches per free handler slot.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aioshare.protocol.errors import ConfigError
from aioshare.runtime.message import Message

__all__ = [
    "Job",
    "JobsBuilder",
    "custom",
    "make_jobs_builder",
    "per_batch",
    "per_key",
    "per_message",
    "per_partition",
]

DEFAULT_BATCH = 100


@dataclass(slots=True)
class Job:
    messages: list[Message[Any]]
    # Jobs with the same non-None key run one after another, never concurrently.
    key: Hashable | None = None

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("a job needs at least one message")

    @property
    def topic(self) -> str:
        """The topic of its records (a job holds records of one topic)."""
        return self.messages[0].topic


class JobsBuilder(Protocol):
    batch: bool  # the handler takes a list of messages (else one message)
    records_per_job: int  # most records one job holds: sizes fetches and max_in_flight

    def build(self, messages: list[Message[Any]]) -> list[Job]: ...


def _by_topic(messages: Iterable[Message[Any]]) -> dict[str, list[Message[Any]]]:
    groups: dict[str, list[Message[Any]]] = {}
    for m in messages:
        groups.setdefault(m.topic, []).append(m)
    return groups


def _chunks(messages: list[Message[Any]], size: int) -> Iterable[list[Message[Any]]]:
    for i in range(0, len(messages), size):
        yield messages[i : i + size]


def _check_size(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"max_messages_per_job must be an int >= 1, got {n!r}")
    return n


class _PerMessage:
    batch = False
    records_per_job = 1

    def build(self, messages: list[Message[Any]]) -> list[Job]:
        # Job([m]) without the dataclass __init__: this runs for every record of most routes.
        jobs: list[Job] = []
        new, append = Job.__new__, jobs.append
        for m in messages:
            job = new(Job)
            job.messages = [m]
            job.key = None
            append(job)
        return jobs

    def __repr__(self) -> str:
        return "per_message()"


class _PerBatch:
    batch = True

    def __init__(self, max_messages_per_job: int) -> None:
        self.records_per_job = _check_size(max_messages_per_job)

    def build(self, messages: list[Message[Any]]) -> list[Job]:
        return [
            Job(chunk)
            for group in _by_topic(messages).values()
            for chunk in _chunks(group, self.records_per_job)
        ]

    def __repr__(self) -> str:
        return f"per_batch({self.records_per_job})"


class _PerPartition:
    batch = True

    def __init__(self, max_messages_per_job: int) -> None:
        self.records_per_job = _check_size(max_messages_per_job)

    def build(self, messages: list[Message[Any]]) -> list[Job]:
        groups: dict[tuple[str, int], list[Message[Any]]] = {}
        for m in messages:
            groups.setdefault((m.topic, m.partition), []).append(m)
        jobs: list[Job] = []
        for key, group in groups.items():
            group.sort(key=lambda m: m.offset)
            jobs.extend(Job(chunk, key) for chunk in _chunks(group, self.records_per_job))
        return jobs

    def __repr__(self) -> str:
        return f"per_partition({self.records_per_job})"


class _PerKey:
    batch = True

    def __init__(self, max_messages_per_job: int) -> None:
        self.records_per_job = _check_size(max_messages_per_job)

    def build(self, messages: list[Message[Any]]) -> list[Job]:
        groups: dict[tuple[str, bytes], list[Message[Any]]] = {}
        jobs: list[Job] = []
        for m in messages:
            raw = m.raw_key
            if raw is None:
                jobs.append(Job([m]))  # no key, no ordering to keep
            else:
                groups.setdefault((m.topic, raw), []).append(m)
        for key, group in groups.items():
            group.sort(key=lambda m: (m.partition, m.offset))
            jobs.extend(Job(chunk, ("key", *key)) for chunk in _chunks(group, self.records_per_job))
        return jobs

    def __repr__(self) -> str:
        return f"per_key({self.records_per_job})"


CustomJobs = Callable[[list[Message[Any]]], Iterable[Sequence[Message[Any]]]]


class _Custom:
    """A user callable; its output is checked so that no record is lost or doubled."""

    batch = True

    def __init__(self, fn: CustomJobs, max_messages_per_job: int) -> None:
        self.fn = fn
        self.records_per_job = _check_size(max_messages_per_job)

    def build(self, messages: list[Message[Any]]) -> list[Job]:
        jobs: list[Job] = []
        seen: set[int] = set()
        for group in self.fn(list(messages)):
            chunk = list(group)
            if not chunk:
                continue
            for m in chunk:
                if id(m) in seen:
                    raise ValueError(f"jobs builder {self.fn!r} put {m!r} in two jobs")
                seen.add(id(m))
            # Split by topic: class handlers are per topic.
            jobs.extend(Job(part) for part in _by_topic(chunk).values())
        wanted = {id(m) for m in messages}
        if seen - wanted:
            raise ValueError(f"jobs builder {self.fn!r} returned messages it was not given")
        missing = [m for m in messages if id(m) not in seen]
        if missing:
            # Left out: still ours, so they get a job of their own rather than be forgotten.
            jobs.extend(Job([m]) for m in missing)
        return jobs

    def __repr__(self) -> str:
        return f"custom({self.fn!r})"


def per_message() -> JobsBuilder:
    return _PerMessage()


def per_batch(max_messages_per_job: int = DEFAULT_BATCH) -> JobsBuilder:
    return _PerBatch(max_messages_per_job)


def per_partition(max_messages_per_job: int = DEFAULT_BATCH) -> JobsBuilder:
    return _PerPartition(max_messages_per_job)


def per_key(max_messages_per_job: int = 10) -> JobsBuilder:
    return _PerKey(max_messages_per_job)


def custom(fn: CustomJobs, max_messages_per_job: int = 1) -> JobsBuilder:
    return _Custom(fn, max_messages_per_job)


# name -> (builder, its default max_messages_per_job)
_NAMED: dict[str, tuple[Callable[[int], JobsBuilder], int]] = {
    "per_batch": (per_batch, DEFAULT_BATCH),
    "per_partition": (per_partition, DEFAULT_BATCH),
    "per_key": (per_key, 10),
}


def make_jobs_builder(spec: object, max_messages_per_job: int | None = None) -> JobsBuilder:
    """A builder from a route's ``jobs=`` argument: a name, a builder, or a callable."""
    if spec is None or spec == "per_message":
        if max_messages_per_job not in (None, 1):
            raise ConfigError("per_message jobs hold one message; max_messages_per_job does not apply")
        return per_message()
    if isinstance(spec, str):
        named = _NAMED.get(spec)
        if named is None:
            raise ConfigError(
                f"unknown jobs builder {spec!r}: use per_message, per_batch, per_partition, per_key or a callable"
            )
        factory, default = named
        return factory(max_messages_per_job if max_messages_per_job is not None else default)
    if hasattr(spec, "build") and hasattr(spec, "records_per_job") and hasattr(spec, "batch"):
        if max_messages_per_job is not None:
            raise ConfigError("give max_messages_per_job to the builder itself, e.g. per_batch(50)")
        builder: JobsBuilder = spec
        return builder
    if callable(spec):
        return custom(spec, max_messages_per_job or 1)
    raise ConfigError(f"jobs must be a builder name, a jobs builder or a callable, not {spec!r}")
