"""Where admin requests go and how they are retried, all within one deadline per admin call.

Group APIs go to the group's coordinator. When it answers NOT_COORDINATOR,
COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS, or cannot be reached, the cached
coordinator is forgotten and the group is looked up and asked again after a backoff, as
Kafka's admin client does. Other requests go to one node (or any node) and are retried after
lost connections and the few answers that only mean "not now" (`_RETRIED_CODES`). Whatever is
still failing when the deadline passes reports its last error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final, TypeVar

from aioshare.client.backoff import Backoff
from aioshare.client.cluster import Cluster
from aioshare.client.connection import Connection
from aioshare.client.metadata import BrokerNode
from aioshare.protocol.errors import (
    BrokerError,
    ErrorCode,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    NotControllerError,
    error_for_code,
)

__all__ = ["COORDINATOR_ERRORS", "Deadline", "Router"]

T = TypeVar("T")

COORDINATOR_ERRORS: Final = frozenset(
    {
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    }
)
# Failures of the path to a node rather than answers from it: another node, or the same one
# later, may do better.
_UNREACHABLE: Final = (KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable)

# Answers that only say "not now" or "not here": asked again after a backoff.
_RETRIED_CODES: Final = frozenset(
    {
        ErrorCode.NOT_CONTROLLER,
        ErrorCode.THROTTLING_QUOTA_EXCEEDED,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,  # ListGroups while a broker loads its groups
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
    }
)

GroupCall = Callable[[Connection, list[str]], Awaitable[Mapping[str, T | BrokerError]]]
"""Sends one request for these groups to their coordinator; returns each group's outcome."""


class Deadline:
    """The time left for one admin call, and backoff pauses that never overrun it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._at = self._loop.time() + timeout

    def remaining(self) -> float:
        return max(0.0, self._at - self._loop.time())

    async def pause(self, backoff: Backoff) -> bool:
        """Sleeps the next backoff delay; False (without sleeping) when that would pass the deadline."""
        delay = backoff.next_delay()
        if delay >= self.remaining():
            return False
        await asyncio.sleep(delay)
        return True


def _about_group(outcome: T | BrokerError, group: str) -> T | BrokerError:
    """A group's BrokerError names the group (one error object may have been shared by several)."""
    if isinstance(outcome, BrokerError) and outcome.context is None:
        return type(outcome)(outcome.message, context=f"group {group!r}")
    return outcome


def _transient(error: KafkaError) -> bool:
    # Narrower than `retriable`: an UNKNOWN_TOPIC_OR_PARTITION from DeleteTopics is the answer,
    # not a reason to ask again (Kafka's admin retries these same few).
    if isinstance(error, BrokerError):
        return error.code in _RETRIED_CODES
    return isinstance(error, _UNREACHABLE)


def needs_new_coordinator(error: KafkaError) -> bool:
    if isinstance(error, BrokerError):
        return error.code in COORDINATOR_ERRORS
    return isinstance(error, _UNREACHABLE)


