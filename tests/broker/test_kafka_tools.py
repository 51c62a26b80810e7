"""Kafka's own command-line tools against EmbeddedBroker: kafka-share-groups.sh
(``ShareGroupCommand``), kafka-console-share-consumer.sh (``ConsoleShareConsumer``) and
kafka-share-consumer-perf-test.sh (``ShareConsumerPerformance``), from kafka-tools 4.4.0
(and 4.2.2 where noted), run as the scripts run them: ``java -cp <Kafka's jars> <main class>``.

Their printed tables are parsed and compared with what Kafka itself would print for the same
group.  A live group for ``--describe`` comes from ``tests/java/ShareDriver.java``: two
KafkaShareConsumers polling in a background JVM while the tools run.

Differences from real Kafka found here (each one a failing test below; every other table and
message printed here is what Kafka prints):

* ``--reset-offsets --all-topics`` of a group that does not exist yet: Kafka resets nothing and
  prints nothing, as for an existing group without offsets (DescribeShareGroupOffsets with every
  topic answers an unknown group with no topics and no error); our broker answers
  GROUP_ID_NOT_FOUND, so the tool prints "Error: Executing share group command failed due to The
  group id does not exist." and the Admin client logs an ERROR
  (test_reset_all_topics_of_an_unknown_group_resets_nothing).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import subprocess
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from aioshare.testing.broker import ThreadedBroker
from aioshare.testing.kafka import TESTED_KAFKA_VERSIONS
from aioshare.testing.kafka.java import java_command
from aioshare.testing.kafka.requirement import require

from .test_java_share_consumer import BackgroundRun, DriverRun, text_of

pytestmark = pytest.mark.interop

LATEST = TESTED_KAFKA_VERSIONS[-1]
TOOL_TIMEOUT = 60.0
SHARE_GROUPS = "org.apache.kafka.tools.consumer.group.ShareGroupCommand"
CONSOLE = "org.apache.kafka.tools.consumer.ConsoleShareConsumer"
PERF = "org.apache.kafka.tools.ShareConsumerPerformance"
NODES = 3

LIVE_GROUP = "tools-live"
LIVE_TOPIC = "tools-live"
LIVE_PARTITIONS = 2
LIVE_RECORDS = 8  # per partition


class Done(NamedTuple):
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture(scope="module")
def broker() -> Iterator[ThreadedBroker]:
    require(lambda: [java_command(version, SHARE_GROUPS) for version in TESTED_KAFKA_VERSIONS])
    with ThreadedBroker(nodes=NODES) as running:
        yield running


def run_tool(main: str, *args: str, version: str = LATEST, timeout: float = TOOL_TIMEOUT) -> Done:
    command = java_command(version, main, *args)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{main} {' '.join(args)} ran over {timeout:.0f} s; stdout so far:\n{text_of(exc.stdout)}"
        )
    return Done(args, done.returncode, done.stdout, done.stderr)


def share_groups(broker: ThreadedBroker, *args: str, version: str = LATEST) -> Done:
    return run_tool(SHARE_GROUPS, "--bootstrap-server", broker.bootstrap_servers, *args, version=version)


def tables(text: str) -> list[dict[str, str]]:
    """Rows of the tool's fixed-width tables (header GROUP... or TOPIC...), cut at the header's
    column starts (a value may fill its column: 'CONSUMER-ID' ids touch the HOST column)."""
    rows: list[dict[str, str]] = []
    columns: list[tuple[str, int]] | None = None
    for line in text.splitlines():
        if not line.strip():
            columns = None
        elif re.match(r"(GROUP|TOPIC)\s", line):
            columns, position = [], 0
            for name in re.split(r"\s{2,}", line.strip()):
                position = line.index(name, position)
                columns.append((name, position))
                position += len(name)
        elif columns is not None:
            bounds = [start for _name, start in columns[1:]] + [len(line)]
            rows.append(
                {name: line[start:end].strip() for (name, start), end in zip(columns, bounds, strict=True)}
            )
    return rows


def produce(broker: ThreadedBroker, topic: str, partitions: int, per_partition: int) -> list[str]:
    values = [f"{topic}/{p}/{i}" for p in range(partitions) for i in range(per_partition)]

    async def setup() -> None:
        await broker.create_topic(topic, partitions)
        for p in range(partitions):
            await broker.produce(topic, values[p * per_partition : (p + 1) * per_partition], partition=p)

    asyncio.run(setup())
    return values


def earliest(broker: ThreadedBroker, group: str) -> None:
    asyncio.run(broker.set_group_config(group, {"share.auto.offset.reset": "earliest"}))


def assert_caught_up(table: dict[tuple[str, int], tuple[int, int]], ends: dict[tuple[str, int], int]) -> None:
    """Lag 0 everywhere; the start offset is the one of the previous state write, as on Kafka
    (docs/embedded-broker.md), so it is only known to lie in 0..end."""
    assert {key: lag for key, (_start, lag) in table.items()} == dict.fromkeys(ends, 0)
    assert all(0 <= table[key][0] <= end for key, end in ends.items()), table


def offsets_table(done: Done) -> dict[tuple[str, int], tuple[int, int]]:
    """--describe --offsets: (topic, partition) -> (START-OFFSET, LAG)."""
    return {
        (row["TOPIC"], int(row["PARTITION"])): (int(row["START-OFFSET"]), int(row["LAG"]))
        for row in tables(done.stdout)
    }


# ------------------------------------------------------------------------------ consumers


@pytest.mark.parametrize("version", TESTED_KAFKA_VERSIONS)
def test_console_share_consumer_prints_every_value(broker: ThreadedBroker, version: str) -> None:
    topic = group = f"console-{version.replace('.', '')}"
    values = produce(broker, topic, 2, 15)
    earliest(broker, group)
    done = run_tool(
        CONSOLE,
        *("--bootstrap-server", broker.bootstrap_servers, "--topic", topic, "--group", group),
        *("--max-messages", "30", "--timeout-ms", "30000"),
        version=version,
    )
    assert done.returncode == 0, done.output
    assert sorted(done.stdout.splitlines()) == sorted(values)
    assert "Processed a total of 30 messages" in done.stderr
    # Implicit acknowledgement: everything it printed was accepted when it closed.
    described = share_groups(broker, "--describe", "--group", group, "--offsets", version=version)
    assert_caught_up(offsets_table(described), {(topic, 0): 15, (topic, 1): 15})


def test_console_share_consumer_rejects(broker: ThreadedBroker) -> None:
    topic = group = "console-reject"
    values = produce(broker, topic, 1, 10)
    earliest(broker, group)
    done = run_tool(
        CONSOLE,
        *("--bootstrap-server", broker.bootstrap_servers, "--topic", topic, "--group", group),
        *("--max-messages", "10", "--timeout-ms", "30000", "--reject"),
    )
    assert done.returncode == 0, done.output
    assert done.stdout.splitlines() == values
    # Rejected records are archived: the start offset moves past them, nothing is left to deliver.
    assert_caught_up(
        offsets_table(share_groups(broker, "--describe", "--group", group, "--offsets")), {(topic, 0): 10}
    )
    again = run_tool(
        CONSOLE,
        *("--bootstrap-server", broker.bootstrap_servers, "--topic", topic, "--group", group),
        *("--max-messages", "1", "--timeout-ms", "2000"),
    )
    assert again.stdout == ""
    assert "Processed a total of 0 messages" in again.stderr


def test_share_consumer_performance_consumes_every_record(broker: ThreadedBroker) -> None:
    topic = group = "perf"
    produce(broker, topic, 3, 1000)
    earliest(broker, group)
    done = run_tool(
        PERF,
        *("--bootstrap-server", broker.bootstrap_servers, "--topic", topic, "--group", group),
        *("--num-records", "3000", "--threads", "2", "--timeout", "30000", "--show-consumer-stats"),
    )
    assert done.returncode == 0, done.output
    lines = done.stdout.splitlines()
    header = [name.strip() for name in lines[0].split(",")]
    assert header[:7] == [
        "start.time",
        "end.time",
        "data.consumed.in.MB",
        "MB.sec",
        "nMsg.sec",
        "data.consumed.in.nMsg",
        "fetch.time.ms",
    ]
    # The last line is the total over both consumers; the others end with each consumer's figures.
    total = dict(zip(header, (v.strip() for v in next(csv.reader(io.StringIO(lines[-1])))), strict=True))
    assert int(total["data.consumed.in.nMsg"]) == 3000
    per_consumer = [line for line in lines[1:-1] if line.startswith("Share consumer")]
    assert len(per_consumer) == 2
    assert sum(int(line.split(",")[-2]) for line in per_consumer) == 3000
    # Every record consumed once: each share-partition's start offset is at its end, no lag.
    described = share_groups(broker, "--describe", "--group", group, "--offsets")
    assert_caught_up(offsets_table(described), {(topic, p): 1000 for p in range(3)})


# ------------------------------------------------------------------------------ kafka-share-groups.sh


def live_group(broker: ThreadedBroker) -> BackgroundRun:
    """Two KafkaShareConsumers in a background JVM, members of LIVE_GROUP until `finish`."""
    run = DriverRun(LATEST)
    run.add("config", "admin-alter-config", {"set.share.auto.offset.reset": "earliest"}, group=LIVE_GROUP)
    run.add("consume", "consume", topic=LIVE_TOPIC, group=LIVE_GROUP, records=LIVE_PARTITIONS * LIVE_RECORDS)
    run.add("m1", "member", topic=LIVE_TOPIC, group=LIVE_GROUP, client="tools-m1")
    run.add("m2", "member", topic=LIVE_TOPIC, group=LIVE_GROUP, client="tools-m2")
    run.add("settled", "admin-describe", group=LIVE_GROUP, members=2)
    run.add("wait", "await-stdin")
    run.add("stop", "stop-members")
    return BackgroundRun(run, broker.bootstrap_servers)


@pytest.fixture(scope="module")
def share_group_outputs(broker: ThreadedBroker) -> dict[str, Done]:
    """kafka-share-groups.sh on LIVE_GROUP: first with two live members, then empty, through
    offset resets, offset deletion and the group's deletion.  Each output by name."""
    produce(broker, LIVE_TOPIC, LIVE_PARTITIONS, LIVE_RECORDS)
    out: dict[str, Done] = {}
    group = ("--group", LIVE_GROUP)
    live = live_group(broker)
    try:
        live.wait_for("waiting")
        out["list"] = share_groups(broker, "--list")
        out["list-state"] = share_groups(broker, "--list", "--state")
        out["list-stable"] = share_groups(broker, "--list", "--state", "Stable")
        out["list-empty"] = share_groups(broker, "--list", "--state", "Empty")
        for version in TESTED_KAFKA_VERSIONS:
            out[f"members-{version}"] = share_groups(
                broker, "--describe", *group, "--members", version=version
            )
            out[f"state-verbose-{version}"] = share_groups(
                broker, "--describe", *group, "--state", "--verbose", version=version
            )
        out["members-verbose"] = share_groups(broker, "--describe", *group, "--members", "--verbose")
        out["state"] = share_groups(broker, "--describe", *group, "--state")
        out["offsets-live"] = share_groups(broker, "--describe", *group, "--offsets")
        out["offsets-live-verbose"] = share_groups(broker, "--describe", *group, "--offsets", "--verbose")
        out["reset-live"] = share_groups(
            broker, "--reset-offsets", *group, "--topic", LIVE_TOPIC, "--to-earliest", "--execute"
        )
        out["delete-live"] = share_groups(broker, "--delete", *group)
        out["delete-offsets-live"] = share_groups(broker, "--delete-offsets", *group, "--topic", LIVE_TOPIC)
        for step in live.finish().values():
            step.check()
    finally:
        live.kill()
    topic = ("--topic", LIVE_TOPIC)
    out["state-empty"] = share_groups(broker, "--describe", *group, "--state")
    out["dry-run"] = share_groups(broker, "--reset-offsets", *group, *topic, "--to-earliest", "--dry-run")
    out["after-dry-run"] = share_groups(broker, "--describe", *group, "--offsets")
    out["to-earliest"] = share_groups(broker, "--reset-offsets", *group, *topic, "--to-earliest", "--execute")
    out["after-earliest"] = share_groups(broker, "--describe", *group, "--offsets")
    out["to-latest-p1"] = share_groups(
        broker, "--reset-offsets", *group, "--topic", f"{LIVE_TOPIC}:1", "--to-latest", "--execute"
    )
    out["after-latest-p1"] = share_groups(broker, "--describe", *group, "--offsets")
    out["to-offset"] = share_groups(
        broker, "--reset-offsets", *group, "--all-topics", "--to-offset", "3", "--execute"
    )
    out["after-offset"] = share_groups(broker, "--describe", *group, "--offsets", "--verbose")
    out["to-datetime"] = share_groups(
        broker, "--reset-offsets", *group, *topic, "--to-datetime", "2020-01-01T00:00:00.000", "--execute"
    )
    out["after-datetime"] = share_groups(broker, "--describe", *group, "--offsets")
    out["delete-offsets"] = share_groups(broker, "--delete-offsets", *group, *topic)
    out["after-delete-offsets"] = share_groups(broker, "--describe", *group, "--offsets")
    out["reset-all-no-offsets"] = share_groups(
        broker, "--reset-offsets", *group, "--all-topics", "--to-earliest", "--execute"
    )
    out["delete"] = share_groups(broker, "--delete", *group)
    out["list-after-delete"] = share_groups(broker, "--list")
    out["describe-deleted"] = share_groups(broker, "--describe", *group, "--state")
    return out


