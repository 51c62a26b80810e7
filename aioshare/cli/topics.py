"""`aioshare topics ...`: topics from the command line, over ShareAdmin.

    aioshare topics list [--internal]
    aioshare topics create TOPIC [--partitions N] [--replication-factor N] [--config KEY=VALUE ...]
    aioshare topics describe TOPIC [TOPIC ...]
    aioshare topics delete TOPIC [TOPIC ...]

Every subcommand takes -b/--bootstrap-server (default 127.0.0.1:9092) and --timeout. Exit
status 0 on success, 1 when Kafka reports an error or cannot be reached (one line on stderr),
2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from aioshare.cli._admin import Command, describe_error, fail
from aioshare.cli._admin import table as _table
from aioshare.cli._admin import with_admin as _with_admin
from aioshare.protocol.errors import ConfigError, KafkaError

if TYPE_CHECKING:
    from aioshare.admin import ShareAdmin
    from aioshare.admin.types import ConfigEntry

__all__ = ["add_parser", "run"]

_TOPIC_RESOURCE = 2  # DescribeConfigs resource type TOPIC


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `topics` and its subcommands on the top-level `aioshare` parser."""
    from aioshare.cli.main import add_bootstrap_argument, config_pair

    common = argparse.ArgumentParser(add_help=False)
    add_bootstrap_argument(common)
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request, retries included")

    topics = commands.add_parser("topics", help="create, list, describe and delete topics")
    sub = topics.add_subparsers(dest="topics_command", required=True, metavar="SUBCOMMAND")

    listing = sub.add_parser("list", parents=[common], help="list topics and their partition counts")
    listing.add_argument("--internal", action="store_true", help="include internal topics")
    listing.set_defaults(topics_handler=_list)

    create = sub.add_parser("create", parents=[common], help="create a topic")
    create.add_argument("topic", help="the topic's name")
    create.add_argument("--partitions", type=int, default=1, help="partition count")
    create.add_argument("--replication-factor", type=int, default=1, help="replicas of each partition")
    create.add_argument(
        "--config",
        action="append",
        default=[],
        type=config_pair,
        metavar="KEY=VALUE",
        help="a topic config, e.g. retention.ms=3600000 (repeatable)",
    )
    create.set_defaults(topics_handler=_create)

    describe = sub.add_parser(
        "describe", parents=[common], help="show topics' partitions, leaders, replicas and configs"
    )
    describe.add_argument("topic", nargs="+", help="the topics")
    describe.set_defaults(topics_handler=_describe)

    delete = sub.add_parser("delete", parents=[common], help="delete topics")
    delete.add_argument("topic", nargs="+", help="the topics")
    delete.set_defaults(topics_handler=_delete)


def run(args: argparse.Namespace) -> int:
    """Runs the parsed `topics` subcommand; returns the exit status."""
    from aioshare.cli.main import parse_config_pairs

    if getattr(args, "partitions", 1) < 1 or getattr(args, "replication_factor", 1) < 1:
        print("aioshare topics: error: --partitions and --replication-factor must be >= 1", file=sys.stderr)
        return 2
    if hasattr(args, "config"):
        args.config = parse_config_pairs(args.config)
    handler: Command = args.topics_handler
    try:
        return asyncio.run(_with_admin(handler, args))
    except ConfigError as exc:
        _fail(str(exc))
        return 2
    except (KafkaError, OSError, TimeoutError) as exc:
        return _fail(describe_error(exc, args.bootstrap_server))


def _fail(message: str) -> int:
    return fail("topics", message)


async def _list(admin: ShareAdmin, args: argparse.Namespace) -> int:
    listings = await admin.list_topics(include_internal=args.internal)
    if not listings:
        print("No topics.")
        return 0
    rows = [[t.name, str(t.partitions), "yes" if t.internal else ""] for t in listings]
    _table(["TOPIC", "PARTITIONS", "INTERNAL"], rows)
    return 0


async def _create(admin: ShareAdmin, args: argparse.Namespace) -> int:
    await admin.create_topic(
        args.topic, args.partitions, replication_factor=args.replication_factor, config=args.config
    )
    noun = "partition" if args.partitions == 1 else "partitions"
    print(
        f"Created topic {args.topic!r} ({args.partitions} {noun}, replication factor {args.replication_factor})."
    )
    return 0


async def _describe(admin: ShareAdmin, args: argparse.Namespace) -> int:
    await admin.list_topics(include_internal=True)  # refreshes the metadata of every topic
    status = 0
    for index, name in enumerate(args.topic):
        topic = admin.cluster.metadata.topics.get(name)
        if topic is None:
            status = _fail(f"unknown topic {name!r}")
            continue
        partitions = [topic.partitions[p] for p in sorted(topic.partitions)]
        configs = await _topic_configs(admin, name, [p.leader for p in partitions])
        changed = sorted(f"{e.name}={e.value}" for e in configs.values() if not e.is_default)
        if index:
            print()
        print(f"Topic:              {name}")
        print(f"Topic id:           {topic.topic_id}")
        print(f"Partitions:         {len(partitions)}")
        print(f"Replication factor: {max((len(p.replicas) for p in partitions), default=0)}")
        print(f"Configs:            {','.join(changed) or '-'}")
        print()
        rows = [
            [
                str(p.partition),
                str(p.leader) if p.leader >= 0 else "none",
                ",".join(map(str, p.replicas)) or "-",
                ",".join(map(str, p.isr)) or "-",
            ]
            for p in partitions
        ]
        _table(["PARTITION", "LEADER", "REPLICAS", "ISR"], rows)
    return status


async def _topic_configs(admin: ShareAdmin, name: str, leaders: list[int]) -> dict[str, ConfigEntry]:
    """The topic's configs from DescribeConfigs, asked of a partition leader (any node answers)."""
    from aioshare.admin._parse import config_entries
    from aioshare.protocol.messages import DescribeConfigsRequest, DescribeConfigsResponse

    node = next((leader for leader in leaders if leader >= 0), None)
    if node is None:
        return {}
    conn = await admin.cluster.connection(node)
    resource = DescribeConfigsRequest.DescribeConfigsResource(
        resource_type=_TOPIC_RESOURCE, resource_name=name, configuration_keys=None
    )
    response = await conn.send(
        DescribeConfigsRequest(resources=[resource]), response_type=DescribeConfigsResponse
    )
    for result in response.results:
        if result.resource_name == name:
            entries = config_entries(result)
            if isinstance(entries, KafkaError):
                raise entries
            return entries
    return {}


async def _delete(admin: ShareAdmin, args: argparse.Namespace) -> int:
    status = 0
    for name in args.topic:
        try:
            await admin.delete_topic(name)
        except KafkaError as exc:
            status = _fail(f"topic {name!r}: {exc}")
        else:
            print(f"Deleted topic {name!r}.")
    return status
