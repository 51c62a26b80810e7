"""A real Apache Kafka cluster (KRaft) on loopback, started from Maven's jars: no Docker, no install.

``KafkaCluster(version, brokers=1)`` formats KRaft storage and starts

* one combined broker+controller process (``brokers=1``, node id 1), or
* one controller process (node id 1000) and ``brokers`` broker processes (ids 1..N), so a broker
  can be killed and restarted while the cluster keeps its quorum (failover tests).

Ports are picked free on 127.0.0.1.  Readiness is a real request: a Metadata request must list
every broker, never a sleep.  Each process writes its log to ``<work_dir>/node-<id>/server.log``
(``log_tail()`` for a failing test's report).  ``stop()`` sends SIGTERM and SIGKILLs after a timeout,
and an ``atexit`` hook kills whatever a crashed test run left, so no JVM outlives its owner.

Test-friendly timings go through Kafka's own configs (see ``TEST_BROKER_CONFIG``): one-second
minimum record locks, half-second heartbeats, few internal-topic partitions.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aioshare.protocol.framing import FrameSplitter, decode_response, encode_request
from aioshare.protocol.messages import MetadataRequest, MetadataResponse
from aioshare.testing.kafka.maven import DEFAULT_KAFKA_VERSION, KafkaUnavailable, find_java, kafka_classpath

__all__ = [
    "BROKER_LOG_CONFIG",
    "TEST_BROKER_CONFIG",
    "KafkaCluster",
    "KafkaNode",
    "KafkaStartError",
    "running_clusters",
]

BROKER_LOG_CONFIG = Path(__file__).with_name("log4j2-broker.properties")
CONTROLLER_ID = 1000

# Kafka's own broker configs, set for tests: every bound is Kafka's (a group may then choose a
# one-second lock, a heartbeat every half second), internal topics are small, and a lone node can
# serve share groups at all (the state topic's replication defaults are 3 and 2).
TEST_BROKER_CONFIG: dict[str, str] = {
    "group.share.min.record.lock.duration.ms": "1000",
    "group.share.min.heartbeat.interval.ms": "500",
    "group.share.heartbeat.interval.ms": "500",
    "group.share.min.session.timeout.ms": "3000",
    "group.share.session.timeout.ms": "10000",
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "3",
    "share.coordinator.state.topic.num.partitions": "3",
    "num.partitions": "1",
    "auto.create.topics.enable": "false",
}


class KafkaStartError(KafkaUnavailable):
    """A Kafka process exited or did not become ready; the message carries its log's tail."""


@dataclass
class KafkaNode:
    node_id: int
    roles: str
    directory: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


_live: set[KafkaCluster] = set()
_live_lock = threading.Lock()


@atexit.register
def _kill_leftovers() -> None:
    # Only reached when an owner forgot stop() or the run was interrupted.
    with _live_lock:
        clusters = list(_live)
    for cluster in clusters:
        cluster.stop(timeout=5.0)


def running_clusters() -> list[KafkaCluster]:
    """Every cluster started and not yet stopped in this process (for failure reports)."""
    with _live_lock:
        return list(_live)


