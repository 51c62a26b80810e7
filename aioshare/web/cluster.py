"""What the web console reads from the cluster, over `ShareAdmin`: share groups, their members,
start offsets against the log, configs, and topics; plus the admin actions it offers.

Every value is a msgspec Struct, so the API encodes it as it is.  Kafka's "unknown" (-1) becomes
None.  `lag` is computed as log end offset - start offset (SPSO), clamped at 0, for every broker;
`broker_lag` is what DescribeShareGroupOffsets v1 reports (Kafka 4.2+, it leaves out records
already acknowledged past the SPSO), None where the broker does not say.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import msgspec

from aioshare.admin import ShareAdmin, ShareGroupDescription
from aioshare.admin.types import ResetTarget
from aioshare.protocol.errors import BrokerError
from aioshare.protocol.types import ConfigSource

__all__ = [
    "ClusterView",
    "ConfigView",
    "GroupDetail",
    "GroupSummary",
    "LagHistory",
    "MemberView",
    "PartitionView",
    "TopicView",
]


CONFIG_SETTLE = 5.0  # seconds an altered config may take to show in DescribeConfigs
CONFIG_POLL = 0.1


class MemberView(msgspec.Struct, kw_only=True):
    member_id: str
    client_id: str
    host: str
    rack_id: str | None
    member_epoch: int
    subscriptions: list[str]
    assignment: dict[str, list[int]]


class PartitionView(msgspec.Struct, kw_only=True):
    topic: str
    partition: int
    start_offset: int | None
    """The share-partition start offset (SPSO); None when unknown."""
    log_start: int | None
    log_end: int | None
    lag: int | None
    """log_end - start_offset, at least 0; None when either is unknown."""
    broker_lag: int | None
    leader_epoch: int | None
    error: str | None = None
    held: int = 0
    """Records the reporting processes hold (acquired, not yet acknowledged)."""


class ConfigView(msgspec.Struct, kw_only=True):
    name: str
    value: str | None
    source: str
    is_default: bool
    read_only: bool
    sensitive: bool


class GroupSummary(msgspec.Struct, kw_only=True):
    group_id: str
    state: str
    """Upper case, as the badges show it: EMPTY, STABLE, DEAD, ... ("UNKNOWN" when not said)."""
    members: int | None
    topics: list[str]
    lag: int | None
    error: str | None = None


class GroupDetail(msgspec.Struct, kw_only=True):
    group_id: str
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor: str
    members: list[MemberView]
    partitions: list[PartitionView]
    configs: list[ConfigView]
    lag: int | None


class TopicPartitionView(msgspec.Struct, kw_only=True):
    partition: int
    log_start: int | None
    log_end: int | None
    error: str | None = None


class TopicView(msgspec.Struct, kw_only=True):
    name: str
    topic_id: str
    internal: bool
    partitions: list[TopicPartitionView]
    records: int | None
    """Records in the logs (sum of end - start) when every partition is known."""


def state_name(state: str) -> str:
    """Kafka says `Empty`, `Stable`, `Dead`...: the console shows EMPTY, STABLE, DEAD."""
    return state.upper() if state else "UNKNOWN"


def _known(value: int) -> int | None:
    return None if value < 0 else value


def _error_text(error: BaseException | None) -> str | None:
    return None if error is None else str(error)


class ClusterView:
    """Reads and changes the cluster through one `ShareAdmin` (owned by the caller)."""

    def __init__(self, admin: ShareAdmin) -> None:
        self.admin = admin

    # ------------------------------------------------------------------ reading

    async def log_offsets(
        self, topics: Iterable[str]
    ) -> dict[tuple[str, int], tuple[int | None, int | None]]:
        """(log start, log end) of every partition of `topics`; None where a lookup failed."""
        names = sorted(set(topics))

        async def one(topic: str) -> dict[tuple[str, int], tuple[int | None, int | None]]:
            try:
                earliest, latest = await asyncio.gather(
                    self.admin.list_offsets(topic, "earliest"), self.admin.list_offsets(topic, "latest")
                )
            except BrokerError:  # a topic deleted since: its partitions show no log offsets
                return {}
            found: dict[tuple[str, int], tuple[int | None, int | None]] = {}
            for p in sorted(set(earliest) | set(latest)):
                low, high = earliest.get(p), latest.get(p)
                found[(topic, p)] = (
                    low if isinstance(low, int) else None,
                    high if isinstance(high, int) else None,
                )
            return found

        merged: dict[tuple[str, int], tuple[int | None, int | None]] = {}
        for part in await asyncio.gather(*(one(t) for t in names)):
            merged.update(part)
        return merged

    async def partitions(self, group_id: str) -> list[PartitionView]:
        """The group's share-partitions: SPSO against the log's start and end."""
        offsets = await self.admin.describe_share_group_offsets(group_id)
        logs = await self.log_offsets({tp.topic for tp in offsets})
        views = []
        for tp, info in offsets.items():
            log_start, log_end = logs.get((tp.topic, tp.partition), (None, None))
            spso = _known(info.start_offset)
            lag = None if spso is None or log_end is None else max(0, log_end - spso)
            views.append(
                PartitionView(
                    topic=tp.topic,
                    partition=tp.partition,
                    start_offset=spso,
                    log_start=log_start,
                    log_end=log_end,
                    lag=lag,
                    broker_lag=_known(info.lag),
                    leader_epoch=_known(info.leader_epoch),
                    error=_error_text(info.error),
                )
            )
        return views

    async def groups(self) -> list[GroupSummary]:
        """Every share group with its state, member count, topics and total lag."""
        listings = await self.admin.list_share_groups()
        if not listings:
            return []
        ids = [g.group_id for g in listings]
        described, partitions = await asyncio.gather(
            self.admin.describe_share_groups(ids),
            asyncio.gather(*(self.partitions(g) for g in ids), return_exceptions=True),
        )
        summaries = []
        for listing, parts in zip(listings, partitions, strict=True):
            found = described.get(listing.group_id)
            error: str | None = None
            members: int | None = None
            state = listing.state
            if isinstance(found, ShareGroupDescription):
                members = len(found.members)
                state = found.state or state
            elif found is not None:
                error = str(found)
            if isinstance(parts, BaseException):
                if not isinstance(parts, Exception):
                    raise parts
                error = error or str(parts)
                parts = []
            summaries.append(
                GroupSummary(
                    group_id=listing.group_id,
                    state=state_name(state),
                    members=members,
                    topics=sorted({p.topic for p in parts}),
                    lag=_total(p.lag for p in parts) if parts else None,
                    error=error,
                )
            )
        return summaries

    async def group(self, group_id: str) -> GroupDetail:
        """One group in full; GroupIdNotFoundError when there is no share group of that id."""
        described = (await self.admin.describe_share_groups([group_id]))[group_id]
        if isinstance(described, BrokerError):
            raise described.with_context(f"group {group_id!r}")
        partitions, configs = await asyncio.gather(
            self.partitions(group_id), self.admin.describe_group_config(group_id)
        )
        return GroupDetail(
            group_id=described.group_id,
            state=state_name(described.state),
            group_epoch=described.group_epoch,
            assignment_epoch=described.assignment_epoch,
            assignor=described.assignor,
            members=[
                MemberView(
                    member_id=m.member_id,
                    client_id=m.client_id,
                    host=m.host,
                    rack_id=m.rack_id,
                    member_epoch=m.member_epoch,
                    subscriptions=list(m.subscriptions),
                    assignment={t: list(ps) for t, ps in sorted(m.assignment.items())},
                )
                for m in described.members
            ],
            partitions=partitions,
            configs=[
                ConfigView(
                    name=c.name,
                    value=None if c.sensitive else c.value,
                    source=c.source.name,
                    is_default=c.is_default,
                    read_only=c.read_only,
                    sensitive=c.sensitive,
                )
                for c in configs.values()
                if c.name.startswith("share.")
            ],
            lag=_total(p.lag for p in partitions) if partitions else None,
        )

    async def topics(self, *, include_internal: bool = False) -> list[TopicView]:
        listings = await self.admin.list_topics(include_internal=include_internal)
        logs = await self.log_offsets(t.name for t in listings)
        views = []
        for t in listings:
            parts = []
            for p in range(t.partitions):
                low, high = logs.get((t.name, p), (None, None))
                parts.append(
                    TopicPartitionView(
                        partition=p,
                        log_start=low,
                        log_end=high,
                        error=None if (t.name, p) in logs else "log offsets unknown",
                    )
                )
            sizes = [
                None if p.log_start is None or p.log_end is None else p.log_end - p.log_start for p in parts
            ]
            views.append(
                TopicView(
                    name=t.name,
                    topic_id=str(t.topic_id),
                    internal=t.internal,
                    partitions=parts,
                    records=_total(sizes),
                )
            )
        return views

    # ------------------------------------------------------------------ admin actions

    async def require_group(self, group_id: str) -> ShareGroupDescription:
        """The group's description; GroupIdNotFoundError when it is not a share group."""
        described = (await self.admin.describe_share_groups([group_id]))[group_id]
        if isinstance(described, BrokerError):
            raise described.with_context(f"group {group_id!r}")
        return described

    async def reset_offsets(
        self, group_id: str, topic: str, to: ResetTarget, partitions: list[int] | None = None
    ) -> dict[int, int | BrokerError]:
        """Moves the group's SPSO on `topic` (Kafka refuses with NON_EMPTY_GROUP while it has
        members).  Only existing share groups: an unknown id is not silently created."""
        await self.require_group(group_id)
        return await self.admin.reset_share_group_offsets(group_id, topic, to=to, partitions=partitions)

    async def delete_offsets(self, group_id: str, topics: list[str]) -> dict[str, BrokerError | None]:
        await self.require_group(group_id)
        return await self.admin.delete_share_group_offsets(group_id, topics)

    async def delete_group(self, group_id: str) -> None:
        error = (await self.admin.delete_share_groups([group_id]))[group_id]
        if error is not None:
            raise error.with_context(f"group {group_id!r}")

    async def alter_configs(
        self, group_id: str, set: Mapping[str, str], delete: list[str], *, settle: float = CONFIG_SETTLE
    ) -> bool:
        """Sets and deletes group configs; True once DescribeConfigs shows the change.

        Real Kafka answers IncrementalAlterConfigs when its controller took the change; each
        broker applies it a moment later, from the metadata log, so a describe right after may
        still show the old value.  This waits up to `settle` seconds for it (False: not seen
        yet), so the page redrawn after an action shows what was done."""
        await self.admin.alter_group_config(group_id, set=set, delete=delete)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle
        while True:
            configs = await self.admin.describe_group_config(group_id)
            done = all(
                (c := configs.get(name)) is not None
                and c.source is ConfigSource.GROUP_CONFIG
                and (c.value or "").strip().lower() == value.strip().lower()
                for name, value in set.items()
            ) and all(
                (c := configs.get(name)) is None or c.source is not ConfigSource.GROUP_CONFIG
                for name in delete
            )
            if done:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(CONFIG_POLL)  # broker state: no event to wait on


