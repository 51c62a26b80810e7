"""`aioshare run MODULE:APP --processes N`: N supervised worker processes.

The supervisor starts N workers, each ``python -m aioshare.cli.main run MODULE:APP`` with the
other options of the command line (each one App, with its own share-group members), and:

* restarts a worker that exits on its own, after a backoff of 1 s doubling to 30 s (back to
  1 s once a worker ran 60 s); a worker that exits 5 times within 60 s makes the supervisor
  give up: it stops the other workers and exits 1 (2 when a worker exits with status 2, a
  usage or configuration error - restarting cannot fix that);
* forwards SIGTERM/SIGINT as SIGTERM to every worker (a graceful drain: the workers stop
  fetching, finish or release what they hold, leave their groups) and exits 0 once all
  exited 0; a second signal is forwarded too (the workers cancel running handlers, still
  releasing their records) and workers still alive after the drain timeout are SIGKILLed;
* logs every start, exit and restart with the worker's index, pid and exit status, and
  forwards each worker's stdout line by line as ``[worker I pid P] line`` (stderr, where the
  logs go, is the worker's own);
* with ``--health-port`` serves ``/livez``, ``/readyz`` and ``/metrics`` for the whole set:
  the workers serve theirs on free loopback ports, which the supervisor asks at request time.
  ``/readyz`` is 200 when every worker runs and answers 200 itself; ``/livez`` is 503 only once
  the supervisor gave up; ``/metrics`` merges the workers' series, each with a ``worker``
  label, and adds ``aioshare_supervisor_workers`` and ``aioshare_supervisor_restarts_total``.

Workers are in the supervisor's process group and ignore SIGINT (a terminal's Ctrl-C reaches
the group; the supervisor forwards it once), and stop by themselves when the supervisor dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aioshare.runtime.app import App
from aioshare.runtime.health import HealthBindError, HttpResponse, ProbeServer, http_get
from aioshare.runtime.shutdown import SIGNALS, run_loop, signal_handlers

__all__ = ["RestartPolicy", "Supervisor", "merge_metrics", "run_supervised", "worker_argv"]

log = logging.getLogger(__name__)

_HEALTH_LINE = re.compile(r"aioshare health listening on http://(\[[^\]]+\]|[^:/\s]+):(\d+)")
_SERVING_LINE = "aioshare run: serving "
_PROBE_TIMEOUT = 2.0  # seconds the supervisor waits for a worker's health answer
_PUMP_GRACE = 2.0  # seconds to finish forwarding a worker's stdout after it exited
_CLEAN_DRAIN = {0, -signal.SIGTERM, -signal.SIGINT}  # a worker stopped before its handlers were up

# Options of `aioshare run` that are the supervisor's, not the workers'.
_NOT_FORWARDED = {
    "app",
    "bootstrap_servers",
    "embedded",
    "partitions",
    "broker_config",
    "web_port",
    "health_port",
    "health_host",
    "processes",
    "supervised_by",
    "app_dir",
    "help",
}


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When the supervisor restarts a worker that exited on its own, and when it gives up."""

    initial: float = 1.0  # the first restart's delay
    max: float = 30.0  # the delay doubles up to this
    reset_after: float = 60.0  # a worker that ran this long starts over at ``initial``
    max_crashes: int = 5  # this many exits of one worker ...
    window: float = 60.0  # ... within this many seconds: give up


@dataclass(eq=False)
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = None
    started_at: float = 0.0
    health: tuple[str, int] | None = None
    serving: bool = False
    delay: float = 0.0
    restarts: int = 0
    crashes: deque[float] = field(default_factory=deque)
    last_status: int | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


def describe_status(status: int) -> str:
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