class KafkaCluster:
    """Apache Kafka ``version`` on loopback; a context manager (sync and async)."""

    def __init__(
        self,
        version: str = DEFAULT_KAFKA_VERSION,
        *,
        brokers: int = 1,
        broker_config: Mapping[str, str] | None = None,
        listeners: Mapping[str, str] | None = None,
        work_dir: Path | None = None,
        heap: str = "768m",
        jvm_options: tuple[str, ...] = ("-XX:+UseSerialGC",),
        start_timeout: float = 120.0,
        format_args: tuple[str, ...] = (),
    ) -> None:
        """``broker_config`` is laid over ``TEST_BROKER_CONFIG`` (Kafka's names and values).

        ``listeners`` maps listener names to security protocols (default one PLAINTEXT listener);
        the first is the inter-broker listener.  Security settings (``ssl.*``, ``sasl.*``,
        ``listener.name.<name>.*``, ``authorizer.class.name``) go in ``broker_config``.
        ``format_args`` are added to every node's ``kafka-storage format`` command, e.g.
        ``("--add-scram", "SCRAM-SHA-256=[name=alice,password=secret]")`` for users that exist
        from the first start.
        """
        if brokers < 1:
            raise ValueError("brokers must be at least 1")
        self.version = version
        self.listeners = dict(listeners or {"PLAINTEXT": "PLAINTEXT"})
        if "CONTROLLER" in self.listeners:
            raise ValueError("CONTROLLER is the controller's own listener name")
        self.broker_config = {**TEST_BROKER_CONFIG, **(broker_config or {})}
        self.heap = heap
        self.jvm_options = jvm_options
        self.start_timeout = start_timeout
        self.format_args = format_args
        self._owns_work_dir = work_dir is None
        self.work_dir = (
            Path(tempfile.mkdtemp(prefix=f"aioshare-kafka-{version}-")) if work_dir is None else work_dir
        )
        self.cluster_id = ""
        self.startup_seconds = 0.0
        if brokers == 1:
            self.nodes = [KafkaNode(1, "broker,controller", self.work_dir / "node-1")]
        else:
            controller = KafkaNode(CONTROLLER_ID, "controller", self.work_dir / f"node-{CONTROLLER_ID}")
            self.nodes = [controller] + [
                KafkaNode(i, "broker", self.work_dir / f"node-{i}") for i in range(1, brokers + 1)
            ]

    # -- addresses -------------------------------------------------------------------------

    @property
    def brokers(self) -> list[KafkaNode]:
        return [n for n in self.nodes if n.is_broker]

    @property
    def controller(self) -> KafkaNode:
        return next(n for n in self.nodes if "controller" in n.roles)

    def bootstrap(self, listener: str | None = None) -> str:
        """``host:port,...`` of every broker on ``listener`` (default: the first listener)."""
        name = listener or next(iter(self.listeners))
        return ",".join(f"127.0.0.1:{n.ports[name]}" for n in self.brokers)

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap()

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> KafkaCluster:
        started = time.monotonic()
        lib = kafka_classpath(self.version)
        find_java()
        self._assign_ports()
        self.cluster_id = (
            self._run_tool(lib, "kafka.tools.StorageTool", "random-uuid").strip().splitlines()[-1]
        )
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            (node.directory / "server.properties").write_text(self._properties(node))
            self._run_tool(
                lib,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(node.directory / "server.properties"),
                "--ignore-formatted",
                *self.format_args,
            )
        with _live_lock:
            _live.add(self)
        try:
            for node in self.nodes:
                self._spawn(lib, node)
            self.wait_ready(self.brokers)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the brokers, then the controller; SIGKILL what still runs after ``timeout``.

        Brokers go first and are waited for: a broker's controlled shutdown needs the controller.
        """
        deadline = time.monotonic() + timeout
        for group in ([n for n in self.nodes if n.is_broker], [n for n in self.nodes if not n.is_broker]):
            for node in group:
                if node.running:
                    assert node.process is not None
                    node.process.send_signal(signal.SIGTERM)
            for node in group:
                self._reap(node, deadline)
        with _live_lock:
            _live.discard(self)

    def cleanup(self) -> None:
        """Delete the work directory (logs included) if this cluster made it."""
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def kill_broker(self, node_id: int) -> None:
        """SIGKILL one broker: no controlled shutdown, as a crashed machine."""
        node = self.node(node_id)
        if node.process is not None:
            node.process.kill()
            node.process.wait(timeout=30)

    def stop_broker(self, node_id: int, timeout: float = 30.0) -> None:
        """A controlled shutdown of one broker (SIGTERM, then SIGKILL after ``timeout``)."""
        node = self.node(node_id)
        if node.running:
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)
        self._reap(node, time.monotonic() + timeout)

    def start_broker(self, node_id: int) -> None:
        """Restart a stopped broker on its old ports and data; returns once it is registered."""
        node = self.node(node_id)
        if node.running:
            raise RuntimeError(f"node {node_id} is running")
        self._spawn(kafka_classpath(self.version), node)
        self.wait_ready([node])

    def wait_ready(self, nodes: list[KafkaNode]) -> None:
        """Until a Metadata request to each of ``nodes`` lists every live broker."""
        deadline = time.monotonic() + self.start_timeout
        expected = {n.node_id for n in self.brokers if n.running}
        for node in nodes:
            while True:
                self._check_alive(node)
                try:
                    seen = self._metadata_brokers(node)
                except OSError:
                    seen = set()
                if expected <= seen:
                    break
                if time.monotonic() > deadline:
                    raise KafkaStartError(
                        f"Kafka {self.version} node {node.node_id} saw brokers {sorted(seen)}, not "
                        f"{sorted(expected)}, after {self.start_timeout:.0f} s; its log ends:\n"
                        f"{self.log_tail(node.node_id)}"
                    )
                time.sleep(0.1)

    def log_tail(self, node_id: int | None = None, lines: int = 60) -> str:
        """The last ``lines`` of one node's log (of every node's when ``node_id`` is None)."""
        chosen = self.nodes if node_id is None else [self.node(node_id)]
        parts = []
        for node in chosen:
            try:
                text = node.log_path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no log)"]
            parts.append(f"--- node {node.node_id} ({node.log_path}) ---\n" + "\n".join(text))
        return "\n".join(parts)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.cleanup()

    async def __aenter__(self) -> KafkaCluster:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.__exit__, exc_type, exc, tb)

    # -- internals ---------------------------------------------------------------------------

    def _assign_ports(self) -> None:
        ports = iter(_free_ports(sum(1 if not n.is_broker else len(self.listeners) + 1 for n in self.nodes)))
        for node in self.nodes:
            if node.ports:
                continue  # a restart keeps its ports
            if node.is_broker:
                node.ports = {name: next(ports) for name in self.listeners}
            if "controller" in node.roles:
                node.ports["CONTROLLER"] = next(ports)

    def _properties(self, node: KafkaNode) -> str:
        controller = self.controller
        props: dict[str, str] = {
            "process.roles": node.roles,
            "node.id": str(node.node_id),
            "controller.quorum.voters": f"{controller.node_id}@127.0.0.1:{controller.ports['CONTROLLER']}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": ",".join(
                [f"{name}:{protocol}" for name, protocol in self.listeners.items()] + ["CONTROLLER:PLAINTEXT"]
            ),
            "log.dirs": str(node.directory / "data"),
        }
        # Internal topics replicated on every broker (up to Kafka's default of 3) with a minimum ISR
        # of 1: a lone node can serve share groups at all, and a cluster keeps serving them (group
        # and share state included) while one broker is down.
        replicas = str(min(3, len(self.brokers)))
        for prefix in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic"):
            props[f"{prefix}.replication.factor"] = replicas
        for key in ("transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr"):
            props[key] = "1"
        listeners = [f"{name}://127.0.0.1:{port}" for name, port in node.ports.items()]
        props["listeners"] = ",".join(listeners)
        if node.is_broker:
            props["advertised.listeners"] = ",".join(
                f"{name}://127.0.0.1:{node.ports[name]}" for name in self.listeners
            )
            props["inter.broker.listener.name"] = next(iter(self.listeners))
        # Controllers too: the quorum controller validates group configs against the group.share.*
        # bounds, and would refuse a one-second lock under Kafka's default 15-second minimum.
        props.update(self.broker_config)
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _run_tool(self, lib: Path, main: str, *args: str) -> str:
        done = subprocess.run(
            [find_java(), "-Xmx256m", "-cp", f"{lib}/*", main, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise KafkaStartError(
                f"{main} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def _spawn(self, lib: Path, node: KafkaNode) -> None:
        command = [
            find_java(),
            f"-Xmx{self.heap}",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={BROKER_LOG_CONFIG}",
            f"-Dkafka.logs.dir={node.directory}",
            *self.jvm_options,  # after the defaults: the JVM takes the last -D, so a caller's wins
            "-cp",
            f"{lib}/*",
            "kafka.Kafka",
            str(node.directory / "server.properties"),
        ]
        with open(node.log_path, "ab") as log:
            node.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _check_alive(self, node: KafkaNode) -> None:
        if node.process is None or node.process.poll() is not None:
            code = None if node.process is None else node.process.returncode
            raise KafkaStartError(
                f"Kafka {self.version} node {node.node_id} exited ({code}) before it was ready; "
                f"its log ends:\n{self.log_tail(node.node_id)}"
            )

    def _metadata_brokers(self, node: KafkaNode) -> set[int]:
        port = node.ports[next(iter(self.listeners))]
        if self.listeners[next(iter(self.listeners))] != "PLAINTEXT":
            # Readiness through TLS or SASL would need the test's credentials: the process being
            # up and its port accepting is what can be checked here, and the caller's first
            # request retries.
            with socket.create_connection(("127.0.0.1", port), timeout=2.0):
                return {n.node_id for n in self.brokers if n.running}
        response = _request(port, MetadataRequest(topics=[], allow_auto_topic_creation=False), 12)
        assert isinstance(response, MetadataResponse)
        return {b.node_id for b in response.brokers}

    def _reap(self, node: KafkaNode, deadline: float) -> None:
        if node.process is None:
            return
        try:
            node.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(timeout=30)


_correlation = itertools.count(1)


def _request(port: int, message: MetadataRequest, version: int) -> object:
    correlation = next(_correlation)
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(encode_request(message, version, correlation, "aioshare-kafka-launcher"))
        splitter = FrameSplitter()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("Kafka closed the connection")
            for frame in splitter.feed(chunk):
                return decode_response(frame, message.API_KEY, version, strict=False)


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now (held open together so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports
