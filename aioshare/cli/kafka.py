"""`aioshare kafka resolve|start`: real Apache Kafka from Maven Central, for trying things by hand.

``start`` runs a cluster in the foreground, prints one line with its bootstrap servers (as the
embedded broker's CLI does) and stops it on SIGINT/SIGTERM; ``resolve`` only fetches the jars.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any


def add_parser(commands: Any) -> None:
    from aioshare.cli.main import config_pair
    from aioshare.testing.kafka import DEFAULT_KAFKA_VERSION, TESTED_KAFKA_VERSIONS

    kafka = commands.add_parser(
        "kafka", help="run real Apache Kafka from Maven Central (needs a JDK and Maven)"
    )
    actions = kafka.add_subparsers(dest="kafka_command", required=True)
    versions = ", ".join(TESTED_KAFKA_VERSIONS)
    resolve = actions.add_parser("resolve", help="fetch Kafka's jars into the cache and print where")
    resolve.add_argument(
        "--version",
        default=DEFAULT_KAFKA_VERSION,
        help=f"Kafka version (tested: {versions})",
    )
    start = actions.add_parser("start", help="start a Kafka cluster on loopback until Ctrl-C")
    start.add_argument(
        "--version",
        default=DEFAULT_KAFKA_VERSION,
        help=f"Kafka version (tested: {versions})",
    )
    start.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="broker count; above 1 adds a controller process",
    )
    start.add_argument(
        "--config",
        action="append",
        default=[],
        type=config_pair,
        metavar="KEY=VALUE",
        help="a Kafka broker config laid over the test defaults (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    from aioshare.cli.main import parse_config_pairs
    from aioshare.testing.kafka import KafkaUnavailable, kafka_classpath
    from aioshare.testing.kafka.cluster import KafkaCluster

    try:
        if args.kafka_command == "resolve":
            print(kafka_classpath(args.version))
            return 0
        cluster = KafkaCluster(
            args.version, brokers=args.brokers, broker_config=parse_config_pairs(args.config)
        )
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        with cluster:
            print(
                f"aioshare kafka {cluster.version} listening on {cluster.bootstrap_servers} "
                f"(started in {cluster.startup_seconds:.1f} s; logs in {cluster.work_dir})",
                flush=True,
            )
            stop.wait()
        return 0
    except KafkaUnavailable as exc:
        print(f"aioshare kafka: error: {exc}", file=sys.stderr)
        return 1
