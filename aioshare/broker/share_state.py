"""Durable share-partition state: the embedded equivalent of `__share_group_state`.

Kafka's partition leaders write every state change of a share-partition (start offset,
acknowledged/archived ranges, delivery counts) to the share coordinator before they answer an
acknowledgement, and the group coordinator reads the same state for DescribeShareGroupOffsets and
resets it for AlterShareGroupOffsets. Here both sides run in one process, so a keyed store
stands in for the share coordinator; with a data directory it writes through to one file per
share-partition (replaced atomically), without one it is memory only.

ACQUIRED records are never persisted as such (section 6.3): the snapshot the leader writes
already records them as AVAILABLE, so a restart hands them out again.

Each file also keeps the start offset DescribeShareGroupOffsets reports (which lags one write
behind, see `reported_start_offset`), so a restart reports what Kafka's share coordinator,
which replays what was written, would.

Files are replaced atomically and fsynced as the broker's flush policy says, counting every
write as one message of Kafka's `__share_group_state` topic: `log.flush.interval.messages=1`
fsyncs each write before the acknowledgement that caused it is answered; `flush_if_due` applies
`log.flush.interval.ms` when the flush scheduler calls it; `flush` makes everything durable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec

from aioshare.broker.flush import (
    NO_FLUSH,
    FlushPolicy,
    fsync_directory,
    fsync_path,
    monotonic_ms,
    replace_file,
)
from aioshare.broker.share_partition import PersistedState

# start_offset -1 = "initialised, the leader decides with share.auto.offset.reset at first load"
UNDECIDED_START = -1


class ShareStateKey(NamedTuple):
    group_id: str
    topic_id: uuid.UUID
    partition: int


# A listener learns that a key's state was replaced or deleted behind the leader's back
# (AlterShareGroupOffsets, DeleteShareGroupOffsets, DeleteGroups), so a leader that caches a
# SharePartition drops it and reloads on the next fetch.
ResetListener = Callable[[ShareStateKey], None]


class _StoredState(PersistedState, frozen=True):
    """A share-state file: the state plus the start offset reported for it (absent in files
    written before it was kept: the state's own start offset is reported then)."""

    reported_start_offset: int | None = None


_PERSISTED_FIELDS = PersistedState.__struct_fields__
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_StoredState)


