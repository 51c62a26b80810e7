"""`aioshare groups ...`: share-group administration from the command line, over ShareAdmin.

    aioshare groups list
    aioshare groups describe GROUP
    aioshare groups offsets GROUP [--topic T ...]
    aioshare groups reset GROUP --topic T --to earliest|latest|ISO-DATETIME|OFFSET [--partition N ...]
    aioshare groups delete GROUP [GROUP ...]
    aioshare groups config GROUP [--set KEY=VALUE ...] [--delete KEY ...]

Every subcommand takes -b/--bootstrap-server (default 127.0.0.1:9092) and --timeout. Exit status 0 on
success, 1 when Kafka reports an error (printed to stderr), 2 for bad usage (argparse).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from aioshare.cli._admin import Command, fail
from aioshare.cli._admin import table as _table
from aioshare.cli._admin import with_admin as _with_admin
from aioshare.protocol.errors import BrokerError, KafkaError

if TYPE_CHECKING:
    from aioshare.admin import ShareAdmin
    from aioshare.admin.types import ResetTarget

__all__ = ["add_parser", "run"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class UsageError(Exception):
    """Input argparse accepted but that makes no sense (an unparseable --to, ...)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `groups` and its subcommands on the top-level `aioshare` parser."""
    from aioshare.cli.main import add_bootstrap_argument, config_pair

    # Connection options live on every leaf parser so they may follow the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    add_bootstrap_argument(common, DEFAULT_BOOTSTRAP)
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request, retries included")

    groups = commands.add_parser("groups", help="administer share groups (list, describe, offsets, ...)")
    sub = groups.add_subparsers(dest="groups_command", required=True, metavar="SUBCOMMAND")

    listing = sub.add_parser("list", parents=[common], help="list share groups")
    listing.set_defaults(groups_handler=_list)

    describe = sub.add_parser("describe", parents=[common], help="describe a share group and its members")
    describe.add_argument("group", help="the share group")
    describe.set_defaults(groups_handler=_describe)

    offsets = sub.add_parser("offsets", parents=[common], help="show a share group's start offsets and lag")
    offsets.add_argument("group", help="the share group")
    offsets.add_argument("--topic", action="append", help="only this topic (repeatable)")
    offsets.set_defaults(groups_handler=_offsets)

    reset = sub.add_parser(
        "reset", parents=[common], help="move a share group's start offset (group must be empty)"
    )
    reset.add_argument("group", help="the share group")
    reset.add_argument("--topic", required=True, help="the topic whose offsets move")
    reset.add_argument(
        "--to",
        required=True,
        type=_reset_to,
        metavar="earliest|latest|ISO-DATETIME|OFFSET",
        help="a datetime without a time zone is local time; an OFFSET outside the log is moved to its start or end",
    )
    reset.add_argument("--partition", type=int, action="append", help="only this partition (repeatable)")
    reset.set_defaults(groups_handler=_reset)

    delete = sub.add_parser("delete", parents=[common], help="delete share groups (they must be empty)")
    delete.add_argument("group", nargs="+", help="the share groups")
    delete.set_defaults(groups_handler=_delete)

    config = sub.add_parser("config", parents=[common], help="show or change a share group's configs")
    config.add_argument("group", help="the share group")
    config.add_argument(
        "--set",
        action="append",
        default=[],
        type=config_pair,
        metavar="KEY=VALUE",
        help="set a config (repeatable)",
    )
    config.add_argument(
        "--delete",
        action="append",
        default=[],
        metavar="KEY",
        help="reset a config to its default (repeatable)",
    )
    config.set_defaults(groups_handler=_config)


def _reset_to(text: str) -> str:
    """argparse type of `reset --to`: a malformed target is a usage error (exit status 2)."""
    value = text.strip()
    if value.lower() in ("earliest", "latest"):
        return text
    if value.lstrip("-").isdigit():
        if int(value) < 0:
            raise argparse.ArgumentTypeError(f"an offset must be >= 0, got {value}")
        return text
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected earliest, latest, an offset or an ISO-8601 datetime (e.g. 2025-01-31T12:00:00+00:00), "
            f"got {text!r}"
        ) from None
    return text


def run(args: argparse.Namespace) -> int:
    """Runs the parsed `groups` subcommand; returns the exit status."""
    handler: Command = args.groups_handler
    try:
        return asyncio.run(_with_admin(handler, args))
    except UsageError as exc:
        return _fail(str(exc))
    except KafkaError as exc:
        return _fail(str(exc))


def _fail(message: str) -> int:
    return fail("groups", message)


# --------------------------------------------------------------------------------- subcommands


async def _list(admin: ShareAdmin, args: argparse.Namespace) -> int:
    listings = await admin.list_share_groups()
    if not listings:
        print("No share groups.")
        return 0
    _table(["GROUP", "STATE"], [[g.group_id, g.state or "-"] for g in listings])
    return 0


async def _describe(admin: ShareAdmin, args: argparse.Namespace) -> int:
    found = (await admin.describe_share_groups([args.group]))[args.group]
    if isinstance(found, BrokerError):
        return _fail(str(found))
    print(f"Group:            {found.group_id}")
    print(f"State:            {found.state}")
    print(f"Group epoch:      {found.group_epoch}")
    print(f"Assignment epoch: {found.assignment_epoch}")
    print(f"Assignor:         {found.assignor}")
    print(f"Members:          {len(found.members)}")
    if found.members:
        print()
        rows = [
            [
                m.member_id,
                m.client_id,
                m.host,
                str(m.member_epoch),
                ",".join(m.subscriptions) or "-",
                " ".join(f"{t}:{','.join(map(str, ps))}" for t, ps in sorted(m.assignment.items())) or "-",
            ]
            for m in found.members
        ]
        _table(["MEMBER-ID", "CLIENT-ID", "HOST", "EPOCH", "SUBSCRIPTIONS", "ASSIGNMENT"], rows)
    return 0


async def _offsets(admin: ShareAdmin, args: argparse.Namespace) -> int:
    found = await admin.describe_share_group_offsets(args.group, args.topic)
    if not found:
        # The broker answers an unknown group with no offsets rather than an error; tell the two
        # apart as kafka-share-groups does (it describes the group first).
        described = (await admin.describe_share_groups([args.group]))[args.group]
        if isinstance(described, BrokerError):
            return _fail(str(described))
        print(f"Share group {args.group!r} has no offsets.")
        return 0
    rows = [
        # A partition answered with an error carries the schema's defaults (0), not offsets:
        # print none, as Java's Admin leaves such partitions out.
        [tp.topic, str(tp.partition), "-", "-", "-", info.error.name]
        if info.error is not None
        else [
            tp.topic,
            str(tp.partition),
            _number(info.start_offset),
            _number(info.lag),
            _number(info.leader_epoch),
            "",
        ]
        for tp, info in found.items()
    ]
    _table(["TOPIC", "PARTITION", "START-OFFSET", "LAG", "LEADER-EPOCH", "ERROR"], rows)
    return _partition_errors({f"{tp.topic}-{tp.partition}": i.error for tp, i in found.items()})


async def _reset(admin: ShareAdmin, args: argparse.Namespace) -> int:
    to, partitions = await _reset_target(admin, args)
    found = await admin.reset_share_group_offsets(args.group, args.topic, to=to, partitions=partitions)
    rows = [
        [
            args.topic,
            str(p),
            "" if isinstance(v, BrokerError) else str(v),
            v.name if isinstance(v, BrokerError) else "",
        ]
        for p, v in found.items()
    ]
    _table(["TOPIC", "PARTITION", "NEW-START-OFFSET", "ERROR"], rows)
    return _partition_errors({f"{args.topic}-{p}": v for p, v in found.items() if isinstance(v, BrokerError)})


async def _reset_target(admin: ShareAdmin, args: argparse.Namespace) -> tuple[ResetTarget, list[int] | None]:
    text: str = args.to.strip()
    if text.lower() in ("earliest", "latest"):
        return ("earliest" if text.lower() == "earliest" else "latest"), args.partition
    if text.lstrip("-").isdigit():
        offset = int(text)
        if offset < 0:
            raise UsageError(f"--to {text}: an offset must be >= 0")
        partitions = args.partition or await _all_partitions(admin, args.topic)
        return await _within_log(admin, args.topic, partitions, offset), None
    try:
        return datetime.fromisoformat(text), args.partition
    except ValueError:
        raise UsageError(
            f"--to {text!r}: expected earliest, latest, an offset or an ISO-8601 datetime "
            "(e.g. 2025-01-31T12:00:00+00:00)"
        ) from None


async def _within_log(admin: ShareAdmin, topic: str, partitions: list[int], offset: int) -> dict[int, int]:
    """`offset` for each partition, moved into [log start, log end] as kafka-share-groups does.

    The broker accepts a start offset past the log end; the group would then skip every record
    produced until the log reaches it.  A partition whose log offsets cannot be looked up keeps
    `offset` (the reset reports its error).
    """
    earliest = await admin.list_offsets(topic, "earliest", partitions)
    latest = await admin.list_offsets(topic, "latest", partitions)
    chosen: dict[int, int] = {}
    for p in partitions:
        low, high = earliest.get(p), latest.get(p)
        chosen[p] = offset
        if isinstance(high, int) and offset > high:
            chosen[p] = high
            _warn(f"offset {offset} is past the log end of {topic}-{p}: using {high}.")
        elif isinstance(low, int) and offset < low:
            chosen[p] = low
            _warn(f"offset {offset} is before the log start of {topic}-{p}: using {low}.")
    return chosen


def _warn(message: str) -> None:
    print(f"aioshare groups: warning: {message}", file=sys.stderr)


async def _all_partitions(admin: ShareAdmin, topic: str) -> list[int]:
    for listing in await admin.list_topics(include_internal=True):
        if listing.name == topic:
            return list(range(listing.partitions))
    raise UsageError(f"unknown topic {topic!r}")


async def _delete(admin: ShareAdmin, args: argparse.Namespace) -> int:
    found = await admin.delete_share_groups(args.group)
    failed = False
    for group, error in found.items():
        if error is None:
            print(f"Deleted share group {group!r}.")
        else:
            failed = True
            _fail(str(error))
    return 1 if failed else 0


async def _config(admin: ShareAdmin, args: argparse.Namespace) -> int:
    if args.set or args.delete:
        await admin.alter_group_config(args.group, set=_pairs(args.set), delete=args.delete)
        print(f"Updated configs of group {args.group!r}.")
        return 0
    entries = await admin.describe_group_config(args.group)
    rows = [
        [e.name, "(sensitive)" if e.sensitive else ("-" if e.value is None else e.value), e.source.name]
        for e in entries.values()
    ]
    _table(["NAME", "VALUE", "SOURCE"], rows)
    return 0


# --------------------------------------------------------------------------------- formatting


def _pairs(items: Sequence[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _number(value: int) -> str:
    return "-" if value < 0 else str(value)  # Kafka's "unknown" is -1


def _partition_errors(errors: dict[str, BrokerError | None]) -> int:
    failed = {where: e for where, e in errors.items() if e is not None}
    for where, error in failed.items():
        _fail(str(error if error.context else type(error)(error.message, context=where)))
    return 1 if failed else 0
