"""ShareAdmin and ``aioshare groups`` against Kafka's own tools on real Kafka, field by field.

Kafka's side is ``kafka-share-groups`` (ShareGroupCommand), ``kafka-configs`` (ConfigCommand) and,
for what those tools do not print (rack ids, the broker's own answer where a tool refuses before
asking), Java's ``Admin``.  All three run in one JVM per Kafka version, ``tests/java/AdminProbe.java``:
served from there a tool run costs its Admin calls (tens of milliseconds) instead of a JVM start
(about a second).  One run per version also goes through a fresh JVM, the way a user runs the tool,
and must print exactly what the in-process run printed.

Our side is ``ShareAdmin`` in this process and ``aioshare groups ...`` in a subprocess.  Tables are
parsed into whitespace-separated columns (see ``table``) and compared value by value; layout
differences (column order, ``;`` or space between topics) are Kafka's and ours on purpose.

Worth knowing about real Kafka (4.2.2 and 4.4.0), as these tests pin it:

* While members hold the records after the ones they accepted, the start offset Kafka reports
  trails what was accepted (here 0, for 4 accepted of 10; the lag is exact: 6); once the members
  leave, it reads 4.
* kafka-share-groups refuses ``--reset-offsets`` on a non-empty group itself ("Share group 'G' is
  not empty.", exit 1) and never sends it; the broker's own answer (Admin) is NON_EMPTY_GROUP.
  ``--delete`` and ``--delete-offsets`` print their errors but exit 0.
* The broker accepts a start offset past the log end (the lag then reads -1, printed "-");
  ``--to-offset`` moves such an offset to the log end first, and ``aioshare groups reset`` does too.
* A reset by time past the last record falls back to the log end (Kafka prints a "Warn:" line).
* DescribeShareGroupOffsets answers an unknown group with no offsets, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import pytest

from aioshare.admin import ShareAdmin
from aioshare.broker.embedded import EmbeddedBroker
from aioshare.protocol.errors import (
    BrokerError,
    GroupIdNotFoundError,
    NonEmptyGroupError,
)
from aioshare.share import ShareConsumer
from aioshare.testing.kafka.cluster import KafkaCluster
from aioshare.testing.kafka.java import compile_java, java_command
from aioshare.testing.kafka.maven import kafka_classpath
from aioshare.testing.kafka.requirement import require
from tests.kit import wait_for

from .conftest import KafkaTarget

PROBE_SOURCE = Path(__file__).parents[1] / "java" / "AdminProbe.java"
SHARE_GROUPS = "org.apache.kafka.tools.consumer.group.ShareGroupCommand"
ANSWER_PREFIX = "@@answer "
JOIN_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0
RECORDS_PER_PARTITION = 10
ACCEPTED_PER_PARTITION = 4
# Record k of each partition is stamped BASE_TIME + k seconds, for the resets by time.
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
# Java's ConfigEntry.ConfigSource renames three of the protocol's sources; ours keeps the protocol's.
JAVA_CONFIG_SOURCE = {
    "TOPIC_CONFIG": "DYNAMIC_TOPIC_CONFIG",
    "CLIENT_METRICS_CONFIG": "DYNAMIC_CLIENT_METRICS_CONFIG",
    "GROUP_CONFIG": "DYNAMIC_GROUP_CONFIG",
}


# ---------------------------------------------------------------------------------- Kafka's side


@dataclass
class Run:
    """What one command did: exit status and output (a probe request also has result/error)."""

    rc: int
    stdout: str
    stderr: str
    result: Any = None
    error: dict[str, Any] | None = None


class KafkaTools:
    """Kafka's tools and Admin for one cluster, served by one AdminProbe JVM."""

    def __init__(self, cluster: KafkaCluster, log_path: Path) -> None:
        self.version = cluster.version
        self.bootstrap = cluster.bootstrap_servers
        classes = require(lambda: compile_java([PROBE_SOURCE], cluster.version))
        self.config_command = _config_command_class(cluster.version)
        self._log_path = log_path
        self._log = open(log_path, "w")  # closed in close()
        self._process = subprocess.Popen(
            java_command(cluster.version, "AdminProbe", self.bootstrap, classes=classes),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        self.stray: list[str] = []  # stdout lines that are not answers
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(self._process.stdout,), daemon=True).start()

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            if line.startswith(ANSWER_PREFIX):
                self._answers.put(line.removeprefix(ANSWER_PREFIX))
            else:
                self.stray.append(line)
        self._answers.put(None)

    def call(self, *request: str) -> Run:
        with self._lock:
            assert self._process.stdin is not None
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            try:
                line = self._answers.get(timeout=CALL_TIMEOUT)
            except queue.Empty:
                pytest.fail(f"AdminProbe gave no answer to {request} in {CALL_TIMEOUT:.0f} s{self._tail()}")
            if line is None:
                pytest.fail(f"AdminProbe exited ({self._process.wait()}) on {request}{self._tail()}")
        # Output outside an answer is output a tool run lost: the harness is not to be trusted then.
        assert not self.stray, f"AdminProbe printed outside its answers: {''.join(self.stray)!r}"
        answer = json.loads(line)
        return Run(answer["rc"], answer["stdout"], answer["stderr"], answer["result"], answer["error"])

    async def share_groups(self, *args: str) -> Run:
        """``kafka-share-groups --bootstrap-server ... <args>``."""
        return await asyncio.to_thread(
            self.call, "tool", SHARE_GROUPS, "--bootstrap-server", self.bootstrap, *args
        )

    async def configs(self, *args: str) -> Run:
        """``kafka-configs --bootstrap-server ... <args>``."""
        return await asyncio.to_thread(
            self.call, "tool", self.config_command, "--bootstrap-server", self.bootstrap, *args
        )

    async def admin(self, *request: str) -> Run:
        """One Java Admin call (see AdminProbe.java)."""
        return await asyncio.to_thread(self.call, *request)

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            self._log.flush()
            return "; its stderr ends:\n" + "\n".join(self._log_path.read_text().splitlines()[-30:])
        return ""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self._process.stdin is not None
            self._process.stdin.close()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=15)
        self._log.close()