class Router:
    def __init__(self, cluster: Cluster, timeout: float, backoff: tuple[float, float]) -> None:
        self.cluster = cluster
        self.timeout = timeout
        self.backoff = backoff

    def deadline(self) -> Deadline:
        return Deadline(self.timeout)

    # ----------------------------------------------------------------------------- groups

    async def for_group(self, group_id: str, call: Callable[[Connection], Awaitable[T | BrokerError]]) -> T:
        """`call` on the group's coordinator; its BrokerError (after retries) is raised."""

        async def one(conn: Connection, ids: list[str]) -> dict[str, T | BrokerError]:
            return {ids[0]: await call(conn)}

        outcome = (await self.for_groups([group_id], one))[group_id]
        if isinstance(outcome, BrokerError):
            raise outcome
        return outcome

    async def for_groups(self, group_ids: Iterable[str], call: GroupCall[T]) -> dict[str, T | BrokerError]:
        """Each group's outcome, asking every coordinator once per round for all its groups.

        Raises KafkaTimeoutError only when a group never got any answer from a broker (every
        attempt failed to connect or timed out) before the deadline.
        """
        order = list(dict.fromkeys(group_ids))
        deadline = self.deadline()
        backoff = Backoff(*self.backoff)
        results: dict[str, T | BrokerError] = {}
        last: dict[str, KafkaError] = {}
        pending = order
        while pending:
            retry: list[str] = []
            by_node: dict[int, list[str]] = {}
            located = await self._locate(pending, deadline)
            for group in pending:
                where = located[group]
                if isinstance(where, BrokerNode):
                    by_node.setdefault(where.node_id, []).append(group)
                elif isinstance(where, BrokerError) and not where.retriable:
                    results[group] = where  # GROUP_AUTHORIZATION_FAILED, INVALID_GROUP_ID, ...
                else:
                    _note_failure(last, group, where)
                    retry.append(group)
            answers = await asyncio.gather(*(self._ask(n, ids, call, deadline) for n, ids in by_node.items()))
            for ids, answer in zip(by_node.values(), answers, strict=True):
                for group in ids:
                    outcome = _outcome_of(answer, group)
                    if isinstance(outcome, KafkaError) and needs_new_coordinator(outcome):
                        self.cluster.invalidate_coordinator(group)
                        _note_failure(last, group, outcome)
                        retry.append(group)
                    else:
                        results[group] = _final(outcome)
            pending = retry
            if pending and not await deadline.pause(backoff):
                for group in pending:
                    error = last[group]
                    if not isinstance(error, BrokerError):
                        raise KafkaTimeoutError(
                            f"group {group!r}: no coordinator answered within {deadline.timeout}s ({error})"
                        ) from error
                    results[group] = error
                break
        return {group: _about_group(results[group], group) for group in order}

    async def _locate(self, groups: list[str], deadline: Deadline) -> dict[str, BrokerNode | KafkaError]:
        found: dict[str, BrokerNode | KafkaError] = {}
        missing: list[str] = []
        for group in groups:
            cached = self.cluster.metadata.coordinator(group)
            if cached is not None:
                found[group] = cached
            else:
                missing.append(group)
        if not missing:
            return found
        try:
            async with asyncio.timeout(deadline.remaining()):
                found.update(await self.cluster.find_coordinators(missing))
        except TimeoutError:
            found.update(dict.fromkeys(missing, KafkaTimeoutError("FindCoordinator timed out")))
        except KafkaError as exc:
            found.update(dict.fromkeys(missing, exc))
        return found

    async def _ask(
        self, node_id: int, groups: list[str], call: GroupCall[T], deadline: Deadline
    ) -> Mapping[str, T | BrokerError] | KafkaError:
        try:
            async with asyncio.timeout(deadline.remaining()):
                conn = await self.cluster.connection(node_id)
                return await call(conn, groups)
        except TimeoutError:
            return KafkaTimeoutError(f"node {node_id} did not answer in time")
        except KafkaError as exc:
            # Raised for the whole request (UNSUPPORTED_VERSION, a lost connection, ...).
            return exc

    # ----------------------------------------------------------------------------- single nodes

    async def retrying(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """`attempt()` until it succeeds, fails other than transiently, or time runs out."""
        deadline = self.deadline()
        backoff = Backoff(*self.backoff)
        while True:
            try:
                async with asyncio.timeout(deadline.remaining()):
                    return await attempt()
            except TimeoutError:
                raise KafkaTimeoutError(f"{what}: no answer within {deadline.timeout}s") from None
            except KafkaError as exc:
                if not _transient(exc):
                    raise
                if isinstance(exc, NotControllerError):
                    await self.refresh_quietly()  # learn where the controller went first
                if not await deadline.pause(backoff):
                    raise

    async def on_any_node(
        self, call: Callable[[Connection], Awaitable[T]], what: str, *, controller: bool = False
    ) -> T:
        """`call` on a live node (the controller first if `controller`), with retries."""

        async def attempt() -> T:
            last: KafkaError | None = None
            for node_id in self._nodes(controller):
                try:
                    conn = await self.cluster.connection(node_id)
                    return await call(conn)
                except _UNREACHABLE as exc:
                    last = exc
            raise NoBrokersAvailable(f"{what}: no broker answered (last error: {last})") from last

        return await self.retrying(attempt, what)

    async def on_node(self, node_id: int, call: Callable[[Connection], Awaitable[T]], what: str) -> T:
        async def attempt() -> T:
            return await call(await self.cluster.connection(node_id))

        return await self.retrying(attempt, what)

    def _nodes(self, controller: bool) -> list[int]:
        metadata = self.cluster.metadata
        nodes = sorted(metadata.brokers)
        if controller and metadata.controller_id in metadata.brokers:
            # Kafka's admin sends topic creation and deletion to the controller it learnt from
            # Metadata (under KRaft any broker forwards them, so others are fine as fall-backs).
            nodes.remove(metadata.controller_id)
            nodes.insert(0, metadata.controller_id)
        return nodes or [-1]  # no metadata yet: the first bootstrap server

    async def refresh_quietly(self, topics: Iterable[str] | None = None) -> None:
        """Re-reads metadata; a failure only leaves it to the background refresher."""
        try:
            await self.cluster.refresh(topics)
        except KafkaError:
            self.cluster.request_refresh()  # the refresher keeps trying in the background


def _note_failure(last: dict[str, KafkaError], group: str, error: KafkaError) -> None:
    """Records a failed attempt; a broker's answer is not replaced by a later failure to reach
    one (a FindCoordinator cut short by the deadline), so that answer is what gets reported."""
    if isinstance(error, BrokerError) or not isinstance(last.get(group), BrokerError):
        last[group] = error


def _final(outcome: T | KafkaError) -> T | BrokerError:
    if isinstance(outcome, BrokerError):
        return outcome
    if isinstance(outcome, KafkaError):
        raise outcome  # a response that does not decode, ...: not something the group answered
    return outcome


def _outcome_of(answer: Mapping[str, T | BrokerError] | KafkaError, group: str) -> T | KafkaError:
    if isinstance(answer, KafkaError):
        return answer
    if group not in answer:
        return error_for_code(ErrorCode.UNKNOWN_SERVER_ERROR, f"the response left out group {group!r}")
    return answer[group]
