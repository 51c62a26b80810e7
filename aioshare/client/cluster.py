"""The asyncio shell around ClusterMetadata: connections per node, metadata refresh, coordinators.

Owned tasks: the periodic refresher, one connect task per node while it connects, and one task
per distinct metadata refresh in flight (concurrent callers asking for the same refresh share
it). `close()` cancels and awaits all of them, then closes every connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as _ssl
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Final, TypeVar

from aioshare.client.backoff import Backoff
from aioshare.client.connection import Connection
from aioshare.client.metadata import BrokerNode, ClusterMetadata, TopicMetadata, TopicRef, parse_bootstrap
from aioshare.client.sasl import SaslConfig
from aioshare.protocol.errors import (
    BrokerError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    SslAuthenticationError,
    error_for_code,
    raise_for_code,
)
from aioshare.protocol.framing import DEFAULT_MAX_FRAME
from aioshare.protocol.messages import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    MetadataRequest,
    MetadataResponse,
)

__all__ = ["Cluster"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_METADATA_KEY: Final = MetadataRequest.API_KEY
_FIND_COORDINATOR_KEY: Final = FindCoordinatorRequest.API_KEY
_BATCHED_COORDINATORS: Final = 4  # FindCoordinator v4 (KIP-699) takes a list of keys
_TOPIC_IDS_IN_REQUEST: Final = 12  # Metadata v12 accepts topics by id
# Kafka's own network errors: worth trying the next broker rather than failing the refresh.
_NODE_ERRORS: Final = (KafkaConnectionError, KafkaTimeoutError)


class _Node:
    """One pool slot: the connection to a node and its reconnect backoff."""

    __slots__ = ("backoff", "conn", "connecting", "host", "port", "retry_at")

    def __init__(self, host: str, port: int, backoff: Backoff) -> None:
        self.host = host
        self.port = port
        self.conn: Connection | None = None
        self.connecting: asyncio.Task[Connection] | None = None
        self.backoff = backoff
        self.retry_at = 0.0


class Cluster:
    """Connections to a Kafka cluster and what it last said about itself.

    `async with Cluster("host:9092,host2:9092") as cluster:` bootstraps (one Metadata
    round trip) and starts the refresher, which re-reads metadata every `metadata_max_age`
    seconds and soon after `request_refresh()`.
    """

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str],
        *,
        client_id: str = "aioshare",
        ssl: _ssl.SSLContext | None = None,
        sasl: SaslConfig | None = None,
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        metadata_max_age: float = 300.0,
        retry_backoff: float = 0.1,
        retry_backoff_max: float = 1.0,
        reconnect_backoff: float = 0.05,
        reconnect_backoff_max: float = 1.0,
        allow_auto_topic_creation: bool = False,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self._bootstrap = parse_bootstrap(bootstrap_servers)
        self.client_id = client_id
        self._ssl = ssl
        self._sasl = sasl
        self.request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self.metadata_max_age = metadata_max_age
        self._retry_backoff = (retry_backoff, retry_backoff_max)
        self._reconnect_backoff = (reconnect_backoff, reconnect_backoff_max)
        self._allow_auto_topic_creation = allow_auto_topic_creation
        self._max_frame = max_frame
        self.metadata = ClusterMetadata()
        self._nodes: dict[int, _Node] = {}
        self._refreshes: dict[frozenset[TopicRef] | None, asyncio.Task[dict[TopicRef, BrokerError]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresh_wanted = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None
        self._closed = False
        # Broker address -> when it stopped answering: one WARNING when lost, one INFO when back.
        self._down: dict[tuple[str, int], float] = {}
        self._reached: set[tuple[str, int]] = set()  # answered at least once

    async def __aenter__(self) -> Cluster:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Reads metadata from a bootstrap server and starts the periodic refresher.

        With `timeout`, unreachable bootstrap servers are tried again (with backoff) until it
        passes, then KafkaTimeoutError names the addresses tried; without, the first round that
        reaches no broker raises NoBrokersAvailable. A TLS failure is raised at once.
        """
        if self._refresher is not None:
            return
        try:
            if timeout is None:
                await self.refresh()
            else:
                await self._bootstrap_within(timeout)
        except BaseException:
            await self.close()
            raise
        self._refresher = self._spawn(self._refresh_loop())

    def bootstrap_addresses(self) -> str:
        """The bootstrap servers as "host:port, host:port" (for error messages)."""
        return ", ".join(f"{host}:{port}" for host, port in self._bootstrap)

    async def _bootstrap_within(self, timeout: float) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        backoff = Backoff(*self._retry_backoff)
        last: BaseException | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await self.refresh()
                return
            except NoBrokersAvailable as exc:
                last = exc.__cause__ or exc
            except TimeoutError:
                break
            delay = min(backoff.next_delay(), deadline - loop.time())
            if delay > 0:
                await asyncio.sleep(delay)
        raise KafkaTimeoutError(
            f"no broker answered within {timeout:g}s at {self.bootstrap_addresses()}"
            + (f" (last error: {last})" if last is not None else "")
        ) from last

    # ----------------------------------------------------------------------------- lookups

    def topic(self, topic: TopicRef) -> TopicMetadata | None:
        return self.metadata.topic(topic)

    def leader_for(self, topic: TopicRef, partition: int) -> BrokerNode | None:
        return self.metadata.leader_for(topic, partition)

    # ----------------------------------------------------------------------------- connections

    async def connection(self, node_id: int) -> Connection:
        """The open connection to `node_id`, connecting first if needed.

        After a failed attempt the next one waits out an exponential backoff with jitter;
        concurrent callers share one attempt. Negative ids are the bootstrap servers.
        """
        if self._closed:
            raise IllegalStateError("cluster is closed")
        address = self._address(node_id)
        if address is None:
            raise KafkaConnectionError(f"unknown node {node_id}")
        node = self._nodes.get(node_id)
        if node is None or (node.host, node.port) != address:
            stale = node
            # Replaced before any await, so concurrent callers all see the new slot.
            node = self._nodes[node_id] = _Node(*address, Backoff(*self._reconnect_backoff))
            if stale is not None:
                # The broker moved; the old connection must not serve the new address.
                if stale.connecting is not None:
                    stale.connecting.cancel()
                if stale.conn is not None:
                    await stale.conn.close()
        if node.conn is not None and not node.conn.closed:
            return node.conn
        if node.connecting is None:
            node.connecting = self._spawn(self._connect(node))
        return await asyncio.shield(node.connecting)

    async def _connect(self, node: _Node) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            delay = node.retry_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                conn = await Connection.open(
                    node.host,
                    node.port,
                    client_id=self.client_id,
                    ssl=self._ssl,
                    sasl=self._sasl,
                    request_timeout=self.request_timeout,
                    connect_timeout=self._connect_timeout,
                    max_frame=self._max_frame,
                )
            except KafkaError as exc:
                node.retry_at = loop.time() + node.backoff.next_delay()
                if isinstance(exc, KafkaConnectionError) and _tls_refusal(exc.__cause__):
                    # Not a connection that may work next time or on another broker: the
                    # application must hear of it (Java's SslAuthenticationException).
                    raise SslAuthenticationError(
                        f"TLS with {node.host}:{node.port} failed: {exc.__cause__}"
                    ) from exc.__cause__
                if isinstance(exc, _NODE_ERRORS):
                    self._note_down(node, exc, loop.time())
                raise
            self._note_up(node, loop.time())
            node.backoff.reset()
            node.retry_at = 0.0
            node.conn = conn
            return conn
        finally:
            node.connecting = None

    def _note_down(self, node: _Node, exc: KafkaError, now: float) -> None:
        address = (node.host, node.port)
        if address in self._down:
            log.debug("broker %s:%s still unreachable: %s", node.host, node.port, exc)
            return
        self._down[address] = now
        if address in self._reached:
            log.warning("broker %s:%s is unreachable: %s", node.host, node.port, exc)
        else:
            # Never reached yet: a start that fails says so itself, in one error naming every
            # address it tried, so this is not a second line for the same problem.
            log.debug("broker %s:%s not reachable yet: %s", node.host, node.port, exc)

    def _note_up(self, node: _Node, now: float) -> None:
        address = (node.host, node.port)
        since = self._down.pop(address, None)
        if since is not None and address in self._reached:
            log.info("broker %s:%s is reachable again after %.1fs", node.host, node.port, now - since)
        self._reached.add(address)

    def _address(self, node_id: int) -> tuple[str, int] | None:
        if node_id < 0:
            index = -node_id - 1
            return self._bootstrap[index] if index < len(self._bootstrap) else None
        node = self.metadata.node(node_id)
        return (node.host, node.port) if node is not None else None

    def _candidates(self) -> list[int]:
        """Nodes to ask for cluster-wide things, best first.

        Open connections (least busy first), then known brokers not backing off, then the
        bootstrap servers, then whatever is backing off.
        """
        now = asyncio.get_running_loop().time()
        open_nodes = sorted(
            (
                (n.conn.in_flight, node_id)
                for node_id, n in self._nodes.items()
                if n.conn is not None and not n.conn.closed and self._address(node_id) == (n.host, n.port)
            ),
        )
        ranked = [node_id for _, node_id in open_nodes]
        brokers = [b for b in self.metadata.brokers if b not in ranked]
        random.shuffle(brokers)
        bootstrap = [-i - 1 for i in range(len(self._bootstrap)) if -i - 1 not in ranked]
        later: list[int] = []
        for node_id in [*brokers, *bootstrap]:
            slot = self._nodes.get(node_id)
            (later if slot is not None and slot.retry_at > now else ranked).append(node_id)
        return ranked + later

    async def _on_any_node(self, call: Callable[[Connection], Awaitable[T]], what: str) -> T:
        """Runs `call(conn)` on the first candidate node that answers."""
        last: KafkaError | None = None
        candidates = self._candidates()
        for node_id in candidates:
            try:
                conn = await self.connection(node_id)
                return await call(conn)
            except _NODE_ERRORS as exc:
                log.debug("%s via node %s failed: %s", what, node_id, exc)
                last = exc
        tried = ", ".join(sorted({f"{a[0]}:{a[1]}" for a in map(self._address, candidates) if a}))
        raise NoBrokersAvailable(f"{what}: no broker answered at {tried} (last error: {last})") from last

    async def finalized_features(self) -> dict[str, int]:
        """The cluster's finalized feature levels (``share.version``, ``metadata.version``, ...)
        as a broker's ApiVersions response lists them."""

        async def call(conn: Connection) -> dict[str, int]:
            return dict(conn.finalized_features)

        return await self._on_any_node(call, "ApiVersions")

    # ----------------------------------------------------------------------------- metadata

    async def refresh(self, topics: Iterable[TopicRef] | None = None) -> dict[TopicRef, BrokerError]:
        """Reads metadata for `topics` (names or ids), or for every topic when None.

        Returns per-topic errors (UNKNOWN_TOPIC_OR_PARTITION, ...). Concurrent calls for the
        same topics share one request.
        """
        key = None if topics is None else frozenset(topics)
        task = self._refreshes.get(key)
        if task is None:
            task = self._refreshes[key] = self._spawn(self._refresh(key))
            task.add_done_callback(lambda _: self._refreshes.pop(key, None))
        return await asyncio.shield(task)

    async def _refresh(self, topics: frozenset[TopicRef] | None) -> dict[TopicRef, BrokerError]:
        async def call(conn: Connection) -> dict[TopicRef, BrokerError]:
            version = conn.version_for(_METADATA_KEY)
            request, full = self._metadata_request(topics, version)
            response = await conn.send(request, version, response_type=MetadataResponse)
            raise_for_code(response.error_code)  # v13: REBOOTSTRAP_REQUIRED and friends
            return self.metadata.update(response, asyncio.get_running_loop().time(), full=full)

        return await self._on_any_node(call, "metadata refresh")

    def _metadata_request(
        self, topics: frozenset[TopicRef] | None, version: int
    ) -> tuple[MetadataRequest, bool]:
        by_id = topics is not None and any(isinstance(t, uuid.UUID) for t in topics)
        if topics is None or (by_id and version < _TOPIC_IDS_IN_REQUEST):
            # Before v12 a topic cannot be asked for by id; reading everything finds it too.
            # v0 spells "all topics" as an empty list, later versions as null.
            request = MetadataRequest(topics=[] if version == 0 else None)
            full = True
        else:
            request = MetadataRequest(
                topics=[
                    MetadataRequest.MetadataRequestTopic(topic_id=t, name=None)
                    if isinstance(t, uuid.UUID)
                    else MetadataRequest.MetadataRequestTopic(name=t)
                    for t in sorted(topics, key=str)
                ]
            )
            full = False
        if version >= 4:
            request.allow_auto_topic_creation = self._allow_auto_topic_creation
        return request, full

    def request_refresh(self) -> None:
        """Marks metadata stale and wakes the refresher; returns at once.

        For NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION and other
        errors whose `invalid_metadata` is set. Use `await refresh()` to wait for new data.
        """
        self.metadata.invalidate()
        self._refresh_wanted.set()

    async def _refresh_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(*self._retry_backoff)
        while True:
            wait = self.metadata.refresh_in(loop.time(), self.metadata_max_age)
            if wait > 0:
                try:
                    async with asyncio.timeout(wait):
                        await self._refresh_wanted.wait()
                except TimeoutError:
                    pass
            self._refresh_wanted.clear()
            try:
                await self.refresh()
            except KafkaError as exc:
                # No broker reachable: each lost broker was already logged once (WARNING).
                level = logging.DEBUG if isinstance(exc, NoBrokersAvailable) else logging.WARNING
                log.log(level, "metadata refresh failed: %s", exc)
                self.metadata.invalidate()
                await asyncio.sleep(backoff.next_delay())
            else:
                backoff.reset()
                # Bursts of errors each ask for a refresh; one per backoff interval is enough.
                await asyncio.sleep(self._retry_backoff[0])

    # ----------------------------------------------------------------------------- coordinators

    async def find_coordinator(
        self,
        key: str,
        key_type: int = 0,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 -- a deadline across retries, not one call
    ) -> BrokerNode:
        """The coordinator for a group (key_type 0; share groups too) or other key type.

        Answered from cache when known. Retriable errors (COORDINATOR_NOT_AVAILABLE while the
        offsets topic is created, ...) and unreachable brokers are retried with backoff until
        `timeout` (default `request_timeout`).
        """
        cached = self.metadata.coordinator(key, key_type)
        if cached is not None:
            return cached
        backoff = Backoff(*self._retry_backoff)
        limit = self.request_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while True:
                    found: BrokerNode | KafkaError
                    try:
                        found = (await self.find_coordinators([key], key_type))[key]
                    except NoBrokersAvailable as exc:
                        found = exc
                    if isinstance(found, BrokerNode):
                        return found
                    if not found.retriable:
                        raise found
                    log.debug("find_coordinator(%r): %s; retrying", key, found)
                    await asyncio.sleep(backoff.next_delay())
        except TimeoutError:
            raise KafkaTimeoutError(f"no coordinator found for {key!r} within {limit}s") from None

    async def find_coordinators(
        self, keys: Iterable[str], key_type: int = 0
    ) -> dict[str, BrokerNode | BrokerError]:
        """One lookup for several keys (one request on v4+, one per key before); no retries.

        Successes are cached; per-key errors are returned, not raised.
        """
        wanted = list(dict.fromkeys(keys))

        async def call(conn: Connection) -> dict[str, BrokerNode | BrokerError]:
            version = conn.version_for(_FIND_COORDINATOR_KEY)
            if version >= _BATCHED_COORDINATORS:
                request = FindCoordinatorRequest(key_type=key_type, coordinator_keys=wanted)
                response = await conn.send(request, version, response_type=FindCoordinatorResponse)
                return {
                    c.key: _coordinator(
                        c.key, key_type, c.node_id, c.host, c.port, c.error_code, c.error_message
                    )
                    for c in response.coordinators
                }
            answers = await asyncio.gather(
                *(
                    conn.send(
                        FindCoordinatorRequest(key=k, key_type=key_type),
                        version,
                        response_type=FindCoordinatorResponse,
                    )
                    for k in wanted
                )
            )
            return {
                k: _coordinator(k, key_type, r.node_id, r.host, r.port, r.error_code, r.error_message)
                for k, r in zip(wanted, answers, strict=True)
            }

        results = await self._on_any_node(call, "FindCoordinator")
        for k in wanted:
            found = results.get(k)
            if found is None:
                results[k] = error_for_code(-1, f"FindCoordinator response left out {k!r}")
            elif isinstance(found, BrokerNode):
                self.metadata.set_coordinator(k, key_type, found)
        return {k: results[k] for k in wanted}

    def invalidate_coordinator(self, key: str, key_type: int = 0) -> None:
        """Forgets a cached coordinator (after NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE)."""
        self.metadata.invalidate_coordinator(key, key_type)

    # ----------------------------------------------------------------------------- lifecycle

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        if self._closed:
            coro.close()
            raise IllegalStateError("cluster is closed")
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        # Waiters may all have been cancelled; the outcome is still consumed here.
        if not task.cancelled():
            task.exception()

    async def close(self) -> None:
        """Cancels every owned task, waits for them, and closes every connection."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await _wait_all(tasks)
        self._refresher = None
        nodes, self._nodes = self._nodes, {}
        await _wait_all([n.conn.close() for n in nodes.values() if n.conn is not None])


async def _wait_all(aws: Iterable[Awaitable[Any]]) -> None:
    pending = list(aws)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def _tls_refusal(exc: BaseException | None) -> bool:
    """An SSL error that retrying cannot fix (a certificate, an alert, not TLS at all), as opposed
    to the connection just ending (EOF, reset) in the middle of the handshake."""
    return isinstance(exc, _ssl.SSLError) and not isinstance(
        exc, _ssl.SSLEOFError | _ssl.SSLZeroReturnError | _ssl.SSLSyscallError
    )


def _coordinator(
    key: str, key_type: int, node_id: int, host: str, port: int, code: int, message: str | None
) -> BrokerNode | BrokerError:
    if code:
        # Kafka leaves ErrorMessage empty here (GROUP_AUTHORIZATION_FAILED included): say which
        # group, as Java's GroupAuthorizationException does.
        error = error_for_code(code, message)
        return type(error)(f"{error.message} ({'group' if key_type == 0 else 'key'} {key!r})")
    return BrokerNode(node_id, host, port)
