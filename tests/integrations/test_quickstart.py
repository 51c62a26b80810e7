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
    summary = done.stdout.strip().splitlines()[-1]
    sent, dead = int(summary.split()[0]), int(summary.split(",")[1].split()[0])
    assert sent + dead == 10 and dead >= 1  # "not-an-address" is always dead-lettered
    assert "sent to user" in done.stdout