def _total(values: Iterable[int | None]) -> int | None:
    """The sum, or None when any part is unknown."""
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


class LagPoint(msgspec.Struct):
    t: float
    """Unix time (s)."""
    lag: dict[str, int]
    """Total lag per group at that time."""


class LagHistory:
    """Each group's total lag over the last `keep` seconds, sampled by the server's poller
    (and by the pages' own reads of the groups).

    Bounded however often it is fed: a sample less than `min_interval` seconds after the
    previous one replaces it, and at most `max_points` are kept (the oldest go first).
    """

    def __init__(self, keep: float = 1800.0, *, min_interval: float = 2.0, max_points: int = 2000) -> None:
        self.keep = keep
        self.min_interval = min_interval
        self._points: deque[LagPoint] = deque(maxlen=max_points)

    def __len__(self) -> int:
        return len(self._points)

    def add(self, groups: list[GroupSummary], now: float | None = None) -> None:
        t = time.time() if now is None else now
        point = LagPoint(t, {g.group_id: g.lag for g in groups if g.lag is not None})
        if len(self._points) >= 2 and t - self._points[-2].t < self.min_interval:
            self._points[-1] = point  # the newest figures, without one more point
        else:
            self._points.append(point)
        while self._points and self._points[0].t < t - self.keep:
            self._points.popleft()

    def series(self, group_id: str | None = None) -> list[list[float]]:
        """[[t, lag], ...]: one group's lag, or the sum over groups."""
        out = []
        for p in self._points:
            if group_id is None:
                out.append([p.t, float(sum(p.lag.values()))])
            elif group_id in p.lag:
                out.append([p.t, float(p.lag[group_id])])
        return out


def parse_reset_target(text: str) -> ResetTarget:
    """`earliest`, `latest` or an ISO-8601 datetime (a naive one is UTC here: the browser sends
    its local time converted to UTC with a zone, so a bare time only comes from other clients)."""
    value = text.strip()
    if value.lower() in ("earliest", "latest"):
        return "earliest" if value.lower() == "earliest" else "latest"
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected 'earliest', 'latest' or an ISO-8601 datetime (e.g. 2025-01-31T12:00:00Z), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when