def _config_command_class(version: str) -> str:
    """kafka-configs' main class: Java in kafka-tools from 4.3, Scala in the broker jar before."""
    tools_jar = kafka_classpath(version) / f"kafka-tools-{version}.jar"
    with zipfile.ZipFile(tools_jar) as jar:
        if "org/apache/kafka/tools/ConfigCommand.class" in jar.namelist():
            return "org.apache.kafka.tools.ConfigCommand"
    return "kafka.admin.ConfigCommand"


@pytest.fixture(scope="module")
def kafka_tools(
    kafka_cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaTools]:
    log = tmp_path_factory.mktemp("admin-probe") / f"probe-{kafka_cluster.version}.log"
    tools = KafkaTools(kafka_cluster, log)
    try:
        yield tools
    finally:
        tools.close()


# ---------------------------------------------------------------------------------- our side


def _aioshare_command() -> list[str]:
    script = Path(sys.executable).with_name("aioshare")
    return [str(script)] if script.exists() else [sys.executable, "-m", "aioshare.cli.main"]


async def ours(kafka: KafkaTarget, *args: str) -> Run:
    """``aioshare groups <args> --bootstrap-server ...`` in a subprocess."""
    process = await asyncio.create_subprocess_exec(
        *_aioshare_command(),
        "groups",
        *args,
        "--bootstrap-server",
        kafka.bootstrap,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(CALL_TIMEOUT):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"aioshare groups {' '.join(args)} did not finish in {CALL_TIMEOUT:.0f} s")
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


# ---------------------------------------------------------------------------------- parsing


