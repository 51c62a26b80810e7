"""`aioshare web` as a user runs it: the listening line (port 0 picks a free port), the
refusal to listen beyond loopback without a token, an unreachable cluster, `run --web-port`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioshare.cli.main import build_parser
from aioshare.testing.broker import ThreadedBroker

LISTENING = re.compile(r"^aioshare web listening on (http://[^\s]+)$")


def aioshare(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aioshare.cli.main", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for_line(proc: subprocess.Popen[str], pattern: re.Pattern[str]) -> re.Match[str]:
    """Read stdout until a line matches (the process's own start-up bounds the wait)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        found = pattern.match(line.strip())
        if found:
            return found
    raise AssertionError(
        f"no line matched {pattern.pattern}: {seen!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
    )


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_port_0_prints_the_address_it_listens_on(
    broker: ThreadedBroker, stopped: list[subprocess.Popen[str]]
) -> None:
    proc = aioshare("web", "-b", broker.bootstrap_servers, "--port", "0")
    stopped.append(proc)
    url = wait_for_line(proc, LISTENING).group(1)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    with urllib.request.urlopen(f"{url}/api/meta", timeout=10) as answer:
        meta = json.load(answer)
    assert meta["bootstrap_servers"] == broker.bootstrap_servers and meta["read_only"] is False
    with urllib.request.urlopen(f"{url}/groups", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/html")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()


def test_refuses_a_public_address_without_a_token(stopped: list[subprocess.Popen[str]]) -> None:
    proc = aioshare(
        "web", "-b", "127.0.0.1:1", "--host", "0.0.0.0", "--port", "0", env={"AIOSHARE_WEB_TOKEN": ""}
    )
    stopped.append(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, (out, err)
    assert err.strip().splitlines() == [
        "aioshare web: error: refusing to listen on 0.0.0.0 without a token: give --token or set "
        "AIOSHARE_WEB_TOKEN (or listen on 127.0.0.1)"
    ]


def test_a_token_from_the_environment_allows_a_public_address(
    broker: ThreadedBroker, stopped: list[subprocess.Popen[str]]
) -> None:
    proc = aioshare(
        "web",
        "-b",
        broker.bootstrap_servers,
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--read-only",
        env={"AIOSHARE_WEB_TOKEN": "s3cret"},
    )
    stopped.append(proc)
    url = wait_for_line(proc, LISTENING).group(1)
    port = url.rsplit(":", 1)[1]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/meta", timeout=10)
    assert refused.value.code == 401
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/meta", headers={"Authorization": "Bearer s3cret"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["read_only"] is True
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_an_unreachable_cluster_is_one_error_line(stopped: list[subprocess.Popen[str]]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    proc = aioshare("web", "-b", dead, "--port", "0", "--timeout", "1")
    stopped.append(proc)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("aioshare web: error: cannot reach Kafka at " + dead), err


def test_web_options_and_defaults() -> None:
    args = build_parser().parse_args(["web"])
    assert (args.bootstrap_server, args.host, args.port, args.read_only, args.token) == (
        "127.0.0.1:9092",
        "127.0.0.1",
        8080,
        False,
        None,
    )
    args = build_parser().parse_args(["run", "svc:app", "--web-port", "0"])
    assert args.web_port == 0


APP = """
import aioshare

app = aioshare.App(report_interval=0.5)

@app.handler("web-run-jobs", group_id="web-run-g")
async def handle(msg: aioshare.Message[bytes]) -> None:
    pass
"""


def test_run_serves_the_console_beside_the_app(tmp_path: Path, stopped: list[subprocess.Popen[str]]) -> None:
    (tmp_path / "webrunapp.py").write_text(textwrap.dedent(APP))
    proc = aioshare(
        "run", "webrunapp:app", "--app-dir", str(tmp_path), "--embedded", "--web-port", "0", "--no-uvloop"
    )
    stopped.append(proc)
    url = wait_for_line(proc, LISTENING).group(1)
    with urllib.request.urlopen(f"{url}/api/topics", timeout=10) as answer:
        assert "web-run-jobs" in {t["name"] for t in json.load(answer)}
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
