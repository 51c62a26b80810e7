"""`aioshare broker` in a child process, so that broker CPU is never counted as client CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")
_ANNOUNCE = "aioshare broker listening on "


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may contain spaces; the fields after its closing parenthesis are fixed.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class BrokerProcess:
    def __init__(self, config: Mapping[str, str] | None = None) -> None:
        args = [sys.executable, "-m", "aioshare.cli.main", "broker", "--port", "0"]
        for key, value in (config or {}).items():
            args += ["--config", f"{key}={value}"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith(_ANNOUNCE):
            self.close()
            raise RuntimeError(f"broker did not start: {line!r}")
        self.bootstrap = line[len(_ANNOUNCE) :].strip()

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