def table(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the table whose header line starts with ``first_header``, by column name.

    Cells are whitespace-separated.  A row with fewer cells than headers has empty cells (both
    sides left-align every column): it is cut at the header's column starts instead.  A row with
    more cells has spaces in its last cell.  The table ends at the first blank line.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.split()[:1] == [first_header]]
    assert len(starts) == 1, f"expected one table headed {first_header!r} in:\n{text}"
    header_line = lines[starts[0]]
    headers = header_line.split()
    columns = [m.start() for m in re.finditer(r"\S+", header_line)]
    rows = []
    for line in lines[starts[0] + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        if len(cells) < len(headers):
            bounds = [*columns[1:], len(line) + 1]
            cells = [line[start:end].strip() for start, end in zip(columns, bounds, strict=True)]
        elif len(cells) > len(headers):
            cells = [*cells[: len(headers) - 1], " ".join(cells[len(headers) - 1 :])]
        rows.append(dict(zip(headers, cells, strict=True)))
    return rows


def fields(text: str) -> dict[str, str]:
    """Our ``describe`` header, the ``Key:  value`` lines before the first blank one, by key."""
    found = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        found[key.strip()] = value.strip()
    return found


def assignment(text: str) -> dict[str, tuple[int, ...]]:
    """``t:0,1;u:2`` (Kafka) or ``t:0,1 u:2`` (ours) as {topic: partitions}; ``-`` or "" is none."""
    found: dict[str, tuple[int, ...]] = {}
    for part in re.split(r"[;\s]+", text.strip()):
        if part in ("", "-"):
            continue
        topic, _, partitions = part.rpartition(":")
        found[topic] = tuple(sorted(int(p) for p in partitions.split(",")))
    return found


def number(cell: str) -> int | None:
    """A table's number; Kafka and we both print ``-`` for unknown (-1)."""
    return None if cell == "-" else int(cell)


def configs(text: str) -> dict[str, tuple[str, str]]:
    """kafka-configs' ``  name=value sensitive=... synonyms={SOURCE:name=value, ...}`` lines as
    {name: (value, source of the first synonym)}."""
    pattern = re.compile(r"^\s+(?P<name>[^=\s]+)=(?P<value>.*?) sensitive=\w+ synonyms=\{(?P<synonyms>.*)\}$")
    found = {}
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            source = m["synonyms"].split(":", 1)[0]
            found[m["name"]] = (m["value"], source)
    return found


def kafka_offsets(run: Run, group: str) -> dict[tuple[str, int], tuple[int | None, int | None, int | None]]:
    """``--describe --offsets --verbose``: {(topic, partition): (start offset, lag, leader epoch)}."""
    assert run.rc == 0, run
    return {
        (row["TOPIC"], int(row["PARTITION"])): (
            number(row["START-OFFSET"]),
            number(row["LAG"]),
            number(row["LEADER-EPOCH"]),
        )
        for row in table(run.stdout, "GROUP")
        if row["GROUP"] == group
    }


def our_offsets(run: Run) -> dict[tuple[str, int], tuple[int | None, int | None, int | None]]:
    """``aioshare groups offsets``: the same triples."""
    assert run.rc == 0, run
    return {
        (row["TOPIC"], int(row["PARTITION"])): (
            number(row["START-OFFSET"]),
            number(row["LAG"]),
            number(row["LEADER-EPOCH"]),
        )
        for row in table(run.stdout, "TOPIC")
    }


async def admin_offsets(
    admin: ShareAdmin, group: str
) -> dict[tuple[str, int], tuple[int | None, int | None, int | None]]:
    """ShareAdmin.describe_share_group_offsets: the same triples (-1 as None, as the tables print it)."""
    found = await admin.describe_share_group_offsets(group)
    assert all(info.error is None for info in found.values()), found

    def known(value: int) -> int | None:
        return None if value < 0 else value

    return {
        (tp.topic, tp.partition): (known(i.start_offset), known(i.lag), known(i.leader_epoch))
        for tp, i in found.items()
    }


def probe_offsets(run: Run) -> dict[tuple[str, int], tuple[int | None, int | None, int | None]]:
    """AdminProbe ``offsets`` (Java's listShareGroupOffsets): the same triples."""
    assert run.error is None, run
    found = {}
    for key, info in run.result.items():
        topic, _, partition = key.rpartition(":")
        found[(topic, int(partition))] = (info["start_offset"], info["lag"], info["leader_epoch"])
    return found


def new_offsets(run: Run, first_header: str, column: str) -> dict[int, int]:
    """A reset's table: {partition: new start offset}."""
    assert run.rc == 0, run
    return {int(row["PARTITION"]): int(row[column]) for row in table(run.stdout, first_header)}


def same_message(java: dict[str, Any], mine: BrokerError) -> bool:
    """Java's Admin and ShareAdmin report the broker's error message alike."""
    return bool(java["message"] == mine.message)


def stamp(k: int) -> int:
    """Epoch milliseconds of record ``k`` of a partition."""
    return int((BASE_TIME + timedelta(seconds=k)).timestamp() * 1000)


# ---------------------------------------------------------------------------------- scenarios


async def test_share_group_life_matches_kafka_share_groups(
    kafka: KafkaTarget, kafka_tools: KafkaTools
) -> None:
    """Two members holding a partition each, then none, then no group: every view compared."""
    started = time.monotonic()
    topic = await kafka.new_topic(2)
    # A lock longer than the test: records a member holds unacknowledged must not come back
    # (and move the share state) between Kafka's reading and ours.
    group = await kafka.new_group(**{"share.record.lock.duration.ms": "60000"})
    tag = uuid.uuid4().hex[:6]
    consumers = [
        ShareConsumer(
            topic,
            group_id=group,
            bootstrap_servers=kafka.bootstrap,
            ack_mode="explicit",
            client_id=f"admin-it-{tag}-{i}",
            rack_id="rack-a" if i == 0 else None,
        )
        for i in range(2)
    ]
    try:
        for c in consumers:
            await c.start()

        async def settled() -> bool:
            mine = [c.assignment() for c in consumers]
            return all(mine) and not (mine[0] & mine[1]) and len(mine[0] | mine[1]) == 2

        await wait_for(settled, bool, timeout=JOIN_TIMEOUT, interval=0.1, what="a partition for each member")
        # Produced only now: no member can hold a partition's records it is about to lose.
        await kafka.produce(
            topic,
            [f"r{i}".encode() for i in range(2 * RECORDS_PER_PARTITION)],
            partition=lambda i: i % 2,
            records_per_batch=1,
        )
        accepted: dict[int, set[int]] = {0: set(), 1: set()}
        async with asyncio.timeout(JOIN_TIMEOUT):
            while any(len(done) < ACCEPTED_PER_PARTITION for done in accepted.values()):
                for c in consumers:
                    for msg in await c.getmany(timeout=0.2):
                        # The rest stay acquired and unacknowledged: in flight, not lag.
                        if msg.offset < ACCEPTED_PER_PARTITION:
                            msg.accept()
                            accepted[msg.partition].add(msg.offset)
        for c in consumers:
            assert all(r is None for r in (await c.commit()).values())
        lag_left = RECORDS_PER_PARTITION - ACCEPTED_PER_PARTITION

        async def lag_settled() -> bool:
            found = await admin_offsets(kafka.admin, group)
            return {tp: v[1] for tp, v in found.items()} == {(topic, 0): lag_left, (topic, 1): lag_left}

        await wait_for(
            lag_settled, bool, timeout=20, interval=0.1, what=f"a lag of {lag_left} on both partitions"
        )

        await _compare_listing(kafka, kafka_tools, group, "Stable")
        client_ids = {c.member_id: f"admin-it-{tag}-{i}" for i, c in enumerate(consumers)}
        await _compare_members(kafka, kafka_tools, group, topic, consumers, client_ids)
        await _compare_state(kafka, kafka_tools, group, "Stable", members=2)
        live_offsets = await _compare_offsets(kafka, kafka_tools, group)
        assert {tp: v[1] for tp, v in live_offsets.items()} == {(topic, 0): lag_left, (topic, 1): lag_left}
        # The start offset may trail the accepted records while members hold the next ones.
        assert all(v[0] is not None and v[0] <= ACCEPTED_PER_PARTITION for v in live_offsets.values())
        await _compare_refusals(kafka, kafka_tools, group, topic)
        assert await _compare_offsets(kafka, kafka_tools, group) == live_offsets, (
            "a refused call moved offsets"
        )
        await _compare_standalone_tool(kafka_tools, group)
    finally:
        for c in consumers:
            await c.close()

    async def empty() -> bool:
        found = (await kafka.admin.describe_share_groups([group]))[group]
        return not isinstance(found, BrokerError) and found.state == "Empty"

    await wait_for(empty, bool, timeout=20, interval=0.1, what="the group to be empty")
    await _compare_listing(kafka, kafka_tools, group, "Empty")
    await _compare_state(kafka, kafka_tools, group, "Empty", members=0)
    idle_offsets = await _compare_offsets(kafka, kafka_tools, group)
    # With its members gone, nothing is in flight: the start offset is exactly what was accepted.
    assert idle_offsets == {
        (topic, 0): (ACCEPTED_PER_PARTITION, lag_left, 0),
        (topic, 1): (ACCEPTED_PER_PARTITION, lag_left, 0),
    }
    await _compare_offset_deletion(kafka, kafka_tools, group, topic)
    await _compare_group_deletion(kafka, kafka_tools, group)
    print(
        f"\n{kafka.name}: share-group life compared in {time.monotonic() - started:.1f} s; "
        f"(start offset, lag) with members: {[v[:2] for v in live_offsets.values()]}, "
        f"without: {[v[:2] for v in idle_offsets.values()]}"
    )


async def _compare_listing(kafka: KafkaTarget, tools: KafkaTools, group: str, state: str) -> None:
    """--list, --list --state and --list --state <filter> against ours (CLI and ShareAdmin)."""
    names = await tools.share_groups("--list")
    assert names.rc == 0, names
    assert group in names.stdout.split()
    with_states = await tools.share_groups("--list", "--state")
    kafka_rows = {row["GROUP"]: row["STATE"] for row in table(with_states.stdout, "GROUP")}
    mine = await ours(kafka, "list")
    assert mine.rc == 0, mine
    our_rows = {row["GROUP"]: row["STATE"] for row in table(mine.stdout, "GROUP")}
    assert kafka_rows[group] == our_rows[group] == state
    admin_rows = {g.group_id: g.state for g in await kafka.admin.list_share_groups()}
    assert admin_rows[group] == state
    for wanted in ("Stable", "Empty"):
        filtered = await tools.share_groups("--list", "--state", wanted)
        kafka_has = group in {row["GROUP"] for row in table(filtered.stdout, "GROUP")}
        admin_has = group in {g.group_id for g in await kafka.admin.list_share_groups([wanted])}
        assert kafka_has == admin_has == (wanted == state), (wanted, filtered.stdout)


async def _compare_members(
    kafka: KafkaTarget,
    tools: KafkaTools,
    group: str,
    topic: str,
    consumers: list[ShareConsumer],
    client_ids: dict[str, str],
) -> None:
    """--describe --members --verbose and Admin's member fields against ours."""
    run = await tools.share_groups("--describe", "--group", group, "--members", "--verbose")
    assert run.rc == 0, run
    kafka_members = {
        row["CONSUMER-ID"]: (
            row["CLIENT-ID"],
            row["HOST"],
            int(row["MEMBER-EPOCH"]),
            assignment(row["ASSIGNMENT"]),
        )
        for row in table(run.stdout, "GROUP")
    }
    # #PARTITIONS is the assignment's size.
    for row in table(run.stdout, "GROUP"):
        assert int(row["#PARTITIONS"]) == sum(map(len, assignment(row["ASSIGNMENT"]).values()))
    mine = await ours(kafka, "describe", group)
    assert mine.rc == 0, mine
    cli_members = {
        row["MEMBER-ID"]: (row["CLIENT-ID"], row["HOST"], int(row["EPOCH"]), assignment(row["ASSIGNMENT"]))
        for row in table(mine.stdout, "MEMBER-ID")
    }
    described = (await kafka.admin.describe_share_groups([group]))[group]
    assert not isinstance(described, BrokerError), described
    admin_members = {
        m.member_id: (m.client_id, m.host, m.member_epoch, dict(m.assignment)) for m in described.members
    }
    assert cli_members == kafka_members
    assert admin_members == kafka_members
    # The members are the consumers, holding what they think they hold.
    assert {m: (client, a) for m, (client, _, _, a) in kafka_members.items()} == {
        c.member_id: (client_ids[c.member_id], {topic: tuple(sorted(tp.partition for tp in c.assignment()))})
        for c in consumers
    }
    assert {host for _, host, _, _ in kafka_members.values()} == {"/127.0.0.1"}
    # What the tool does not print: rack ids (Admin), subscriptions and the assignor (neither).
    java = await tools.admin("describe", group)
    assert java.error is None, java
    assert {m["member_id"]: m["rack_id"] for m in java.result["members"]} == {
        m.member_id: m.rack_id for m in described.members
    }
    assert {m.rack_id for m in described.members} == {"rack-a", None}
    assert {m["member_id"]: m["assignment"] for m in java.result["members"]} == {
        m.member_id: {t: list(ps) for t, ps in m.assignment.items()} for m in described.members
    }
    assert all(m.subscriptions == (topic,) for m in described.members)
    assert described.assignor == "simple"  # Kafka's one share-group assignor


async def _compare_state(kafka: KafkaTarget, tools: KafkaTools, group: str, state: str, members: int) -> None:
    """--describe --state --verbose against ours: state, epochs, member count (coordinator: Admin)."""
    run = await tools.share_groups("--describe", "--group", group, "--state", "--verbose")
    assert run.rc == 0, run
    (row,) = table(run.stdout, "GROUP")
    mine = await ours(kafka, "describe", group)
    assert mine.rc == 0, mine
    header = fields(mine.stdout)
    assert (header["State"], header["Group epoch"], header["Assignment epoch"], header["Members"]) == (
        row["STATE"],
        row["GROUP-EPOCH"],
        row["ASSIGNMENT-EPOCH"],
        row["#MEMBERS"],
    )
    assert (row["STATE"], int(row["#MEMBERS"])) == (state, members)
    if members == 0:
        assert f"Share group '{group}' has no active members." in run.stderr
        assert "MEMBER-ID" not in mine.stdout  # no member table follows our header
        bare = await tools.share_groups("--describe", "--group", group, "--members")
        assert bare.stdout.strip() == "", bare
    # The coordinator, which `aioshare groups describe` does not show: the tool and Admin agree
    # on the single broker.
    java = await tools.admin("describe", group)
    coordinator = java.result["coordinator"]
    assert (
        f"{row['COORDINATOR']} {row['(ID)']}"
        == f"{coordinator['host']}:{coordinator['port']} ({coordinator['id']})"
    )
    assert f"{coordinator['host']}:{coordinator['port']}" == kafka.bootstrap


async def _compare_offsets(
    kafka: KafkaTarget, tools: KafkaTools, group: str
) -> dict[tuple[str, int], tuple[int | None, int | None, int | None]]:
    """--describe --offsets --verbose, Admin's listShareGroupOffsets, ShareAdmin and the CLI."""
    kafka_view = kafka_offsets(
        await tools.share_groups("--describe", "--group", group, "--offsets", "--verbose"), group
    )
    java_view = probe_offsets(await tools.admin("offsets", group))
    admin_view = await admin_offsets(kafka.admin, group)
    cli_view = our_offsets(await ours(kafka, "offsets", group))
    assert cli_view == admin_view == java_view == kafka_view
    return kafka_view


async def _compare_refusals(kafka: KafkaTarget, tools: KafkaTools, group: str, topic: str) -> None:
    """Offset and group changes on a group with members: Kafka's refusals against ours."""
    # Reset: the tool refuses by itself, before asking the broker...
    refused = await tools.share_groups(
        "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute"
    )
    assert (refused.rc, refused.stderr.strip()) == (1, f"Share group '{group}' is not empty."), refused
    # ...the broker's own answer, through Admin, is NON_EMPTY_GROUP, and so is ours.
    java = await tools.admin("alter-offsets", group, topic, "0:0")
    assert java.error is not None and java.error["name"] == "NON_EMPTY_GROUP", java
    with pytest.raises(NonEmptyGroupError) as reset_error:
        await kafka.admin.reset_share_group_offsets(group, topic, to="earliest")
    # Same code; Java's Admin puts its own text around the broker's message (4.4) or instead of
    # it (4.2), so the message is compared below, where the tool prints the broker's.
    assert reset_error.value.code == java.error["code"]
    cli = await ours(kafka, "reset", group, "--topic", topic, "--to", "earliest")
    assert cli.rc == refused.rc == 1
    assert f"NON_EMPTY_GROUP (68): {reset_error.value.message}" in cli.stderr, cli

    # Deleting offsets: the tool asks the broker and prints its message (exiting 0).
    tool_delete = await tools.share_groups("--delete-offsets", "--group", group, "--topic", topic)
    java = await tools.admin("delete-offsets", group, topic)
    assert java.error is not None and java.error["name"] == "NON_EMPTY_GROUP", java
    assert tool_delete.rc == 0, tool_delete
    assert f"Error: {java.error['message']}" in tool_delete.stdout
    (status,) = table(tool_delete.stdout, "TOPIC")
    assert status == {"TOPIC": topic, "STATUS": f"Error: {java.error['message']}"}
    with pytest.raises(NonEmptyGroupError) as delete_error:
        await kafka.admin.delete_share_group_offsets(group, [topic])
    assert delete_error.value.code == java.error["code"]
    assert same_message(java.error, delete_error.value)
    assert reset_error.value.message == delete_error.value.message == java.error["message"]

    # Deleting the group: the tool checks the state itself (GroupNotEmptyException, exit 0);
    # DeleteGroups answers NON_EMPTY_GROUP for Admin and for us.
    tool_delete = await tools.share_groups("--delete", "--group", group)
    assert tool_delete.rc == 0, tool_delete
    assert f"GroupNotEmptyException: Share group '{group}' is not EMPTY." in tool_delete.stdout
    java = await tools.admin("delete-groups", group)
    assert java.result[group]["name"] == "NON_EMPTY_GROUP", java
    refused_delete = (await kafka.admin.delete_share_groups([group]))[group]
    assert isinstance(refused_delete, NonEmptyGroupError)
    assert refused_delete.code == java.result[group]["code"]
    cli = await ours(kafka, "delete", group)
    assert cli.rc == 1 and "NON_EMPTY_GROUP" in cli.stderr, cli


async def _compare_standalone_tool(tools: KafkaTools, group: str) -> None:
    """The in-process tool runs print what kafka-share-groups prints from its own JVM."""
    args = ["--describe", "--group", group, "--members", "--verbose"]
    in_process = await tools.share_groups(*args)
    command = java_command(tools.version, SHARE_GROUPS, "--bootstrap-server", tools.bootstrap, *args)
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=CALL_TIMEOUT, check=False
    )
    assert (done.returncode, done.stdout) == (in_process.rc, in_process.stdout)


