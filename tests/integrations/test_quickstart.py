"""examples/quickstart.py --embedded runs to its end and accounts for every email."""

from __future__ import annotations

import subprocess
import sys

from .conftest import EXAMPLES


def test_the_quickstart_runs_on_the_embedded_broker() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--embedded"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    # The same every run: the 9 valid addresses are sent (2 after the busy server's retry), and
    # only "not-an-address" is dead-lettered.
    assert lines[-1] == "9 sent, 1 dead-lettered to emails.dlq, 2 retries"
    assert sorted(lines[:-1]) == sorted(f"sent to user{i}@example.com" for i in range(9))
