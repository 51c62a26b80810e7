"""The dead-letter explorer: browse a dead-letter topic, replay records to their original topic.

A dead-letter copy carries the original key, value and headers plus aioshare's own headers,
``aioshare.dlq.*`` (see `aioshare.runtime.dlq`).  Browsing reads the topic with aiokafka's
consumer - no group, partitions assigned, paged by offset - so it never disturbs anything.
A replay produces the record (key, value and the user's headers, not the ``aioshare.dlq.*``
ones) to the topic named in ``aioshare.dlq.original.topic`` with ``acks=all``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import msgspec

from aioshare.protocol.errors import KafkaError, NoBrokersAvailable, UnknownTopicOrPartitionError

__all__ = ["DeadLetterExplorer", "DeadLetterPage", "DeadLetterRecord", "NotADeadLetterError"]

HEADER_PREFIX = "aioshare.dlq."  # aioshare.runtime.dlq.HEADER_PREFIX (not imported: no runtime here)
ORIGINAL_TOPIC = HEADER_PREFIX + "original.topic"
MAX_PAGE = 500
MAX_REPLAY = 100_000  # records one "replay all" produces at most
_MAX_TEXT = 4096
_READ_TIMEOUT = 15.0


class NotADeadLetterError(KafkaError):
    """A record without ``aioshare.dlq.original.topic``: there is nowhere to replay it to."""


class Payload(msgspec.Struct, kw_only=True):
    """Bytes as text: UTF-8 when they are, else base64; cut at 4 KiB for display."""

    text: str | None
    encoding: str  # "utf-8", "base64" or "null"
    size: int
    truncated: bool = False


class DeadLetterRecord(msgspec.Struct, kw_only=True):
    partition: int
    offset: int
    timestamp: int
    key: Payload
    value: Payload
    headers: list[tuple[str, str | None]]
    """The user's headers (aioshare.dlq.* left out), values as text (invalid UTF-8 replaced)."""
    dlq: dict[str, str]
    """aioshare's dead-letter headers without the prefix: original.topic, reason, ..."""


class PartitionRange(msgspec.Struct, kw_only=True):
    partition: int
    log_start: int
    log_end: int


class DeadLetterPage(msgspec.Struct, kw_only=True):
    topic: str
    partitions: list[PartitionRange]
    records: list[DeadLetterRecord]
    next_offset: dict[int, int]
    """Per partition read, where the next page starts (== log_end when there is no more)."""


class ReplayResult(msgspec.Struct, kw_only=True):
    replayed: int
    targets: dict[str, int]
    """Records produced per original topic."""
    skipped: list[str]
    """Records that could not be replayed (no original topic), as "partition@offset"."""


def payload(data: bytes | None) -> Payload:
    if data is None:
        return Payload(text=None, encoding="null", size=0)
    cut = data[:_MAX_TEXT]
    try:
        text, encoding = cut.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if len(data) > _MAX_TEXT and exc.start >= _MAX_TEXT - 3:  # cut inside a character
            text, encoding = cut[: exc.start].decode("utf-8"), "utf-8"
        else:
            text, encoding = base64.b64encode(cut).decode("ascii"), "base64"
    return Payload(text=text, encoding=encoding, size=len(data), truncated=len(data) > _MAX_TEXT)


def split_headers(
    headers: Iterable[tuple[str, bytes | None]],
) -> tuple[list[tuple[str, bytes | None]], dict[str, str]]:
    """(the user's headers, aioshare's dead-letter fields without the prefix)."""
    user: list[tuple[str, bytes | None]] = []
    dlq: dict[str, str] = {}
    for name, value in headers:
        if name.startswith(HEADER_PREFIX):
            dlq[name[len(HEADER_PREFIX) :]] = (value or b"").decode("utf-8", "replace")
        else:
            user.append((name, value))
    return user, dlq


def _record(raw: Any) -> DeadLetterRecord:
    user, dlq = split_headers(raw.headers or ())
    return DeadLetterRecord(
        partition=raw.partition,
        offset=raw.offset,
        timestamp=raw.timestamp,
        key=payload(raw.key),
        value=payload(raw.value),
        headers=[(n, None if v is None else v.decode("utf-8", "replace")) for n, v in user],
        dlq=dlq,
    )


