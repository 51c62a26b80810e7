"""What one partition of a ShareFetch response delivers (sans-IO).

The broker sends whole record batches but acquires only the offsets listed in
``AcquiredRecords``; a batch may hold offsets another member owns or that lie beyond a
``record_limit`` cut.  Only acquired offsets are delivered.  Acquired offsets without a
deliverable record are settled here so the broker does not wait for their locks:

* inside or between the batches returned (compaction holes, control records, aborted
  data): GAP, as the Java client does - the record does not exist for consumers;
* after the last complete batch (the response was cut at ``MaxBytes``, or a batch did not
  decode): RELEASE - the record may well exist, so it must come back, not be archived.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from aioshare.protocol.errors import KafkaError
from aioshare.protocol.records import DecodedRecord, iter_batches
from aioshare.share.acks import gap_ranges

__all__ = ["Acquired", "Delivery", "unpack_partition"]


class Acquired(NamedTuple):
    first: int
    last: int
    delivery_count: int


@dataclass(slots=True)
class Delivery:
    records: list[tuple[DecodedRecord, int]] = field(default_factory=list)  # (record, delivery count)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    releases: list[tuple[int, int]] = field(default_factory=list)
    corrupt: KafkaError | None = None


def unpack_partition(data: bytes | memoryview, acquired: Iterable[Acquired]) -> Delivery:
    ranges = sorted(acquired)
    out = Delivery()
    if not ranges:
        return out
    present: list[int] = []
    covered_to = -1  # last offset of the last complete batch seen
    i = 0  # index into ranges; records arrive in ascending offset order
    try:
        for batch in iter_batches(data):
            if batch.last_offset < ranges[0].first or batch.base_offset > ranges[-1].last:
                covered_to = max(covered_to, batch.last_offset)
                continue
            if batch.is_control:
                covered_to = max(covered_to, batch.last_offset)
                continue
            if not _overlaps(ranges, batch.base_offset, batch.last_offset):
                covered_to = max(covered_to, batch.last_offset)
                continue
            decoded = list(batch.records())  # may raise CorruptRecordError: handled below
            for record in decoded:
                offset = record.offset
                while i < len(ranges) and ranges[i].last < offset:
                    i += 1
                if i == len(ranges):
                    break
                if ranges[i].first <= offset:
                    out.records.append((record, ranges[i].delivery_count))
                    present.append(offset)
            covered_to = max(covered_to, batch.last_offset)
    except KafkaError as exc:
        # A batch that does not decode: keep what came before it, give the rest back.
        out.corrupt = exc
    _settle_missing(ranges, present, covered_to, out)
    return out


def _overlaps(ranges: Sequence[Acquired], lo: int, hi: int) -> bool:
    return any(r.first <= hi and lo <= r.last for r in ranges)


def _settle_missing(ranges: Sequence[Acquired], present: list[int], covered_to: int, out: Delivery) -> None:
    for r in ranges:
        gap_end = min(r.last, covered_to)
        if r.first <= gap_end:
            out.gaps.extend(gap_ranges(r.first, gap_end, present))
        tail_start = max(r.first, covered_to + 1)
        if tail_start <= r.last:
            out.releases.append((tail_start, r.last))