async def _compare_offset_deletion(kafka: KafkaTarget, tools: KafkaTools, group: str, topic: str) -> None:
    """--delete-offsets on an empty group: a topic without state, then the group's topic."""
    other = await kafka.new_topic(1)
    tool_run = await tools.share_groups("--delete-offsets", "--group", group, "--topic", other)
    java = await tools.admin("delete-offsets", group, other)
    java_error = java.result[other]
    assert java_error is not None, java
    (status,) = table(tool_run.stdout, "TOPIC")
    # The tool prints the broker's message (4.4) or Kafka's text for the error code (4.2).
    assert status["TOPIC"] == other
    assert java_error["name"] == "UNKNOWN_TOPIC_OR_PARTITION"
    assert status["STATUS"] in (
        f"Error: {java_error['message']}",
        "Error: This server does not host this topic-partition.",
    ), status
    found = await kafka.admin.delete_share_group_offsets(group, [topic, other])
    assert found[topic] is None
    other_error = found[other]
    assert isinstance(other_error, BrokerError) and other_error.code == java_error["code"], found
    assert same_message(java_error, other_error)
    # Gone for both: the tool and we say so in our own words.
    gone = await tools.share_groups("--describe", "--group", group, "--offsets")
    assert gone.stdout.strip() == f"Share group '{group}' has no offset information.", gone
    assert probe_offsets(await tools.admin("offsets", group)) == {}
    assert await kafka.admin.describe_share_group_offsets(group) == {}
    cli = await ours(kafka, "offsets", group)
    assert (cli.rc, cli.stdout.strip()) == (0, f"Share group {group!r} has no offsets."), cli


