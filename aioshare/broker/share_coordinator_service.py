"""The cluster's share-group coordinator: one ShareGroupCoordinator behind the coordinator APIs.

Kafka spreads groups over the leaders of the __consumer_offsets partitions; the embedded cluster
keeps every group in one sans-IO ShareGroupCoordinator and lets only the node that
``cluster.group_coordinator(group)`` names answer for a group (the others say NOT_COORDINATOR),
so clients see the same coordinator placement and movement as on a real cluster.

Around the core this service owns what needs I/O or time:

* the member session timeouts: one task sleeps until the earliest deadline and expires members;
* share-state initialisation: partitions a heartbeat newly initialised get state with start
  offset -1 (the leader applies share.auto.offset.reset when it first loads them), at the group
  epoch as state epoch; Kafka does this asynchronously, the embedded broker synchronously, so
  the first heartbeat already carries the assignment (semantics doc, section 2.5);
* topic deletion: groups forget the topic and its share state is deleted, as Kafka's
  coordinator does when the metadata image drops a topic;
* persistence: with a data directory, each group's durable state (what Kafka writes to
  __consumer_offsets) goes to one JSON file, rewritten when it changes, so membership survives a
  restart; members then get a fresh session timeout, as when Kafka loads a coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aioshare.broker import _codes
from aioshare.broker.cluster import Cluster
from aioshare.broker.share_groups import (
    AdminResult,
    HeartbeatResult,
    ShareGroupCoordinator,
    TopicMetadata,
)
from aioshare.broker.share_state import UNDECIDED_START, ShareStateKey
from aioshare.broker.topics import Topic

logger = logging.getLogger("aioshare.broker")

GROUPS_DIRECTORY = "share-groups"


class ShareCoordinatorService:
    """Owns the ShareGroupCoordinator of a cluster, its timer task and its persistence."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.coordinator = ShareGroupCoordinator(cluster.config, group_configs=cluster.group_configs.get)
        self._directory = cluster.data_dir / GROUPS_DIRECTORY if cluster.data_dir is not None else None
        # The last snapshot written per group: heartbeats that change nothing durable (the
        # common case) are not written again.
        self._written: dict[str, dict[str, Any]] = {}
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # The deadline the timer task sleeps until (None: no deadline, it waits for a wake-up).
        self._sleeping_until: int | None = None
        self._load()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._timer is not None:
            return
        self.cluster.topics.add_delete_listener(self._topic_deleted)
        self._timer = asyncio.get_running_loop().create_task(
            self._expire_loop(), name="aioshare-share-group-sessions"
        )

    async def close(self) -> None:
        self.cluster.topics.remove_delete_listener(self._topic_deleted)
        task, self._timer = self._timer, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------ placement

    def is_coordinator(self, group_id: str, node_id: int) -> bool:
        node = self.cluster.group_coordinator(group_id)
        return node is not None and node.node_id == node_id

    def topics(self) -> dict[str, TopicMetadata]:
        """Topic metadata as the coordinator sees it (Kafka's metadata image)."""
        return {
            topic.name: TopicMetadata(topic.topic_id, len(topic.partitions)) for topic in self.cluster.topics
        }

    # ------------------------------------------------------------------ membership

    def heartbeat(
        self,
        group_id: str,
        member_id: str | None,
        member_epoch: int,
        *,
        subscribed_topic_names: Sequence[str] | None,
        rack_id: str | None,
        client_id: str,
        client_host: str,
    ) -> HeartbeatResult:
        result = self.coordinator.heartbeat(
            group_id,
            member_id,
            member_epoch,
            topics=self.topics(),
            now_ms=self.cluster.now_ms(),
            subscribed_topic_names=subscribed_topic_names,
            rack_id=rack_id,
            client_id=client_id,
            client_host=client_host,
        )
        if result.error_code:
            return result
        group = self.coordinator.group(group_id)
        if group is not None and result.newly_initialized:
            for topic_id, partitions in result.newly_initialized.items():
                for partition in partitions:
                    key = ShareStateKey(group_id, topic_id, partition)
                    # A leader may already hold state for it (a member fetched before its first
                    # heartbeat reached us): progress must not be reset by a late initialisation.
                    if self.cluster.share_state.read(key) is None:
                        self.cluster.share_state.initialize(key, UNDECIDED_START, group.group_epoch)
        self._persist(group_id)
        self._reschedule()
        return result

    # ------------------------------------------------------------------ admin operations

    def delete_group(self, group_id: str) -> AdminResult:
        """DeleteGroups: the group, its share state and its dynamic configs go together."""
        result = self.coordinator.delete_group(group_id)
        if result.error_code == _codes.NONE:
            self.cluster.share_state.delete(group_id)
            self.cluster.group_configs.forget(group_id)
            self._persist(group_id)
        return result

    def alter_offsets(self, group_id: str, offsets: dict[uuid.UUID, dict[int, int]]) -> AdminResult:
        """AlterShareGroupOffsets for validated partitions: topic id -> partition -> start offset.

        The state of each partition is replaced (in-flight state cleared) at a new state epoch,
        the group's epoch after a bump, as Kafka's coordinator does.
        """
        result = self.coordinator.prepare_alter_offsets(group_id)
        if result.error_code:
            return result
        epoch = self.coordinator.bump_group_epoch(group_id)
        store = self.cluster.share_state
        for topic_id, partitions in offsets.items():
            for partition, start_offset in partitions.items():
                key = ShareStateKey(group_id, topic_id, partition)
                previous = store.read(key)
                # A state epoch never goes backwards, even for state older than the group.
                state_epoch = max(epoch, previous.state_epoch + 1) if previous is not None else epoch
                store.initialize(key, start_offset, state_epoch)
            self.coordinator.mark_initialized(group_id, topic_id, partitions)
        self._persist(group_id)
        return result

    def delete_offsets(self, group_id: str, topic_ids: Iterable[uuid.UUID]) -> AdminResult:
        result = self.coordinator.delete_offsets(group_id, topic_ids)
        for topic_id in result.deleted:
            self.cluster.share_state.delete(group_id, topic_id)
        if result.error_code == _codes.NONE:
            self._persist(group_id)
        return result

    # ------------------------------------------------------------------ topic deletion

    def _topic_deleted(self, topic: Topic) -> None:
        for group_id in self.coordinator.topic_deleted(topic.topic_id):
            self._persist(group_id)
        # Every group's state for the topic, including groups that only have offsets altered.
        store = self.cluster.share_state
        for group_id in {key.group_id for key in store.keys() if key.topic_id == topic.topic_id}:
            store.delete(group_id, topic.topic_id)

    # ------------------------------------------------------------------ session timeouts

    def _reschedule(self) -> None:
        """Wake the timer task when the earliest deadline is now earlier than what it sleeps until."""
        deadline = self.coordinator.next_deadline()
        if deadline is not None and (self._sleeping_until is None or deadline < self._sleeping_until):
            self._wake.set()

    async def _expire_loop(self) -> None:
        while True:
            self._wake.clear()
            now = self.cluster.now_ms()
            for group_id in {group for group, _member in self.coordinator.expire_members(now)}:
                logger.info("share group %s: member session timed out", group_id)
                self._persist(group_id)
            deadline = self.coordinator.next_deadline()
            self._sleeping_until = deadline
            timeout = None if deadline is None else max(0.0, (deadline - self.cluster.now_ms()) / 1000)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    # ------------------------------------------------------------------ persistence

    def _path(self, group_id: str) -> Path | None:
        if self._directory is None:
            return None
        # Group ids are arbitrary strings; hex keeps them safe as file names.
        return self._directory / f"{group_id.encode('utf-8').hex() or '_'}.json"

    def _persist(self, group_id: str) -> None:
        snapshot = self.coordinator.snapshot(group_id)
        if snapshot == self._written.get(group_id):
            return
        path = self._path(group_id)
        if snapshot is None:
            self._written.pop(group_id, None)
            if path is not None:
                path.unlink(missing_ok=True)
            return
        self._written[group_id] = snapshot
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(snapshot, sort_keys=True))
        # Atomic: a crash leaves the old or the new group state, never half of it.
        os.replace(temporary, path)

    def _load(self) -> None:
        if self._directory is None or not self._directory.is_dir():
            return
        now = self.cluster.now_ms()
        for path in sorted(self._directory.glob("*.json")):
            try:
                snapshot = json.loads(path.read_text())
                self.coordinator.restore(snapshot, now)
            except (OSError, ValueError, KeyError, TypeError):
                logger.exception("cannot load share group state from %s; ignoring it", path)
                continue
            self._written[str(snapshot["group_id"])] = snapshot