def test_list_share_groups(share_group_outputs: dict[str, Done]) -> None:
    assert LIVE_GROUP in share_group_outputs["list"].stdout.splitlines()
    states = {row["GROUP"]: row["STATE"] for row in tables(share_group_outputs["list-state"].stdout)}
    assert states[LIVE_GROUP] == "Stable"
    assert [row["GROUP"] for row in tables(share_group_outputs["list-stable"].stdout)] == [LIVE_GROUP]
    assert LIVE_GROUP not in {row["GROUP"] for row in tables(share_group_outputs["list-empty"].stdout)}


@pytest.mark.parametrize("version", TESTED_KAFKA_VERSIONS)
def test_describe_members_of_a_live_group(share_group_outputs: dict[str, Done], version: str) -> None:
    done = share_group_outputs[f"members-{version}"]
    assert done.returncode == 0, done.output
    rows = tables(done.stdout)
    assert sorted(row["CLIENT-ID"] for row in rows) == ["tools-m1", "tools-m2"]
    assert {row["GROUP"] for row in rows} == {LIVE_GROUP}
    assert {row["HOST"] for row in rows} == {"/127.0.0.1"}
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", row["CONSUMER-ID"]) for row in rows)
    # Two partitions, two members: one each ("topic:partition,...").
    assert [row["#PARTITIONS"] for row in rows] == ["1", "1"]
    assert sorted(row["ASSIGNMENT"] for row in rows) == [f"{LIVE_TOPIC}:0", f"{LIVE_TOPIC}:1"]