async def _compare_group_deletion(kafka: KafkaTarget, tools: KafkaTools, group: str) -> None:
    """`aioshare groups delete` on the empty group, then every view of a group that is gone."""
    cli = await ours(kafka, "delete", group)
    assert (cli.rc, cli.stdout.strip()) == (0, f"Deleted share group {group!r}."), cli
    names = await tools.share_groups("--list")
    assert group not in names.stdout.split()
    java = await tools.admin("describe", group)
    assert java.error is not None and java.error["name"] == "GROUP_ID_NOT_FOUND", java
    tool_describe = await tools.share_groups("--describe", "--group", group, "--state")
    assert f"GroupIdNotFoundException: {java.error['message']}" in tool_describe.stdout, tool_describe
    found = (await kafka.admin.describe_share_groups([group]))[group]
    assert isinstance(found, GroupIdNotFoundError) and found.code == java.error["code"]
    assert same_message(java.error, found)
    for subcommand, option in (("describe", "--state"), ("offsets", "--offsets")):
        # kafka-share-groups describes the group first for --offsets too: "not found" for both.
        tool_run = await tools.share_groups("--describe", "--group", group, option)
        assert "GroupIdNotFoundException" in tool_run.stdout, tool_run
        cli = await ours(kafka, subcommand, group)
        assert cli.rc == 1 and "GROUP_ID_NOT_FOUND" in cli.stderr, (subcommand, cli)
    # DescribeShareGroupOffsets itself has no error for a group that is gone, for Java's Admin either.
    assert probe_offsets(await tools.admin("offsets", group)) == {}
    assert await kafka.admin.describe_share_group_offsets(group) == {}
    java = await tools.admin("delete-groups", group)
    assert java.result[group]["name"] == "GROUP_ID_NOT_FOUND", java
    again = (await kafka.admin.delete_share_groups([group]))[group]
    assert isinstance(again, GroupIdNotFoundError) and again.code == java.result[group]["code"]
    # The tool looks the group up itself (IllegalArgumentException in 4.2, GroupIdNotFoundException
    # in 4.4), exiting 0.
    tool_delete = await tools.share_groups("--delete", "--group", group)
    assert tool_delete.rc == 0, tool_delete
    assert f"Exception: Group '{group}' is not a share group." in tool_delete.stdout, tool_delete


