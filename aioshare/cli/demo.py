"""`aioshare demo`: the main job on an embedded broker."""

from __future__ import annotations


def run_demo() -> int:
    # Placeholder until the runtime issue lands: the demo drives a share group of workers
    # through the runtime, which does not exist yet.
    print("aioshare demo: the job-queue demo arrives with the runtime (issue 5); nothing to run yet.")
    return 0