def test_describe_members_verbose(share_group_outputs: dict[str, Done]) -> None:
    rows = tables(share_group_outputs["members-verbose"].stdout)
    epochs = {int(row["MEMBER-EPOCH"]) for row in rows}
    state = tables(share_group_outputs[f"state-verbose-{LATEST}"].stdout)[0]
    # Settled: every member at the target assignment epoch, which is the group epoch.
    assert epochs == {int(state["ASSIGNMENT-EPOCH"])} == {int(state["GROUP-EPOCH"])}


@pytest.mark.parametrize("version", TESTED_KAFKA_VERSIONS)
def test_describe_state(broker: ThreadedBroker, share_group_outputs: dict[str, Done], version: str) -> None:
    [row] = tables(share_group_outputs[f"state-verbose-{version}"].stdout)
    assert (row["GROUP"], row["STATE"], row["#MEMBERS"]) == (LIVE_GROUP, "Stable", "2")
    # The group epoch goes up when a member joins or leaves: the consuming member joined (1) and
    # left (2), the two live ones joined (3, 4); the assignment was computed at 4.
    assert (row["GROUP-EPOCH"], row["ASSIGNMENT-EPOCH"]) == ("4", "4")
    coordinator = re.fullmatch(r"127\.0\.0\.1:(\d+)\s+\((\d)\)", row["COORDINATOR (ID)"])
    assert coordinator is not None, row
    port, node = coordinator.groups()
    assert broker.bootstrap_servers.split(",")[int(node) - 1] == f"127.0.0.1:{port}"
    [plain] = tables(share_group_outputs["state"].stdout)
    assert plain == {key: row[key] for key in ("GROUP", "COORDINATOR (ID)", "STATE", "#MEMBERS")}


