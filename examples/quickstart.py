"""The README's quickstart: a share group of email senders with retries and a dead-letter topic.

python examples/quickstart.py --embedded     # embedded broker: produce 10 jobs, handle them, exit
aioshare run quickstart:app --app-dir examples --embedded     # serve until Ctrl-C
aioshare run quickstart:app --app-dir examples -b kafka:9092  # a real cluster (Kafka >= 4.2)
"""

from __future__ import annotations

import asyncio
import sys
import zlib

import aioshare

app = aioshare.App("127.0.0.1:9092")


async def smtp_send(to: str, attempt: int) -> None:
    """A stand-in for a mail server that is busy on the first try for some addresses.

    Which ones is fixed (a checksum of the address), so every run ends the same way: a busy
    server is a transient failure, and the retry (the record's next delivery) sends the email.
    """
    if attempt == 1 and zlib.crc32(to.encode()) % 4 == 0:
        raise ConnectionError("mail server busy")
    await asyncio.sleep(0.05)
    print(f"sent to {to}")


@app.handler(
    "emails",
    group_id="mailers",
    concurrency=20,
    retry=aioshare.Backoff(initial=0.2, max=5.0),
    max_attempts=3,
    dead_letter_topic="emails.dlq",
)
async def send_email(msg: aioshare.Message[bytes]) -> None:
    to = msg.value.decode()
    if "@" not in to:
        raise aioshare.Reject(f"not an address: {to!r}", dead_letter=True)  # never retried
    # An exception here: retried with backoff, then dead-lettered after max_attempts deliveries.
    await smtp_send(to, attempt=msg.delivery_count)
    # returning ACCEPTs the record; start more processes and they share the work


async def embedded_run(jobs: int = 10) -> int:
    """An embedded broker, ``jobs`` emails (one address is bad), the app until all are settled."""
    from aioshare.testing import embedded_for, run_app_until

    async with embedded_for(app) as broker:
        values = [f"user{i}@example.com" for i in range(jobs - 1)] + ["not-an-address"]
        # The broker runs on this loop: produce with any Kafka client.
        from aiokafka import AIOKafkaProducer

        async with AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers) as producer:
            for value in values:
                await producer.send_and_wait("emails", value.encode())
        recorder = await run_app_until(app, handled=jobs, timeout=60)
    final = recorder.final()
    accepted = sum(1 for kind in final.values() if kind == "accepted")
    dead = sum(1 for kind in final.values() if kind == "dead_lettered")
    print(f"{accepted} sent, {dead} dead-lettered to emails.dlq, {len(recorder.kinds('retried'))} retries")
    return 0 if accepted + dead == jobs else 1


if __name__ == "__main__":
    if "--embedded" in sys.argv[1:]:
        sys.exit(asyncio.run(embedded_run()))
    app.run()
