"""A web service that queues jobs on a Kafka share group and works them off, with aiohttp.

    python examples/aiohttp_app.py --embedded            # embedded broker + aiohttp on :8080
    python examples/aiohttp_app.py -b kafka:9092         # a real cluster (Kafka >= 4.2)

    curl -X POST localhost:8080/jobs -d '{"task": "resize", "size": 3}'
    curl localhost:8080/jobs/<id>                         # 404 until a worker handled it
    curl localhost:8080/stats

The same service as examples/fastapi_app.py, on aiohttp: the aioshare App runs in the web
application's cleanup context (``aioshare.integrations.aiohttp.setup``).  Needs the
``aiohttp`` extra: ``pip install 'aioshare[aiohttp]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer

import aioshare
from aioshare.integrations.aiohttp import AIOSHARE_APP, setup

TOPIC = "jobs"
GROUP = "job-workers"

PRODUCER = web.AppKey("producer", AIOKafkaProducer)
WORKER = web.AppKey("worker", aioshare.App)  # for tests and --embedded: the routes' topics and groups


class Job(msgspec.Struct):
    id: str
    task: str
    size: int
    submitted: float


class JobIn(msgspec.Struct):
    task: str
    size: int = 1


def create_app(bootstrap_servers: str = "127.0.0.1:9092") -> web.Application:
    worker = aioshare.App(bootstrap_servers, shutdown_timeout=10.0)
    results: dict[str, dict[str, Any]] = {}

    @worker.handler(
        TOPIC,
        group_id=GROUP,
        concurrency=20,
        retry=aioshare.Backoff(initial=0.5, max=10.0),
        max_attempts=5,
        dead_letter_topic=f"{TOPIC}.dlq",
        value_type=Job,
    )
    async def process(msg: aioshare.Message[Job]) -> None:
        job = msg.value
        if job.size < 0:
            raise aioshare.Reject("a negative size never works", dead_letter=True)
        await asyncio.sleep(0.01 * job.size)  # the work: an HTTP call, a database write...
        results[job.id] = {
            "task": job.task,
            "handled_after": round(time.time() - job.submitted, 3),
            "delivery_count": msg.delivery_count,
            "offset": msg.offset,
        }

    async def producing(web_app: web.Application) -> AsyncIterator[None]:
        # Appended after the aioshare context: started after the worker, closed before it.
        producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap_servers, acks="all")
        await producer.start()
        web_app[PRODUCER] = producer
        try:
            yield
        finally:
            await producer.stop()

    async def submit(request: web.Request) -> web.Response:
        try:
            job = msgspec.json.decode(await request.read(), type=JobIn)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        job_id = uuid.uuid4().hex
        record = Job(id=job_id, task=job.task, size=job.size, submitted=time.time())
        meta = await request.app[PRODUCER].send_and_wait(
            TOPIC, msgspec.json.encode(record), key=job_id.encode()
        )
        return web.json_response(
            {"id": job_id, "partition": meta.partition, "offset": meta.offset}, status=202
        )

    async def result(request: web.Request) -> web.Response:
        found = results.get(request.match_info["job_id"])
        if found is None:
            raise web.HTTPNotFound(text="not handled (yet)")
        return web.json_response(found)

    async def stats(request: web.Request) -> web.Response:
        app = request.app[AIOSHARE_APP]
        m = app.metrics
        return web.json_response(
            {
                "consuming": app.running,
                "failure": repr(app.failure) if app.failure is not None else None,
                "handled": len(results),
                "accepted": int(m.value("records-accepted-total")),
                "dead_lettered": int(m.value("records-dead-lettered-total")),
                "retried": int(m.value("records-retried-total")),
                "running": int(m.value("handlers-running")),
            }
        )

    web_app = web.Application()
    setup(web_app, worker)
    web_app.cleanup_ctx.append(producing)
    web_app.add_routes(
        [web.post("/jobs", submit), web.get("/jobs/{job_id}", result), web.get("/stats", stats)]
    )
    web_app[WORKER] = worker
    return web_app


async def serve(bootstrap: str | None, host: str, port: int) -> None:
    from aioshare.testing import embedded_for

    # Installed first: a SIGTERM during startup also ends in a graceful cleanup.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        web_app = create_app(bootstrap or "127.0.0.1:9092")
        if bootstrap is None:
            broker = await stack.enter_async_context(embedded_for(web_app[WORKER]))
            print(f"embedded broker on {broker.bootstrap_servers}", flush=True)
        runner = web.AppRunner(web_app)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, host, port).start()
        print(f"serving on http://{host}:{port}", flush=True)
        await stop.wait()  # then the cleanup contexts stop the App and the producer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-b", "--bootstrap-servers")
    where.add_argument("--embedded", action="store_true", help="run an embedded broker in this process")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    asyncio.run(serve(args.bootstrap_servers, args.host, args.port))


if __name__ == "__main__":
    main()
