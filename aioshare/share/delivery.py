"""What one partition of a ShareFetch response delivers (sans-IO).

The broker sends whole record batches but acquires only the offsets listed in
``AcquiredRecords``; a batch may hold offsets another member owns or that lie beyond a
``record_limit`` cut.  Only acquired offsets are delivered.  Acquired offsets without a
deliverable record are settled here so the broker does not wait for their locks:

* inside or between the batches returned (compaction holes, control records, aborted
  data): GAP, as the Java client does - the record does not exist for consumers;
* after the last complete batch (the response was cut at ``MaxBytes``, or the batch framing
  is broken): RELEASE - the record may well exist, so it must come back, not be archived.

A batch that fails its checks (CRC, a record that does not parse, a codec error) is REJECTed
- its acquired offsets, as Kafka's Java client does (``rejectRecordBatch``): released, it would
come back, fail again and burn a delivery attempt per fetch until Kafka archived it anyway -
and the batches after it are still delivered.  A batch in a compression this process has no
codec for is not the data's fault: ``UnsupportedCompressionTypeError`` propagates (the fetcher
gives the records back and fails the consumer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from aioshare.protocol.errors import CorruptRecordError, KafkaError
from aioshare.protocol.record_reader import RecordFields
from aioshare.protocol.records import iter_batches
from aioshare.share.acks import gap_ranges

__all__ = ["Acquired", "Delivery", "unpack_partition"]


class Acquired(NamedTuple):
    first: int
    last: int
    delivery_count: int


@dataclass(slots=True)
class Delivery:
    # The deliverable records of each acquired range, in offset order: grouped per range
    # so that the consumer handles delivery count, deadline and lease once per range.
    runs: list[tuple[Acquired, list[RecordFields]]] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    releases: list[tuple[int, int]] = field(default_factory=list)
    rejects: list[tuple[int, int]] = field(default_factory=list)  # acquired offsets of corrupt batches
    corrupt: KafkaError | None = None

    @property
    def records(self) -> list[tuple[RecordFields, int]]:
        """(record, delivery count) for every deliverable record, in offset order."""
        return [(rec, r.delivery_count) for r, recs in self.runs for rec in recs]


def unpack_partition(data: bytes | memoryview, acquired: Iterable[Acquired]) -> Delivery:
    ranges = sorted(acquired)
    out = Delivery()
    if not ranges:
        return out
    runs: list[list[RecordFields]] = [[] for _ in ranges]
    covered_to = -1  # last offset of the last complete batch seen
    i = 0  # index into ranges; records arrive in ascending offset order
    lo, hi = ranges[0].first, ranges[-1].last
    try:
        for batch in iter_batches(data):
            base, end = batch.base_offset, batch.last_offset
            if end < lo or base > hi or batch.is_control or not _overlaps(ranges, base, end):
                covered_to = max(covered_to, end)
                continue
            try:
                decoded = batch.decode_all()
            except CorruptRecordError as exc:
                out.corrupt = exc
                out.rejects.extend(_acquired_within(ranges, base, end))
                covered_to = max(covered_to, end)
                continue
            while i < len(ranges) and ranges[i].last < base:
                i += 1
            r = ranges[i] if i < len(ranges) else None
            if r is not None and r.first <= base and end <= r.last:
                # The whole batch lies in one acquired range (the usual case): no per-record test.
                runs[i].extend(decoded)
            else:
                for record in decoded:
                    offset = record[0]
                    while i < len(ranges) and ranges[i].last < offset:
                        i += 1
                    if i == len(ranges):
                        break
                    if ranges[i].first <= offset:
                        runs[i].append(record)
            covered_to = max(covered_to, end)
    except CorruptRecordError as exc:
        # Broken framing: where the next batch starts is unknown; keep what came before it and
        # give the rest back.
        out.corrupt = exc
    out.runs = [(r, recs) for r, recs in zip(ranges, runs, strict=True) if recs]
    _settle_missing(ranges, runs, covered_to, out)
    return out


def _acquired_within(ranges: Sequence[Acquired], lo: int, hi: int) -> list[tuple[int, int]]:
    return [(max(r.first, lo), min(r.last, hi)) for r in ranges if r.first <= hi and lo <= r.last]


def _overlaps(ranges: Sequence[Acquired], lo: int, hi: int) -> bool:
    return any(r.first <= hi and lo <= r.last for r in ranges)


def _settle_missing(
    ranges: Sequence[Acquired], runs: list[list[RecordFields]], covered_to: int, out: Delivery
) -> None:
    rejected = [o for lo, hi in out.rejects for o in range(lo, hi + 1)]
    for r, recs in zip(ranges, runs, strict=True):
        gap_end = min(r.last, covered_to)
        if r.first <= gap_end and len(recs) != gap_end - r.first + 1:
            present = [rec[0] for rec in recs]
            if rejected:  # rejected offsets are settled as such, not as gaps
                present = sorted([*present, *(o for o in rejected if r.first <= o <= gap_end)])
            out.gaps.extend(gap_ranges(r.first, gap_end, present))
        tail_start = max(r.first, covered_to + 1)
        if tail_start <= r.last:
            out.releases.append((tail_start, r.last))