async def test_offset_resets_match_kafka_share_groups(kafka: KafkaTarget, kafka_tools: KafkaTools) -> None:
    """--reset-offsets (earliest, latest, datetime, offset) executed by one side, read by the other."""
    tools = kafka_tools
    # The records carry 2024 timestamps: under the default retention (7 days) Kafka deletes them
    # at its next retention check (every 5 minutes), which once fell inside this test (log start
    # 10, and a reset to offset 2 moved to it).
    topic = await kafka.new_topic(2, config={"retention.ms": "-1"})
    await kafka.produce(
        topic,
        [f"r{i}".encode() for i in range(2 * RECORDS_PER_PARTITION)],
        partition=lambda i: i % 2,
        timestamp=lambda i: stamp(i // 2),
    )
    group = await kafka.new_group()
    n = RECORDS_PER_PARTITION

    async def same_offsets(expected: dict[int, tuple[int, int | None]]) -> None:
        """Kafka, Java's Admin, ShareAdmin and the CLI all read {partition: (start, lag)}."""
        views = await _compare_offsets(kafka, tools, group)
        assert {tp[1]: v[:2] for tp, v in views.items()} == expected

    def reset_args(*spec: str, execute: bool = False) -> list[str]:
        return ["--reset-offsets", "--group", group, *spec, "--execute" if execute else "--dry-run"]

    # Kafka's tool on an id that is not a group yet: it becomes an empty share group.
    run = await tools.share_groups(*reset_args("--topic", topic, "--to-latest", execute=True))
    assert new_offsets(run, "GROUP", "NEW-OFFSET") == {0: n, 1: n}
    await _compare_state(kafka, tools, group, "Empty", members=0)
    await same_offsets({0: (n, 0), 1: (n, 0)})

    # Ours executes, Kafka's dry run says what it would have set, and both read the result.
    async def ours_then_kafka(our_to: list[str], kafka_spec: list[str], expected: dict[int, int]) -> Run:
        mine = await ours(kafka, "reset", group, "--topic", topic, *our_to)
        assert new_offsets(mine, "TOPIC", "NEW-START-OFFSET") == expected
        dry = await tools.share_groups(*reset_args(*kafka_spec))
        assert new_offsets(dry, "GROUP", "NEW-OFFSET") == expected
        return mine

    await ours_then_kafka(["--to", "earliest"], ["--topic", topic, "--to-earliest"], {0: 0, 1: 0})
    await same_offsets({0: (0, n), 1: (0, n)})
    # The first record at or after 3.5 s is record 4 on each partition; after the last, there is
    # none (-1 from Java's Admin), and ShareAdmin.list_offsets gives the log end, as resets use it.
    at = BASE_TIME + timedelta(seconds=3.5)
    after = BASE_TIME + timedelta(seconds=RECORDS_PER_PARTITION)
    for moment, java_expected, ours_expected in ((at, 4, 4), (after, -1, n)):
        java = await tools.admin("list-offsets", topic, str(int(moment.timestamp() * 1000)))
        assert java.result == {"0": java_expected, "1": java_expected}, java
        assert await kafka.admin.list_offsets(topic, moment) == {0: ours_expected, 1: ours_expected}
    for end, edge in (("earliest", 0), ("latest", n)):
        java = await tools.admin("list-offsets", topic, end)
        assert java.result == {"0": edge, "1": edge}, java
        assert await kafka.admin.list_offsets(topic, end) == {0: edge, 1: edge}  # type: ignore[arg-type]
    await ours_then_kafka(
        ["--to", at.isoformat()], ["--topic", topic, "--to-datetime", _kafka_time(at)], {0: 4, 1: 4}
    )
    await same_offsets({0: (4, n - 4), 1: (4, n - 4)})

    # Kafka executes on one partition, by time; we read.
    run = await tools.share_groups(
        *reset_args(
            "--topic",
            f"{topic}:1",
            "--to-datetime",
            _kafka_time(BASE_TIME + timedelta(seconds=7)),
            execute=True,
        )
    )
    assert new_offsets(run, "GROUP", "NEW-OFFSET") == {1: 7}
    await same_offsets({0: (4, n - 4), 1: (7, n - 7)})

    # A time after the last record: the log end, with a warning from Kafka.
    future = datetime(2099, 1, 1, tzinfo=UTC)
    await ours_then_kafka(
        ["--to", future.isoformat()], ["--topic", topic, "--to-datetime", _kafka_time(future)], {0: n, 1: n}
    )
    dry = await tools.share_groups(*reset_args("--topic", topic, "--to-datetime", _kafka_time(future)))
    assert (
        f"Warn: Partition 0 from topic {topic} is empty. Falling back to latest known offset." in dry.stdout
    )
    await same_offsets({0: (n, 0), 1: (n, 0)})

    # Explicit offsets: --to-offset arrived in kafka-share-groups 4.3.
    usage = await tools.share_groups("--help")
    has_to_offset = "--to-offset" in usage.stdout + usage.stderr
    for offset, partitions, expected in ((2, ["0"], {0: 2}), (1000, [], {0: n, 1: n})):
        our_to = ["--to", str(offset), *(a for p in partitions for a in ("--partition", p))]
        scope = f"{topic}:{','.join(partitions)}" if partitions else topic
        if has_to_offset:
            mine = await ours_then_kafka(our_to, ["--topic", scope, "--to-offset", str(offset)], expected)
        else:
            mine = await ours(kafka, "reset", group, "--topic", topic, *our_to)
            assert new_offsets(mine, "TOPIC", "NEW-START-OFFSET") == expected
        if offset > n:
            # Moved to the log end, as Kafka's tool does (it logs a WARN), and said so.
            assert f"offset {offset} is past the log end of {topic}-0: using {n}." in mine.stderr, mine
    await same_offsets({0: (n, 0), 1: (n, 0)})

    # Kafka executes --to-earliest on partition 0 and, where it has it, --to-offset on 1; we read.
    run = await tools.share_groups(*reset_args("--topic", f"{topic}:0", "--to-earliest", execute=True))
    assert new_offsets(run, "GROUP", "NEW-OFFSET") == {0: 0}
    if has_to_offset:
        run = await tools.share_groups(*reset_args("--topic", f"{topic}:1", "--to-offset", "3", execute=True))
        assert new_offsets(run, "GROUP", "NEW-OFFSET") == {1: 3}
    await same_offsets({0: (0, n), 1: (3, n - 3) if has_to_offset else (n, 0)})

    # Past the log end through the APIs, which send what they are given (Java's Admin too): the
    # broker takes it and no longer knows the lag.
    java = await tools.admin("alter-offsets", group, topic, "1:1000")
    assert java.error is None, java
    assert await kafka.admin.reset_share_group_offsets(group, topic, to={0: 1000}) == {0: 1000}
    await same_offsets({0: (1000, None), 1: (1000, None)})

    # An unknown partition: the tool refuses before asking, we report the broker's error.
    bad = await tools.share_groups(*reset_args("--topic", f"{topic}:5", "--to-earliest"))
    assert f'UnknownTopicOrPartitionException: The partitions "{topic}-5" do not exist' in bad.stderr, bad
    mine = await ours(kafka, "reset", group, "--topic", topic, "--to", "earliest", "--partition", "5")
    assert mine.rc == 1 and f"{topic}-5: UNKNOWN_TOPIC_OR_PARTITION" in mine.stderr, mine
    await same_offsets({0: (1000, None), 1: (1000, None)})


def _kafka_time(moment: datetime) -> str:
    """kafka-share-groups' --to-datetime format, in UTC: YYYY-MM-DDThh:mm:ss.sssZ."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def test_group_configs_match_kafka_configs(kafka: KafkaTarget, kafka_tools: KafkaTools) -> None:
    """kafka-configs --entity-type groups against ShareAdmin's config calls and `aioshare groups config`."""
    tools = kafka_tools
    group = await kafka.new_group()  # sets share.auto.offset.reset=earliest
    entity = ["--entity-type", "groups", "--entity-name", group]

    async def same_configs() -> dict[str, tuple[str, str]]:
        """Every config, value and source, as kafka-configs --all, ShareAdmin and the CLI show it."""
        everything = await tools.configs(*entity, "--describe", "--all")
        assert everything.rc == 0, everything
        assert f"All configs for group {group} are:" in everything.stdout
        kafka_view = configs(everything.stdout)
        entries = await kafka.admin.describe_group_config(group)
        admin_view = {
            e.name: ("" if e.value is None else e.value, JAVA_CONFIG_SOURCE.get(e.source.name, e.source.name))
            for e in entries.values()
        }
        mine = await ours(kafka, "config", group)
        assert mine.rc == 0, mine
        cli_view = {
            row["NAME"]: (row["VALUE"], JAVA_CONFIG_SOURCE.get(row["SOURCE"], row["SOURCE"]))
            for row in table(mine.stdout, "NAME")
        }
        assert cli_view == admin_view == kafka_view
        # Without --all, kafka-configs shows the group's own settings: ours with source GROUP_CONFIG.
        dynamic = await tools.configs(*entity, "--describe")
        assert dynamic.rc == 0, dynamic
        assert configs(dynamic.stdout) == {
            name: v for name, v in kafka_view.items() if v[1] == "DYNAMIC_GROUP_CONFIG"
        }
        return kafka_view

    view = await same_configs()
    assert view["share.auto.offset.reset"] == ("earliest", "DYNAMIC_GROUP_CONFIG")

    # Set by us, read by Kafka.
    mine = await ours(
        kafka,
        "config",
        group,
        "--set",
        "share.record.lock.duration.ms=15000",
        "--set",
        "share.isolation.level=read_committed",
    )
    assert mine.rc == 0, mine
    view = await same_configs()
    assert view["share.record.lock.duration.ms"] == ("15000", "DYNAMIC_GROUP_CONFIG")
    assert view["share.isolation.level"] == ("read_committed", "DYNAMIC_GROUP_CONFIG")

    # Set and deleted by Kafka, read by us.
    run = await tools.configs(
        *entity,
        "--alter",
        "--add-config",
        "share.session.timeout.ms=20000",
        "--delete-config",
        "share.isolation.level",
    )
    assert run.rc == 0, run
    view = await same_configs()
    assert view["share.session.timeout.ms"] == ("20000", "DYNAMIC_GROUP_CONFIG")
    assert view["share.isolation.level"][1] != "DYNAMIC_GROUP_CONFIG"

    # Deleted by us (ShareAdmin and the CLI), read by Kafka.
    await kafka.admin.alter_group_config(group, delete=["share.session.timeout.ms"])
    mine = await ours(kafka, "config", group, "--delete", "share.record.lock.duration.ms")
    assert mine.rc == 0, mine
    view = await same_configs()
    assert {name for name, v in view.items() if v[1] == "DYNAMIC_GROUP_CONFIG"} == {"share.auto.offset.reset"}

    # A value out of bounds: the broker's message, word for word, on both sides.
    run = await tools.configs(*entity, "--alter", "--add-config", "share.record.lock.duration.ms=10")
    assert run.rc == 1, run
    message = "Invalid value 10 for configuration share.record.lock.duration.ms: Value must be at least 1000"
    assert f"InvalidConfigurationException: {message}" in run.stderr, run
    mine = await ours(kafka, "config", group, "--set", "share.record.lock.duration.ms=10")
    assert mine.rc == 1 and f"INVALID_CONFIG (40): {message}" in mine.stderr, mine
    assert (await same_configs())["share.record.lock.duration.ms"][1] != "DYNAMIC_GROUP_CONFIG"


async def test_finalized_features_name_what_the_cluster_can_do(kafka: KafkaTarget) -> None:
    """share.version as the launcher formats each release (4.2.2: 1; 4.4.0: 2, the level with
    KIP-1191's dead-letter queue), read through ShareAdmin - and the embedded broker emulating
    the same release reports the same."""
    features = await kafka.admin.finalized_features()
    expected = 2 if kafka.version.startswith("4.4") else 1
    assert features["share.version"] == expected
    assert features["metadata.version"] > 0
    async with (
        EmbeddedBroker(kafka_version=kafka.version) as broker,
        ShareAdmin(broker.bootstrap_servers) as admin,
    ):
        emulated = await admin.finalized_features()
    assert emulated["share.version"] == expected
    assert emulated["metadata.version"] == features["metadata.version"]
