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
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import msgspec

from aioshare.protocol.errors import KafkaError, NoBrokersAvailable, UnknownTopicOrPartitionError

__all__ = ["DeadLetterExplorer", "DeadLetterPage", "DeadLetterRecord", "NotADeadLetterError"]

HEADER_PREFIX = "aioshare.dlq."  # aioshare.runtime.dlq.HEADER_PREFIX (not imported: no runtime here)
ORIGINAL_TOPIC = HEADER_PREFIX + "original.topic"
MAX_PAGE = 500
MAX_REPLAY = 100_000  # records one "replay all" reads at most
REPLAY_CHUNK = 500  # records read, then produced, at a time: bounds a replay's memory
MAX_SKIPPED_LISTED = 100
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
    """Records that could not be replayed (no original topic), as "partition@offset" (the
    first 100; ``skipped_count`` counts them all)."""
    skipped_count: int = 0
    read: int = 0
    """Records read from the dead-letter topic."""
    limit: int | None = None
    """"Replay all": the most records one replay reads (None for one record)."""
    capped: bool = False
    """"Replay all" stopped at ``limit`` with records left: they were not replayed."""
    next_offset: dict[int, int] = {}
    """Where a capped replay stopped, per partition with records left: give it as ``from``
    to go on."""


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


def _as_is(raw: Any) -> Any:
    return raw


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

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        request_timeout: float = 30.0,
        max_replay: int | None = None,
        chunk: int | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.request_timeout = request_timeout
        self.max_replay = MAX_REPLAY if max_replay is None else max_replay
        self.chunk = REPLAY_CHUNK if chunk is None else chunk

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
        self,
        consumer: Any,
        topic: str,
        start: dict[int, int],
        end: dict[int, int],
        limit: int,
        keep: Callable[[Any], Any] = _as_is,
    ) -> tuple[list[Any], dict[int, int]]:
        """Records of each partition from start[p] (inclusive) to end[p] (exclusive), at most
        `limit` in all, partitions in order, each as ``keep(record)`` (browsing keeps the
        display form, cut at 4 KiB, not the whole record); and where each partition's next
        read starts."""
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
                            out.append(keep(raw))
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
            records, next_offset = await self._read(consumer, topic, start, end, limit, _record)
        return DeadLetterPage(topic=topic, partitions=ranges, records=records, next_offset=next_offset)

    async def replay(
        self,
        topic: str,
        *,
        partition: int | None = None,
        offset: int | None = None,
        start: dict[int, int] | None = None,
    ) -> ReplayResult:
        """Produce one record (`partition` and `offset` given) or every record of `topic` to
        its original topic.  Records without the header are skipped (one alone is an error).

        "Every record" reads from each partition's log start (or, given `start`, only the
        partitions it names from those offsets: a capped replay's ``next_offset``) to its end as it was when the replay began, in chunks of
        `chunk` records - produced before the next is read, so memory stays bounded - and
        stops after `max_replay` records: the result says so (``capped``) and where each
        partition stopped (``next_offset``)."""
        async with self._consumer() as consumer:
            ranges = await self._ranges(consumer, topic)
            if partition is None and offset is None:
                return await self._replay_all(consumer, topic, ranges, start)
            if partition is None or offset is None:
                raise ValueError("give both partition and offset to replay one record")
            found = next((r for r in ranges if r.partition == partition), None)
            if found is None or not found.log_start <= offset < found.log_end:
                raise UnknownTopicOrPartitionError(f"{topic}-{partition} has no record at offset {offset}")
            raws, _ = await self._read(consumer, topic, {partition: offset}, {partition: offset + 1}, 1)
            if not raws:
                raise UnknownTopicOrPartitionError(f"{topic}-{partition} has no record at offset {offset}")
            if ORIGINAL_TOPIC not in {n for n, _ in raws[0].headers or ()}:
                raise NotADeadLetterError(
                    f"{topic}-{partition}@{offset} has no {ORIGINAL_TOPIC} header: nowhere to replay it to"
                )
        result = ReplayResult(replayed=0, targets={}, skipped=[], read=1)
        async with self._producer() as producer:
            await self._produce(producer, raws, result)
        return result

    async def _replay_all(
        self, consumer: Any, topic: str, ranges: list[PartitionRange], start: dict[int, int] | None
    ) -> ReplayResult:
        if start is None:  # every partition from its log start
            start = {r.partition: r.log_start for r in ranges}
        unknown = sorted(set(start) - {r.partition for r in ranges})
        if unknown:
            raise UnknownTopicOrPartitionError(f"{topic} has no partition {unknown[0]}")
        positions = {
            r.partition: max(r.log_start, start[r.partition]) for r in ranges if r.partition in start
        }
        end = {r.partition: r.log_end for r in ranges}
        result = ReplayResult(replayed=0, targets={}, skipped=[], limit=self.max_replay)
        async with self._producer() as producer:
            while result.read < self.max_replay and any(positions[p] < end[p] for p in positions):
                want = min(self.chunk, self.max_replay - result.read)
                raws, positions = await self._read(consumer, topic, positions, end, want)
                result.read += len(raws)
                await self._produce(producer, raws, result)
        result.next_offset = {p: o for p, o in positions.items() if o < end[p]}
        result.capped = bool(result.next_offset)
        return result

    @contextlib.asynccontextmanager
    async def _producer(self) -> AsyncIterator[Any]:
        """An acks=all producer, started on first use (a replay with nothing to send makes none)."""
        from aiokafka import AIOKafkaProducer

        made: list[Any] = []

        async def get() -> Any:
            if not made:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    acks="all",
                    request_timeout_ms=int(self.request_timeout * 1000),
                )
                made.append(producer)
                await producer.start()
            return made[0]

        try:
            yield get
        finally:
            if made:
                await made[0].stop()

    async def _produce(self, producer: Any, raws: Sequence[Any], result: ReplayResult) -> None:
        """Produce `raws` to their original topics (acknowledged before this returns) and count
        them into `result`; records without an original topic are skipped."""
        sends: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        for raw in raws:
            user, dlq = split_headers(raw.headers or ())
            original = dlq.get("original.topic")
            if not original:
                if len(result.skipped) < MAX_SKIPPED_LISTED:
                    result.skipped.append(f"{raw.partition}@{raw.offset}")
                result.skipped_count += 1
                continue
            sends.append((original, raw.key, raw.value, [(n, v or b"") for n, v in user]))
        if not sends:
            return
        started = await producer()
        futures = [await started.send(t, value=v, key=k, headers=h) for t, k, v, h in sends]
        async with asyncio.timeout(self.request_timeout):
            await asyncio.gather(*futures)
        for t, *_ in sends:
            result.targets[t] = result.targets.get(t, 0) + 1
        result.replayed += len(sends)
