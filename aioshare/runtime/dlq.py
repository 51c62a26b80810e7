"""Dead-letter copies: produce the record elsewhere, confirmed, before it is REJECTed.

The copy keeps the original key, value and headers and adds headers saying where it came
from and why (all values UTF-8 text):

| header | value |
|---|---|
| ``aioshare.dlq.original.topic`` | source topic |
| ``aioshare.dlq.original.partition`` | source partition |
| ``aioshare.dlq.original.offset`` | source offset |
| ``aioshare.dlq.original.timestamp`` | source record timestamp (ms) |
| ``aioshare.dlq.delivery.count`` | the broker's delivery count when it was given up |
| ``aioshare.dlq.group.id`` | share group that consumed it |
| ``aioshare.dlq.route`` | runtime route name |
| ``aioshare.dlq.reason`` | ``exhausted``, ``rejected``, ``undecodable`` or ``error`` |
| ``aioshare.dlq.exception.class`` | ``module.QualifiedName`` of the last exception (if any) |
| ``aioshare.dlq.exception.message`` | its message (truncated to 4 KiB) |

The runtime awaits the producer's acknowledgement (``acks=all``) before recording REJECT;
if the produce fails or times out, the record is RELEASEd instead, so a dead-letter outage
never loses a record (the broker's own delivery-count limit still applies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from aioshare.protocol.errors import NoBrokersAvailable
from aioshare.runtime.message import Message

__all__ = ["DeadLetterSink", "KafkaDeadLetterSink", "dead_letter_headers", "exception_name"]

HEADER_PREFIX = "aioshare.dlq."
_MAX_MESSAGE = 4096


class DeadLetterSink(Protocol):
    async def start(self) -> None: ...

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
        timeout: float,  # noqa: ASYNC109 -- a produce has its own deadline, separate from the caller's
    ) -> None:
        """Return only once the broker confirmed the record; raise otherwise."""
        ...

    async def close(self) -> None: ...


class _DropConnectErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable connect to")


class KafkaDeadLetterSink:
    """An ``AIOKafkaProducer`` with ``acks="all"``, started with the app."""

    def __init__(self, bootstrap_servers: str | Iterable[str], **producer_options: Any) -> None:
        options = dict(producer_options)
        if options.setdefault("acks", "all") != "all":
            # A dead-letter copy that one broker could lose would make REJECT lose the record.
            raise ValueError("the dead-letter producer must use acks='all'")
        servers = bootstrap_servers if isinstance(bootstrap_servers, str) else list(bootstrap_servers)
        self._options = {"bootstrap_servers": servers, **options}
        self._producer: Any = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError as AIOKafkaError

        producer = AIOKafkaProducer(**self._options)
        quiet = _DropConnectErrors()
        aiokafka_log = logging.getLogger("aiokafka")
        aiokafka_log.addFilter(quiet)  # the error raised below says it once
        try:
            await producer.start()
        except BaseException as exc:
            # A producer that failed to start still holds its client: stop it on every path, or
            # it is reported as an "Unclosed AIOKafkaProducer" when collected.
            with contextlib.suppress(Exception):
                await producer.stop()
            if isinstance(exc, AIOKafkaError | OSError):
                servers = self._options["bootstrap_servers"]
                tried = servers if isinstance(servers, str) else ",".join(servers)
                raise NoBrokersAvailable(
                    f"no broker answered at {tried} (the dead-letter producer: {type(exc).__name__})"
                ) from exc
            raise
        finally:
            aiokafka_log.removeFilter(quiet)
        self._producer = producer

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        if self._producer is None:
            raise RuntimeError("the dead-letter producer is not started")
        async with asyncio.timeout(timeout):
            await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


def exception_name(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_headers(
    msg: Message[Any],
    *,
    group_id: str,
    reason: str,
    error: BaseException | None,
    extra: Mapping[str, str] | None = None,
) -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = list(msg.headers)
    fields = {
        "original.topic": msg.topic,
        "original.partition": str(msg.partition),
        "original.offset": str(msg.offset),
        "original.timestamp": str(msg.timestamp),
        "delivery.count": str(msg.delivery_count),
        "group.id": group_id,
        "route": msg.route,
        "reason": reason,
    }
    if error is not None:
        fields["exception.class"] = exception_name(error)
        fields["exception.message"] = str(error)[:_MAX_MESSAGE]
    if extra:
        fields.update(extra)
    headers.extend((HEADER_PREFIX + name, value.encode()) for name, value in fields.items())
    return headers