def test_describe_offsets(share_group_outputs: dict[str, Done]) -> None:
    live = offsets_table(share_group_outputs["offsets-live"])
    assert_caught_up(live, {(LIVE_TOPIC, p): LIVE_RECORDS for p in range(LIVE_PARTITIONS)})
    verbose = tables(share_group_outputs["offsets-live-verbose"].stdout)
    assert {row["LEADER-EPOCH"] for row in verbose} == {"0"}
    assert {(row["TOPIC"], int(row["PARTITION"])): int(row["START-OFFSET"]) for row in verbose} == {
        key: start for key, (start, _lag) in live.items()
    }


def test_changes_to_a_live_group_are_refused(share_group_outputs: dict[str, Done]) -> None:
    reset = share_group_outputs["reset-live"]
    assert reset.returncode == 1 and f"Share group '{LIVE_GROUP}' is not empty." in reset.output
    delete = share_group_outputs["delete-live"]
    assert f"Share group '{LIVE_GROUP}' is not EMPTY." in delete.stdout  # the tool's own check (ListGroups)
    delete_offsets = share_group_outputs["delete-offsets-live"]
    assert "Error: The group is not empty." in delete_offsets.stdout  # NON_EMPTY_GROUP from the broker
    assert share_group_outputs["offsets-live"].stdout  # still there