class DeadLetterExplorer:
    """Reads and replays dead-letter topics on `bootstrap_servers` (one client per call)."""

    def __init__(self, bootstrap_servers: str, *, request_timeout: float = 30.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.request_timeout = request_timeout

    @contextlib.asynccontextmanager
    async def _consumer(self) -> AsyncIterator[Any]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError as AIOKafkaError

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=int(self.request_timeout * 1000),
        )
        try:
            await consumer.start()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            if isinstance(exc, AIOKafkaError | OSError):
                raise NoBrokersAvailable(
                    f"cannot read from Kafka at {self.bootstrap_servers}: {type(exc).__name__}"
                ) from exc
            raise
        try:
            yield consumer
        finally:
            await consumer.stop()

    async def _ranges(self, consumer: Any, topic: str) -> list[PartitionRange]:
        from aiokafka import TopicPartition

        found = consumer.partitions_for_topic(topic)
        if not found:
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(topic)
        if not found:
            raise UnknownTopicOrPartitionError(context=f"topic {topic!r}")
        tps = [TopicPartition(topic, p) for p in sorted(found)]
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        return [PartitionRange(partition=tp.partition, log_start=starts[tp], log_end=ends[tp]) for tp in tps]

    async def _read(
        self, consumer: Any, topic: str, start: dict[int, int], end: dict[int, int], limit: int
    ) -> tuple[list[Any], dict[int, int]]:
        """Records of each partition from start[p] (inclusive) to end[p] (exclusive), at most
        `limit` in all, partitions in order; and where each partition's next read starts."""
        from aiokafka import TopicPartition

        out: list[Any] = []
        positions = dict(start)
        wanted = {p: (s, end[p]) for p, s in start.items() if s < end[p]}
        if not wanted:
            return out, positions
        consumer.assign([TopicPartition(topic, p) for p in wanted])
        async with asyncio.timeout(_READ_TIMEOUT):
            for p, (s, e) in sorted(wanted.items()):
                tp = TopicPartition(topic, p)
                consumer.seek(tp, s)
                while len(out) < limit and await consumer.position(tp) < e:
                    batch = await consumer.getmany(tp, timeout_ms=500, max_records=limit - len(out))
                    for raw in batch.get(tp, []):
                        if raw.offset < e and len(out) < limit:
                            out.append(raw)
                            positions[p] = raw.offset + 1
                if len(out) < limit:
                    positions[p] = e  # read to the end (offsets may have gaps)
                else:
                    break
        return out, positions

    async def browse(
        self, topic: str, *, partition: int | None = None, offset: int | None = None, limit: int = 50
    ) -> DeadLetterPage:
        """A page of `topic`: from `offset` (default the log start) of `partition` (default
        every partition, in order), at most `limit` records."""
        limit = max(1, min(limit, MAX_PAGE))
        async with self._consumer() as consumer:
            ranges = await self._ranges(consumer, topic)
            chosen = [r for r in ranges if partition is None or r.partition == partition]
            if partition is not None and not chosen:
                raise UnknownTopicOrPartitionError(f"{topic} has no partition {partition}")
            start = {
                r.partition: max(r.log_start, offset if offset is not None else r.log_start) for r in chosen
            }
            end = {r.partition: r.log_end for r in chosen}
            raws, next_offset = await self._read(consumer, topic, start, end, limit)
        return DeadLetterPage(
            topic=topic, partitions=ranges, records=[_record(r) for r in raws], next_offset=next_offset
        )

    async def replay(
        self, topic: str, *, partition: int | None = None, offset: int | None = None
    ) -> ReplayResult:
        """Produce one record (`partition` and `offset` given) or every record of `topic` to
        its original topic.  Records without the header are skipped (one alone is an error)."""
        async with self._consumer() as consumer:
            ranges = await self._ranges(consumer, topic)
            if partition is None and offset is None:
                start = {r.partition: r.log_start for r in ranges}
                end = {r.partition: r.log_end for r in ranges}
                raws, _ = await self._read(consumer, topic, start, end, limit=MAX_REPLAY)
            else:
                if partition is None or offset is None:
                    raise ValueError("give both partition and offset to replay one record")
                found = next((r for r in ranges if r.partition == partition), None)
                if found is None or not found.log_start <= offset < found.log_end:
                    raise UnknownTopicOrPartitionError(
                        f"{topic}-{partition} has no record at offset {offset}"
                    )
                raws, _ = await self._read(consumer, topic, {partition: offset}, {partition: offset + 1}, 1)
                if not raws:
                    raise UnknownTopicOrPartitionError(
                        f"{topic}-{partition} has no record at offset {offset}"
                    )
                if ORIGINAL_TOPIC not in {n for n, _ in raws[0].headers or ()}:
                    raise NotADeadLetterError(
                        f"{topic}-{partition}@{offset} has no {ORIGINAL_TOPIC} header: nowhere to replay it to"
                    )
        return await self._produce(raws)

    async def _produce(self, raws: Sequence[Any]) -> ReplayResult:
        from aiokafka import AIOKafkaProducer

        targets: dict[str, int] = {}
        skipped: list[str] = []
        sends: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]] = []
        for raw in raws:
            user, dlq = split_headers(raw.headers or ())
            original = dlq.get("original.topic")
            if not original:
                skipped.append(f"{raw.partition}@{raw.offset}")
                continue
            sends.append((original, raw.key, raw.value, [(n, v or b"") for n, v in user]))
        if not sends:
            return ReplayResult(replayed=0, targets={}, skipped=skipped)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            request_timeout_ms=int(self.request_timeout * 1000),
        )
        try:
            await producer.start()
            futures = [await producer.send(t, value=v, key=k, headers=h) for t, k, v, h in sends]
            async with asyncio.timeout(self.request_timeout):
                await asyncio.gather(*futures)
        finally:
            await producer.stop()
        for t, *_ in sends:
            targets[t] = targets.get(t, 0) + 1
        return ReplayResult(replayed=len(sends), targets=targets, skipped=skipped)