class ShareStateStore:
    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        flush_policy: FlushPolicy = NO_FLUSH,
        clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        """`flush_policy`: the broker's flush defaults (what `__share_group_state` gets in Kafka);
        `clock` (milliseconds) times the flushes."""
        self._flush_policy = flush_policy
        self._clock = clock
        self._last_flush_ms = clock()
        self._unflushed_writes = 0
        # Replaced files not fsynced yet, and directories whose entries changed since.
        self._unflushed_files: set[Path] = set()
        self._unflushed_dirs: set[Path] = set()
        self._states: dict[ShareStateKey, PersistedState] = {}
        # The start offset Kafka's share coordinator would hold (see `reported_start_offset`).
        self._reported: dict[ShareStateKey, int] = {}
        self._listeners: list[ResetListener] = []
        self._directory = Path(directory) if directory is not None else None
        if self._directory is not None:
            self._directory.mkdir(parents=True, exist_ok=True)
            self._load()

    # ------------------------------------------------------------------ reading

    def read(self, key: ShareStateKey) -> PersistedState | None:
        return self._states.get(key)

    def reported_start_offset(self, key: ShareStateKey) -> int:
        """The start offset DescribeShareGroupOffsets reports: what Kafka's share coordinator holds.

        A Kafka leader writes a state change with the start offset it had *before* the change
        (SharePartition updates its cached start offset once the write completed), and writes
        nothing when it first loads a share-partition, so the coordinator shows -1 until the
        first acknowledgement, release or lock expiry, and afterwards the start offset of the
        previous write (tests/differential: 0 after accepting records 0..9 once; the lag, which
        counts the acknowledged records past that start offset, is exact either way). The state
        the embedded leader reloads from is the exact one.
        """
        reported = self._reported.get(key)
        if reported is not None:
            return reported
        state = self._states.get(key)
        return state.start_offset if state is not None else UNDECIDED_START

    def keys(self, group_id: str | None = None) -> Iterator[ShareStateKey]:
        for key in list(self._states):
            if group_id is None or key.group_id == group_id:
                yield key

    # ------------------------------------------------------------------ writing

    def write(self, key: ShareStateKey, state: PersistedState, *, first_load: bool = False) -> None:
        """A leader's write after a state change; returns once it is durable.

        ``first_load``: the start offset chosen at a share-partition's first load, which Kafka
        does not write (it stays invisible to `reported_start_offset`).
        """
        previous = self._states.get(key)
        if first_load:
            self._reported.setdefault(key, previous.start_offset if previous is not None else UNDECIDED_START)
        elif previous is None or previous.start_offset == UNDECIDED_START:
            self._reported[key] = state.start_offset
        else:
            self._reported[key] = previous.start_offset
        self._states[key] = state
        self._save(key, state)

    def initialize(self, key: ShareStateKey, start_offset: int, state_epoch: int) -> None:
        """Fresh state for a share-partition (first subscription or an offsets reset)."""
        state = PersistedState(state_epoch=state_epoch, start_offset=start_offset)
        self._states[key] = state
        self._reported[key] = start_offset
        self._save(key, state)
        self._notify(key)

    def delete(self, group_id: str, topic_id: uuid.UUID | None = None) -> list[ShareStateKey]:
        removed = [
            key
            for key in list(self._states)
            if key.group_id == group_id and (topic_id is None or key.topic_id == topic_id)
        ]
        for key in removed:
            del self._states[key]
            self._reported.pop(key, None)
            path = self._path(key)
            if path is not None:
                path.unlink(missing_ok=True)
                self._unflushed_files.discard(path)
                self._unflushed_dirs.add(path.parent)
                self._written()
            self._notify(key)
        return removed

    def add_reset_listener(self, listener: ResetListener) -> None:
        self._listeners.append(listener)

    # ------------------------------------------------------------------ files

    def _notify(self, key: ShareStateKey) -> None:
        for listener in self._listeners:
            listener(key)

    def _path(self, key: ShareStateKey) -> Path | None:
        if self._directory is None:
            return None
        # Group ids are arbitrary strings; hex keeps them safe as file names.
        group = key.group_id.encode("utf-8").hex() or "_"
        return self._directory / group / f"{key.topic_id.hex}-{key.partition}.json"

    def _save(self, key: ShareStateKey, state: PersistedState) -> None:
        path = self._path(key)
        if path is None:
            return
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True)
            self._unflushed_dirs.add(path.parent.parent)
        stored = _StoredState(**msgspec.structs.asdict(state), reported_start_offset=self._reported.get(key))
        # Atomic: a crash leaves either the old or the new state, never half of it.
        due = self._unflushed_writes + 1 >= self._flush_policy.messages
        replace_file(path, _encoder.encode(stored), durable=due)
        if due:
            self._unflushed_files.discard(path)
        else:
            self._unflushed_files.add(path)
            self._unflushed_dirs.add(path.parent)
        self._written()

    def _written(self) -> None:
        """Count one write (or deletion), as a message of __share_group_state; flush when due."""
        self._unflushed_writes += 1
        if self._unflushed_writes >= self._flush_policy.messages:
            self.flush()

    # ------------------------------------------------------------------ flushing

    def flush(self) -> None:
        """fsync every state file written, and every directory changed, since the last flush."""
        if not self._unflushed_writes:
            return
        for path in self._unflushed_files:
            fsync_path(path)
        for directory in self._unflushed_dirs:
            fsync_directory(directory)
        self._unflushed_files.clear()
        self._unflushed_dirs.clear()
        self._unflushed_writes = 0
        self._last_flush_ms = self._clock()

    def flush_if_due(self) -> None:
        """The flush scheduler's check: flush when the last flush is flush.ms old or older."""
        if self._clock() - self._last_flush_ms >= self._flush_policy.ms:
            self.flush()

    def _load(self) -> None:
        assert self._directory is not None
        for group_dir in self._directory.iterdir():
            if not group_dir.is_dir():
                continue
            group_id = bytes.fromhex(group_dir.name).decode("utf-8") if group_dir.name != "_" else ""
            for path in group_dir.glob("*.json"):
                topic_hex, _, partition = path.stem.rpartition("-")
                key = ShareStateKey(group_id, uuid.UUID(hex=topic_hex), int(partition))
                stored = _decoder.decode(path.read_bytes())
                self._states[key] = PersistedState(
                    **{name: getattr(stored, name) for name in _PERSISTED_FIELDS}
                )
                if stored.reported_start_offset is not None:
                    self._reported[key] = stored.reported_start_offset