def test_reset_offsets_of_an_empty_group(share_group_outputs: dict[str, Done]) -> None:
    out = share_group_outputs
    [row] = tables(out["state-empty"].stdout)
    assert (row["STATE"], row["#MEMBERS"]) == ("Empty", "0")
    assert f"Share group '{LIVE_GROUP}' has no active members." in out["state-empty"].stderr

    def new_offsets(done: Done) -> dict[tuple[str, int], int]:
        assert done.returncode == 0, done.output
        return {(r["TOPIC"], int(r["PARTITION"])): int(r["NEW-OFFSET"]) for r in tables(done.stdout)}

    partitions = [(LIVE_TOPIC, p) for p in range(LIVE_PARTITIONS)]
    assert new_offsets(out["dry-run"]) == dict.fromkeys(partitions, 0)
    # A dry run changes nothing.
    assert_caught_up(offsets_table(out["after-dry-run"]), dict.fromkeys(partitions, LIVE_RECORDS))
    assert new_offsets(out["to-earliest"]) == dict.fromkeys(partitions, 0)
    assert offsets_table(out["after-earliest"]) == dict.fromkeys(partitions, (0, LIVE_RECORDS))
    assert new_offsets(out["to-latest-p1"]) == {(LIVE_TOPIC, 1): LIVE_RECORDS}
    assert offsets_table(out["after-latest-p1"]) == {
        (LIVE_TOPIC, 0): (0, LIVE_RECORDS),
        (LIVE_TOPIC, 1): (LIVE_RECORDS, 0),
    }
    assert new_offsets(out["to-offset"]) == dict.fromkeys(partitions, 3)
    verbose = {
        (r["TOPIC"], int(r["PARTITION"])): (r["LEADER-EPOCH"], r["START-OFFSET"], r["LAG"])
        for r in tables(out["after-offset"].stdout)
    }
    assert verbose == dict.fromkeys(partitions, ("0", "3", str(LIVE_RECORDS - 3)))
    # The records were produced just now: the earliest offset at or after 2020 is 0.
    assert new_offsets(out["to-datetime"]) == dict.fromkeys(partitions, 0)
    assert offsets_table(out["after-datetime"]) == dict.fromkeys(partitions, (0, LIVE_RECORDS))


