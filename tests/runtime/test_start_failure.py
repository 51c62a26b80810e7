"""A start that cannot reach a broker prints one line naming the addresses, exits 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

APP_WITHOUT_DLQ = """
import aioshare

# start_timeout: the default (30 s) only makes the test slow; what it checks is the one line.
app = aioshare.App("127.0.0.1:1", consumer_options={"start_timeout": 2.0})


@app.handler("jobs", group_id="g")
async def handle(msg: aioshare.Message[bytes]) -> None: ...
"""


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "always", "PYTHONDEVMODE": "1"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def assert_one_clean_line(result: subprocess.CompletedProcess[str], address: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert address in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert "Unclosed" not in result.stderr + result.stdout


@pytest.mark.parametrize("dlq", [True, False])
def test_cli_run_without_broker(tmp_path: Path, dlq: bool) -> None:
    if dlq:
        argv = ["quickstart:app", "--app-dir", str(ROOT / "examples")]
    else:
        (tmp_path / "nodlq.py").write_text(APP_WITHOUT_DLQ)
        argv = ["nodlq:app", "--app-dir", str(tmp_path)]
    result = run([sys.executable, "-m", "aioshare.cli.main", "run", *argv, "-b", "127.0.0.1:1"], tmp_path)
    assert_one_clean_line(result, "127.0.0.1:1")
    assert result.stderr.startswith("aioshare run: error: ")


def test_quickstart_without_broker(tmp_path: Path) -> None:
    # Nothing listens on 127.0.0.1:9092 in the test environment (checked, or the test is moot).
    import socket

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 9092)) == 0:
            pytest.skip("something listens on 127.0.0.1:9092")
    result = run([sys.executable, str(ROOT / "examples" / "quickstart.py")], tmp_path)
    assert_one_clean_line(result, "127.0.0.1:9092")
