"""A route: which topics, which share group, which handler, and the policy around it.

``App.handler(...)`` builds one; ``Route.validate`` rejects bad combinations when the app
is configured, not when the first record fails.  ``HandlerBinding`` calls the handler: a
coroutine function, an object with ``handle``, or a class - instantiated once per topic,
so it can keep per-topic state, with the lifecycle hooks ``on_start``, ``on_shutdown`` and
``on_lock_expired``.
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from aioshare._validate import check_int, check_name, check_seconds
from aioshare.protocol.errors import ConfigError
from aioshare.runtime.jobs import Job, JobsBuilder, per_message
from aioshare.runtime.message import Message
from aioshare.runtime.retry import Backoff
from aioshare.share.deserialize import Deserializer

__all__ = ["AckMode", "Handler", "HandlerBinding", "OnError", "Route"]

log = logging.getLogger(__name__)

T = TypeVar("T")
AckMode = Literal["explicit", "implicit"]
OnError = Literal["retry", "release", "reject"]
Hook = Callable[..., Any]


class Handler(Generic[T]):
    """Base class for class handlers: the runtime creates one instance per topic.

        @app.handler("orders", "refunds", group_id="billing")
        class Billing(aioshare.Handler[Order]):
            async def on_start(self) -> None:
                self.seen = 0                      # per-topic state: self.topic says which
            async def handle(self, msg: aioshare.Message[Order]) -> None:
                self.seen += 1

    ``handle`` takes one message, or a list with a batch jobs builder.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic

    async def on_start(self) -> None:
        """Before the route's first record is fetched."""

    async def on_shutdown(self) -> None:
        """After the route's last handler call finished (or was cancelled)."""

    def on_lock_expired(self, msg: Message[T]) -> object:
        """A record this instance was given lost its acquisition lock (may return an awaitable)."""
        return None

    async def handle(self, msg: Any) -> None:
        raise NotImplementedError


@dataclass(eq=False)
class Route:
    name: str
    topics: tuple[str, ...]
    group_id: str
    handler: Any
    concurrency: int = 10
    consumers: int = 1
    jobs: JobsBuilder = field(default_factory=per_message)
    ack_mode: AckMode = "explicit"
    on_error: OnError = "retry"
    retry: Backoff | None = field(default_factory=Backoff)
    max_attempts: int | None = 5
    dead_letter_topic: str | None = None
    dead_letter_on_reject: bool = False
    value_type: Any = None
    value_deserializer: Deserializer | None = None
    key_deserializer: Deserializer | None = None
    priority: int = 0
    poll_interval: float = 1.0
    renew_fraction: float = 0.7
    prefetch: int | None = None  # jobs fetched ahead of a free slot (None: concurrency // 4, at least 1)
    shutdown_timeout: float | None = None
    on_start: Hook | None = None
    on_shutdown: Hook | None = None
    on_lock_expired: Hook | None = None
    consumer_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prefetch_jobs(self) -> int:
        """How many jobs may wait for a handler slot (fetched so that a slot that frees up
        starts its next job at once, instead of after a fetch round trip)."""
        if self.prefetch is not None:
            return self.prefetch
        return max(1, self.concurrency // 4)

    def validate(self, *, max_retry_delay: float) -> None:
        where = f"route {self.name!r}"
        if not self.topics or not all(isinstance(t, str) and t for t in self.topics):
            raise ConfigError(f"{where}: give at least one topic name")
        check_name(f"{where}: group_id", self.group_id)
        check_int(f"{where}: concurrency", self.concurrency, 1)
        check_int(f"{where}: consumers", self.consumers, 1)
        check_int(f"{where}: prefetch", self.prefetch, 0, optional=True)
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ConfigError(f"{where}: priority must be an int, got {self.priority!r}")
        if self.ack_mode not in ("explicit", "implicit"):
            raise ConfigError(f"{where}: ack_mode must be 'explicit' or 'implicit', not {self.ack_mode!r}")
        if self.on_error not in ("retry", "release", "reject"):
            raise ConfigError(
                f"{where}: on_error must be 'retry', 'release' or 'reject', not {self.on_error!r}"
            )
        if self.retry is not None and not isinstance(self.retry, Backoff):
            raise ConfigError(f"{where}: retry must be an aioshare.Backoff or None")
        if self.retry is not None and self.retry.max > max_retry_delay:
            raise ConfigError(
                f"{where}: retry max delay {self.retry.max}s exceeds max_retry_delay={max_retry_delay}s. "
                "A delayed record stays held (its lock renewed) for the whole delay, so delays are "
                "bounded; lower Backoff.max or raise App(max_retry_delay=...)"
            )
        check_int(f"{where}: max_attempts", self.max_attempts, 1, optional=True)
        if self.dead_letter_topic is not None:
            if not self.dead_letter_topic:
                raise ConfigError(f"{where}: dead_letter_topic must be a topic name")
            if self.dead_letter_topic in self.topics:
                raise ConfigError(f"{where}: the dead-letter topic cannot be one of the route's own topics")
        if self.dead_letter_on_reject and self.dead_letter_topic is None:
            raise ConfigError(f"{where}: dead_letter_on_reject needs a dead_letter_topic")
        if not (
            isinstance(self.renew_fraction, int | float)
            and not isinstance(self.renew_fraction, bool)
            and 0 < self.renew_fraction < 1
        ):
            raise ConfigError(
                f"{where}: renew_fraction must be a number strictly between 0 and 1, got {self.renew_fraction!r}"
            )
        check_seconds(f"{where}: poll_interval", self.poll_interval, positive=True)
        check_seconds(f"{where}: shutdown_timeout", self.shutdown_timeout, optional=True)
        if self.value_type is not None and self.value_deserializer is not None:
            raise ConfigError(f"{where}: give value_type or value_deserializer, not both")
        handler = self.handler
        if inspect.isfunction(handler) and not inspect.iscoroutinefunction(handler):
            raise ConfigError(f"{where}: handler {handler.__qualname__} must be an async def")
        if inspect.isclass(handler) or callable(getattr(handler, "handle", None)):
            handle = getattr(handler, "handle", None)
            if not callable(handle):
                raise ConfigError(f"{where}: handler class {handler.__qualname__} needs a handle() method")
            if inspect.isfunction(inspect.unwrap(handle)) or inspect.ismethod(handle):
                if not inspect.iscoroutinefunction(handle):
                    raise ConfigError(f"{where}: {handler!r}.handle must be an async def")


def _instantiate(cls: type[Any], topic: str) -> Any:
    if issubclass(cls, Handler):
        return cls(topic)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "topic" in params:
        return cls(topic=topic)
    instance = cls()
    if getattr(instance, "topic", None) is None:
        try:
            instance.topic = topic
        except AttributeError:
            pass  # slots without a topic: the class does not want to know
    return instance


_Coroutine = types.CoroutineType


async def _maybe_await(result: object) -> None:
    if inspect.isawaitable(result):
        await result


class HandlerBinding:
    """Calls a route's handler and its hooks."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self._instances: dict[str, Any] = {}
        self._is_class = inspect.isclass(route.handler)
        self._is_object = not self._is_class and callable(getattr(route.handler, "handle", None))

    @property
    def instances(self) -> Mapping[str, Any]:
        """Topic -> handler instance (class handlers, once started)."""
        return self._instances

    async def start(self) -> None:
        if self._is_class:
            for topic in self.route.topics:
                self._instances[topic] = _instantiate(self.route.handler, topic)
        for target in self._targets():
            hook = getattr(target, "on_start", None)
            if callable(hook):
                await _maybe_await(hook())
        if self.route.on_start is not None:
            await _maybe_await(self.route.on_start())

    async def shutdown(self) -> None:
        """Run every on_shutdown hook, even when one of them fails (each failure is logged)."""
        hooks: list[Callable[[], Any]] = []
        for target in self._targets():
            hook = getattr(target, "on_shutdown", None)
            if callable(hook):
                hooks.append(hook)
        if self.route.on_shutdown is not None:
            hooks.append(self.route.on_shutdown)
        for hook in hooks:
            try:
                await _maybe_await(hook())
            except Exception:
                log.exception("route %r: on_shutdown hook %r failed", self.route.name, hook)

    def _targets(self) -> list[Any]:
        if self._is_class:
            return list(self._instances.values())
        if self._is_object:
            return [self.route.handler]
        return []

    def call(self, job: Job, batch: bool) -> Awaitable[Any]:
        arg: Any = job.messages if batch else job.messages[0]
        result: Any
        if self._is_class:
            result = self._instances[job.topic].handle(arg)
        elif self._is_object:
            result = self.route.handler.handle(arg)
        else:
            result = self.route.handler(arg)
        if type(result) is _Coroutine:  # the usual case, without inspect's checks
            return result
        return self._awaitable(result)

    def _awaitable(self, result: object) -> Awaitable[Any]:
        if not inspect.isawaitable(result):
            raise TypeError(f"route {self.route.name!r}: the handler must be async (it returned {result!r})")
        return result

    def lock_lost_hook(self, msg: Message[Any]) -> Callable[[], object] | None:
        """The hook to call for ``msg`` losing its lock, if the route has one."""
        target: Any = None
        if self._is_class:
            target = self._instances.get(msg.topic)
        elif self._is_object:
            target = self.route.handler
        method = getattr(target, "on_lock_expired", None) if target is not None else None
        route_hook = self.route.on_lock_expired
        if not callable(method) and route_hook is None:
            return None

        def run() -> object:
            results = []
            if callable(method):
                results.append(method(msg))
            if route_hook is not None:
                results.append(route_hook(msg))
            awaitables = [r for r in results if inspect.isawaitable(r)]
            if not awaitables:
                return None
            return _gather(awaitables)

        return run


async def _gather(awaitables: list[Awaitable[Any]]) -> None:
    for awaitable in awaitables:
        await awaitable