def test_delete_offsets_and_the_group(share_group_outputs: dict[str, Done]) -> None:
    out = share_group_outputs
    assert {(r["TOPIC"], r["STATUS"]) for r in tables(out["delete-offsets"].stdout)} == {
        (LIVE_TOPIC, "Successful")
    }
    assert f"Share group '{LIVE_GROUP}' has no offset information." in out["after-delete-offsets"].stdout
    # --all-topics of a group without offsets: nothing to reset, quietly.
    nothing = out["reset-all-no-offsets"]
    assert nothing.returncode == 0 and nothing.output.strip() == "", nothing.output
    assert f"Deletion of requested share groups ('{LIVE_GROUP}') was successful." in out["delete"].stdout
    assert LIVE_GROUP not in out["list-after-delete"].stdout.splitlines()
    # ShareGroupDescribe: GROUP_ID_NOT_FOUND with Kafka's message.
    assert f"GroupIdNotFoundException: Group {LIVE_GROUP} not found." in out["describe-deleted"].stdout


def test_reset_offsets_creates_a_new_group(broker: ThreadedBroker) -> None:
    """AlterShareGroupOffsets creates the group it names (getOrMaybeCreateShareGroup)."""
    topic = "tools-new-group"
    produce(broker, topic, 2, 5)
    done = share_groups(
        broker, "--reset-offsets", "--group", "tools-new", "--topic", topic, "--to-offset", "2", "--execute"
    )
    assert done.returncode == 0, done.output
    assert {(r["TOPIC"], int(r["PARTITION"]), r["NEW-OFFSET"]) for r in tables(done.stdout)} == {
        (topic, 0, "2"),
        (topic, 1, "2"),
    }
    described = share_groups(broker, "--describe", "--group", "tools-new", "--offsets")
    assert offsets_table(described) == {(topic, 0): (2, 3), (topic, 1): (2, 3)}
    state = share_groups(broker, "--describe", "--group", "tools-new", "--state")
    assert tables(state.stdout)[0]["STATE"] == "Empty"


def test_reset_all_topics_of_an_unknown_group_resets_nothing(broker: ThreadedBroker) -> None:
    """``--all-topics`` asks listShareGroupOffsets which partitions the group has: for a group
    that does not exist Kafka answers "none" (no error), and the tool resets nothing."""
    done = share_groups(
        broker, "--reset-offsets", "--group", "tools-nobody", "--all-topics", "--to-earliest", "--execute"
    )
    # As for an existing group without offsets (test_delete_offsets_and_the_group): no output at all.
    assert done.returncode == 0 and done.output.strip() == "", done.output
