"""Running an App in a test, and an embedded cluster made ready for one.

* ``run_app_until(app, handled=N)`` starts the app, waits until N records have a final
  outcome, stops it gracefully and returns the ``AckRecorder`` of the run.
* ``prepare(app)`` creates the topics of its routes (dead-letter topics included) and starts
  its groups at the earliest offset - a test produces first and consumes after.
* ``embedded_for(app)`` is an ``EmbeddedBroker`` on the running loop, prepared for ``app``
  and wired into it: what ``python examples/quickstart.py --embedded`` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING

from aioshare.protocol.errors import TopicAlreadyExistsError
from aioshare.runtime.app import App
from aioshare.runtime.events import EventKind
from aioshare.testing.broker import TEST_BROKER_CONFIG
from aioshare.testing.recorder import AckRecorder

if TYPE_CHECKING:
    from aioshare.broker.config import RawValue
    from aioshare.broker.embedded import EmbeddedBroker

__all__ = ["embedded_for", "prepare", "run_app_until"]


async def prepare(
    app: App,
    *,
    partitions: int = 1,
    earliest: bool = True,
    group_config: Mapping[str, str] | None = None,
    create_topics: bool = True,
) -> None:
    """Make the cluster at ``app.bootstrap_servers`` ready for ``app``.

    Creates every topic the routes read or dead-letter to (existing ones are kept), and sets
    each route's group to ``share.auto.offset.reset=earliest`` (Kafka's default, latest,
    would skip records produced before the group's first fetch) plus ``group_config``.
    """
    from aioshare.admin import ShareAdmin

    configs = dict(group_config or {})
    if earliest:
        configs.setdefault("share.auto.offset.reset", "earliest")
    async with ShareAdmin(app.bootstrap_servers) as admin:
        if create_topics:
            existing = {t.name for t in await admin.list_topics()}
            for topic in sorted(app.topics() - existing):
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topic(topic, partitions)
        if configs:
            for group in sorted({route.group_id for route in app.routes}):
                await admin.alter_group_config(group, configs)


async def run_app_until(
    app: App,
    handled: int,
    timeout: float = 30.0,  # noqa: ASYNC109 -- a test's bound
    *,
    kinds: Iterable[EventKind | str] | None = None,
    earliest: bool = True,
    stop_timeout: float | None = 5.0,
    recorder: AckRecorder | None = None,
) -> AckRecorder:
    """Run ``app`` until ``handled`` distinct records have a final outcome; return the recorder.

    Final outcomes are accepted, rejected and dead-lettered (pass ``kinds`` to count others,
    e.g. ``["released"]``).  With ``earliest`` (the default) the app's groups are first set
    to start at the earliest offset, so records produced before the run are consumed.  The
    app is stopped gracefully (``stop_timeout`` for running handlers) before this returns,
    also on timeout - which raises AssertionError listing what was handled - and a fatal
    error of the app is raised as such.
    """
    if earliest:
        await prepare(app, create_topics=False)
    recorder = recorder if recorder is not None else AckRecorder()
    recorder.attach(app)
    try:
        await app.start()
        try:
            await _wait(app, recorder, handled, timeout, kinds)
        finally:
            await app.stop(stop_timeout)
    finally:
        recorder.detach()
    if app.failure is not None:
        raise app.failure
    return recorder


async def _wait(
    app: App,
    recorder: AckRecorder,
    handled: int,
    timeout: float,  # noqa: ASYNC109
    kinds: Iterable[EventKind | str] | None,
) -> None:
    """Wait for the records, or for the app to stop first (a fatal error, a stop request)."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_task(recorder.wait_for(handled, timeout, kinds), name="aioshare-test-wait")
    stopped = loop.create_task(app.wait(), name="aioshare-test-stopped")
    try:
        await asyncio.wait({waiter, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, stopped):
            task.cancel()
        await asyncio.gather(waiter, stopped, return_exceptions=True)
    if waiter.done() and not waiter.cancelled():
        waiter.result()  # the AssertionError saying what was seen, when the time ran out
        return
    if app.failure is None:  # a failure is raised by the caller, after the stop
        raise AssertionError(f"the app stopped before {handled} records were handled: {recorder.outcomes()}")


@contextlib.asynccontextmanager
async def embedded_for(
    app: App,
    *,
    partitions: int = 1,
    config: Mapping[str, RawValue] | None = None,
    earliest: bool = True,
) -> AsyncIterator[EmbeddedBroker]:
    """An EmbeddedBroker on this loop, ``prepare``d for ``app``, its address set on the app."""
    from aioshare.broker.embedded import EmbeddedBroker

    async with EmbeddedBroker(config={**TEST_BROKER_CONFIG, **(config or {})}) as broker:
        app.bootstrap_servers = broker.bootstrap_servers
        await prepare(app, partitions=partitions, earliest=earliest)
        yield broker