class Supervisor:
    """Runs ``processes`` workers from ``argv(index)`` until a signal or a crash loop.

    ``run()`` returns the exit status: 0 after a drain in which every worker exited cleanly,
    1 when a worker had to be killed or the supervisor gave up, 2 when a worker exited 2.
    """

    def __init__(
        self,
        argv: Callable[[int], Sequence[str]],
        processes: int,
        *,
        policy: RestartPolicy | None = None,
        drain_timeout: float = 45.0,
        force_timeout: float = 15.0,
        health_host: str | None = None,
        health_port: int | None = None,
        serving_line: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self._argv = argv
        self.policy = policy or RestartPolicy()
        self.drain_timeout = drain_timeout
        self.force_timeout = force_timeout
        self.workers = [_Worker(i, delay=self.policy.initial) for i in range(processes)]
        self._health_host = health_host
        self._health_port = health_port
        self._serving_line = serving_line
        self._env = dict(env) if env is not None else None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._kill_at: float | None = None
        self._signals = 0
        self._gave_up: str | None = None
        self._status = 0
        self._announced = False
        self.probe: ProbeServer | None = None

    # -- control -----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Drain: SIGTERM to every worker; a second call forwards another (forcing) SIGTERM."""
        if self._stop is None or self._wake is None:
            return
        loop = asyncio.get_running_loop()
        self._signals += 1
        if self._signals == 1:
            self._stop.set()
            self._kill_at = loop.time() + self.drain_timeout
            return
        if self._signals == 2:
            log.warning("second stop request: forcing the workers to stop")
            self._kill_at = min(
                float("inf") if self._kill_at is None else self._kill_at, loop.time() + self.force_timeout
            )
            self._terminate_all()
        else:
            self._kill_at = loop.time()
        self._wake.set()

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._signals == 0:
            log.info("%s: draining %d worker(s)", name, sum(w.alive for w in self.workers))
        self.request_stop()

    def _give_up(self, message: str, status: int) -> None:
        if self._gave_up is None:
            self._gave_up = message
            self._status = status
            log.error("%s; giving up", message)
        if self._stop is not None and not self._stop.is_set():
            self.request_stop()

    # -- running -----------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True) -> int:
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            if self._health_port is not None:
                self.probe = ProbeServer(
                    {"/livez": self._livez, "/readyz": self._readyz, "/metrics": self._metrics},
                    self._health_host or "127.0.0.1",
                    self._health_port,
                )
                await stack.enter_async_context(self.probe)
                print(f"aioshare health listening on {self.probe.url}", flush=True)
            if handle_signals:
                stack.enter_context(signal_handlers(self._on_signal, SIGNALS))
            tasks = [
                asyncio.create_task(self._keep(w), name=f"aioshare-supervisor-worker-{w.index}")
                for w in self.workers
            ]
            try:
                await self._stop.wait()
                self._terminate_all()
                await self._drain(tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for worker in self.workers:  # cancelled mid-spawn or mid-wait: nothing survives us
                    await self._reap(worker)
        return self._exit_status()

    async def _drain(self, tasks: list[asyncio.Task[None]]) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        pending = {t for t in tasks if not t.done()}
        while pending:
            assert self._kill_at is not None
            remaining = self._kill_at - loop.time()
            if remaining <= 0:
                for worker in self.workers:
                    if worker.alive:
                        assert worker.process is not None
                        log.error(
                            "worker %d (pid %s) did not stop in time: SIGKILL",
                            worker.index,
                            worker.pid,
                        )
                        with contextlib.suppress(ProcessLookupError):
                            worker.process.kill()
                await asyncio.wait(pending)
                return
            self._wake.clear()
            waker = asyncio.create_task(self._wake.wait())
            try:
                await asyncio.wait([*pending, waker], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waker.cancel()
                await asyncio.gather(waker, return_exceptions=True)
            pending = {t for t in pending if not t.done()}

    def _exit_status(self) -> int:
        if self._gave_up is not None:
            return self._status
        unclean = [w for w in self.workers if w.last_status is not None and w.last_status not in _CLEAN_DRAIN]
        if unclean:
            log.error(
                "%s",
                "; ".join(
                    f"worker {w.index} ended with {describe_status(w.last_status or 0)}" for w in unclean
                ),
            )
            return 1
        log.info("all workers drained")
        return 0

    def _terminate_all(self) -> None:
        for worker in self.workers:
            if worker.alive:
                assert worker.process is not None
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)

    async def _keep(self, worker: _Worker) -> None:
        """Run one worker slot: start, wait, restart with backoff - until a stop."""
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                await self._spawn(worker)
            except OSError as exc:
                self._give_up(f"cannot start worker {worker.index}: {exc}", 1)
                return
            if self._stop.is_set():  # a stop came while it was being started
                self._terminate(worker)
            assert worker.process is not None
            status = await worker.process.wait()
            await self._finish_pump(worker)
            worker.last_status = status
            ran = loop.time() - worker.started_at
            if self._stop.is_set():
                log.info(
                    "worker %d (pid %d) exited with %s",
                    worker.index,
                    worker.pid,
                    describe_status(status),
                )
                return
            log.warning(
                "worker %d (pid %d) exited with %s after %.1fs",
                worker.index,
                worker.pid,
                describe_status(status),
                ran,
            )
            now = loop.time()
            policy = self.policy
            if ran >= policy.reset_after:
                worker.delay = policy.initial
            worker.crashes.append(now)
            while worker.crashes and worker.crashes[0] < now - policy.window:
                worker.crashes.popleft()
            if status == 2:
                self._give_up(
                    f"worker {worker.index} exited with status 2 (a usage or configuration error)", 2
                )
                return
            if len(worker.crashes) >= policy.max_crashes:
                self._give_up(
                    f"worker {worker.index} exited {len(worker.crashes)} times within {policy.window:g}s "
                    f"(last: {describe_status(status)})",
                    1,
                )
                return
            delay, worker.delay = worker.delay, min(worker.delay * 2, policy.max)
            log.info("restarting worker %d in %.1fs", worker.index, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            if not self._stop.is_set():
                worker.restarts += 1

    def _terminate(self, worker: _Worker) -> None:
        if worker.alive:
            assert worker.process is not None
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)

    async def _spawn(self, worker: _Worker) -> None:
        argv = list(self._argv(worker.index))
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, env=self._env
        )
        worker.process = process
        worker.started_at = asyncio.get_running_loop().time()
        worker.health = None
        worker.serving = False
        log.info("started worker %d (pid %d)", worker.index, process.pid)
        worker.pump = asyncio.create_task(
            self._pump(worker, process), name=f"aioshare-supervisor-stdout-{worker.index}"
        )

    async def _pump(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        """Forward the worker's stdout, noting its health port and its serving line."""
        assert process.stdout is not None
        prefix = f"[worker {worker.index} pid {process.pid}] "
        while True:
            raw = await process.stdout.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace")
            found = _HEALTH_LINE.search(line)
            if found and worker.health is None:
                worker.health = (found.group(1).strip("[]"), int(found.group(2)))
            if line.startswith(_SERVING_LINE):
                worker.serving = True
            sys.stdout.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
            sys.stdout.flush()
            if worker.serving and not self._announced and all(w.serving and w.alive for w in self.workers):
                self._announced = True
                if self._serving_line is not None:
                    print(self._serving_line, flush=True)

    async def _finish_pump(self, worker: _Worker) -> None:
        pump, worker.pump = worker.pump, None
        if pump is None:
            return
        # A grandchild that inherited the pipe may keep it open: do not wait for it forever.
        _, pending = await asyncio.wait([pump], timeout=_PUMP_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(pump, return_exceptions=True)

    async def _reap(self, worker: _Worker) -> None:
        if worker.alive:
            assert worker.process is not None
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            worker.last_status = await worker.process.wait()
        await self._finish_pump(worker)

    # -- health ------------------------------------------------------------------------

    async def _livez(self) -> HttpResponse:
        running = sum(w.alive for w in self.workers)
        if self._gave_up is not None:
            return HttpResponse.json(503, {"status": "failed", "reason": self._gave_up, "workers": running})
        return HttpResponse.json(200, {"status": "ok", "workers": running})

    async def _ask(self, worker: _Worker, path: str) -> HttpResponse | None:
        if not worker.alive or worker.health is None:
            return None
        host, port = worker.health
        try:
            return await http_get(host, port, path, timeout=_PROBE_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.debug("worker %d %s: %r", worker.index, path, exc)
            return None

    async def _readyz(self) -> HttpResponse:
        answers = await asyncio.gather(*(self._ask(w, "/readyz") for w in self.workers))
        entries: list[dict[str, Any]] = []
        reasons: list[str] = []
        for worker, answer in zip(self.workers, answers, strict=True):
            entry: dict[str, Any] = {"worker": worker.index, "pid": worker.pid if worker.alive else None}
            if answer is None:
                entry["status"] = "down"
                reasons.append(f"worker {worker.index} is not running or not answering")
            else:
                try:
                    body = json.loads(answer.body)
                except ValueError:
                    body = {}
                entry["status"] = body.get("status", answer.status)
                if answer.status != 200:
                    reasons.append(f"worker {worker.index}: {body.get('reason', answer.status)}")
            entries.append(entry)
        if self._gave_up is not None:
            reasons.insert(0, self._gave_up)
        elif self._stop is not None and self._stop.is_set():
            reasons.insert(0, "the supervisor is stopping")
        if reasons:
            return HttpResponse.json(
                503, {"status": "unavailable", "reason": "; ".join(reasons), "workers": entries}
            )
        return HttpResponse.json(200, {"status": "ok", "workers": entries})

    async def _metrics(self) -> HttpResponse:
        answers = await asyncio.gather(*(self._ask(w, "/metrics") for w in self.workers))
        texts = {
            str(w.index): a.text()
            for w, a in zip(self.workers, answers, strict=True)
            if a and a.status == 200
        }
        own = [
            "# HELP aioshare_supervisor_workers Worker processes running.",
            "# TYPE aioshare_supervisor_workers gauge",
            f"aioshare_supervisor_workers {float(sum(w.alive for w in self.workers))!r}",
            "# HELP aioshare_supervisor_restarts_total Workers restarted after they exited on their own.",
            "# TYPE aioshare_supervisor_restarts_total counter",
            *(
                f'aioshare_supervisor_restarts_total{{worker="{w.index}"}} {float(w.restarts)!r}'
                for w in self.workers
            ),
        ]
        body = merge_metrics(texts, "worker") + "\n".join(own) + "\n"
        return HttpResponse(200, body.encode(), "text/plain; version=0.0.4; charset=utf-8")


def _with_label(sample: str, label: str, value: str) -> str:
    cuts = [i for i in (sample.find("{"), sample.find(" ")) if i >= 0]
    if not cuts:
        return sample
    at = min(cuts)
    if sample[at] == "{":
        rest = sample[at + 1 :]
        sep = "" if rest.startswith("}") else ","
        return f'{sample[:at]}{{{label}="{value}"{sep}{rest}'
    return f'{sample[:at]}{{{label}="{value}"}}{sample[at:]}'


def merge_metrics(texts: Mapping[str, str], label: str) -> str:
    """Prometheus text expositions of several processes as one: each sample gets
    ``label="<key>"``, and each family's HELP/TYPE comes once with all its samples."""
    families: dict[str, list[str]] = {}
    headers: dict[str, list[str]] = {}
    for key, text in texts.items():
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    head = headers.setdefault(family, [])
                    families.setdefault(family, [])
                    if not any(h.split(None, 2)[1] == parts[1] for h in head):
                        head.append(line)
                continue
            families.setdefault(family, []).append(_with_label(line, label, key))
    out: list[str] = []
    for family, samples in families.items():
        out.extend(headers.get(family, []))
        out.extend(samples)
    return "\n".join(out) + ("\n" if out else "")


def worker_argv(args: argparse.Namespace, bootstrap: str | None, health: bool, parent: int) -> list[str]:
    """The `aioshare run` command line of one worker: every option of ``args`` that is not
    the supervisor's (so options added to `aioshare run` later are forwarded too)."""
    from aioshare.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run_parser = sub.choices["run"]
    argv = [sys.executable, "-m", "aioshare.cli.main", "run", args.app]
    argv += ["--app-dir", os.path.abspath(args.app_dir), "--supervised-by", str(parent)]
    if bootstrap is not None:
        argv += ["--bootstrap-server", bootstrap]
    if health:
        argv += ["--health-port", "0", "--health-host", "127.0.0.1"]
    for action in run_parser._actions:
        if not action.option_strings or action.dest in _NOT_FORWARDED:
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        option = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            if value:
                argv.append(option)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                argv += [option, str(item)]
        else:
            argv += [option, str(value)]
    return argv


async def _supervise(
    args: argparse.Namespace, app: App, embedded: bool, broker_config: Mapping[str, str]
) -> int:
    routes = ", ".join(f"{r.name} ({','.join(r.topics)})" for r in app.routes)
    shutdown = args.shutdown_timeout if args.shutdown_timeout is not None else app.shutdown_timeout
    # A worker's graceful stop: handlers (shutdown timeout), then commits and closes.
    drain = shutdown + 2 * app.close_timeout + 5.0
    force = 2 * app.close_timeout + 5.0
    health = args.health_port is not None
    async with contextlib.AsyncExitStack() as stack:
        bootstrap: str | None = args.bootstrap_servers
        if embedded:
            from aioshare.broker.embedded import EmbeddedBroker

            broker = await stack.enter_async_context(EmbeddedBroker(config=dict(broker_config)))
            for topic in sorted(app.topics()):
                await broker.create_topic(topic, args.partitions)
            bootstrap = broker.bootstrap_servers
            print(f"aioshare run: embedded broker listening on {bootstrap}", flush=True)
        servers = bootstrap or (
            app.bootstrap_servers
            if isinstance(app.bootstrap_servers, str)
            else ",".join(app.bootstrap_servers)
        )
        if args.web_port is not None:
            from aioshare.web.server import WebServer

            web = await stack.enter_async_context(WebServer(servers, port=args.web_port))
            print(f"aioshare web listening on {web.url}", flush=True)
        argv = worker_argv(args, bootstrap, health, os.getpid())
        supervisor = Supervisor(
            lambda _index: argv,
            args.processes,
            drain_timeout=drain,
            force_timeout=force,
            health_host=args.health_host,
            health_port=args.health_port,
            serving_line=f"aioshare run: serving {routes} on {servers} with {args.processes} processes",
        )
        log.info("starting %d worker process(es) of %s", args.processes, args.app)
        return await supervisor.run()


def run_supervised(
    args: argparse.Namespace,
    app: App,
    *,
    embedded: bool,
    broker_config: Mapping[str, str],
    error: Callable[[str], None],
) -> int:
    """`aioshare run --processes N` (the arguments are validated by the caller)."""
    try:
        return run_loop(_supervise(args, app, embedded, broker_config), use_uvloop=not args.no_uvloop)
    except HealthBindError as exc:
        error(f"error: health endpoints: {exc.strerror}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        error(f"the supervisor stopped on an error: {exc!r}")
        return 1
