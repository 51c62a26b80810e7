"""`aioshare demo -b` on real Apache Kafka: the README's main job, accounted for job by job."""

from __future__ import annotations

import asyncio
import sys

from aioshare.testing.kafka.cluster import KafkaCluster


async def test_the_demo_accounts_for_every_job_on_real_kafka(kafka_cluster: KafkaCluster) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioshare.cli.main",
        "demo",
        "-b",
        kafka_cluster.bootstrap_servers,
        "--jobs",
        "300",
        "--lock-ms",
        "2000",
        "--crash-jobs",
        "10",
        "--plain",
        "--timeout",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    assert "OK: all 300 jobs accounted for" in text, text
    assert f"Kafka at {kafka_cluster.bootstrap_servers}" in text
    # The frozen member's jobs came back through their locks, and the broker holds nothing.
    assert "lag 0" in text, text
