"""A web service that queues jobs on a Kafka share group and works them off, with FastAPI.

    python examples/fastapi_app.py --embedded            # embedded broker + uvicorn on :8000
    python examples/fastapi_app.py -b kafka:9092         # a real cluster (Kafka >= 4.2)

    curl -X POST localhost:8000/jobs -H 'content-type: application/json' -d '{"task": "resize", "size": 3}'
    curl localhost:8000/jobs/<id>                         # 404 until a worker handled it
    curl localhost:8000/stats

POST /jobs produces the job to the "jobs" topic; the aioshare App running inside the same
process (``aioshare.integrations.fastapi.lifespan``) consumes it as a member of the share
group "job-workers" - start more copies of the service and they share the work, whatever
the number of partitions.  Needs the ``fastapi`` extra: ``pip install 'aioshare[fastapi]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

import aioshare
from aioshare.integrations.fastapi import lifespan

TOPIC = "jobs"
GROUP = "job-workers"


class JobIn(BaseModel):
    task: str
    size: int = 1


class Job(msgspec.Struct):
    id: str
    task: str
    size: int
    submitted: float


def create_app(bootstrap_servers: str = "127.0.0.1:9092") -> FastAPI:
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

    @contextlib.asynccontextmanager
    async def producing(_api: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Runs inside the aioshare lifespan: started after the worker, stopped before it.
        producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap_servers, acks="all")
        await producer.start()
        try:
            yield {"producer": producer}
        finally:
            await producer.stop()

    api = FastAPI(title="aioshare jobs", lifespan=lifespan(worker, inner=producing))
    api.state.worker = worker  # for tests and --embedded: the routes' topics and groups

    @api.post("/jobs", status_code=202)
    async def submit(job: JobIn, request: Request) -> dict[str, Any]:
        job_id = uuid.uuid4().hex
        record = Job(id=job_id, task=job.task, size=job.size, submitted=time.time())
        meta = await request.state.producer.send_and_wait(
            TOPIC, msgspec.json.encode(record), key=job_id.encode()
        )
        return {"id": job_id, "partition": meta.partition, "offset": meta.offset}

    @api.get("/jobs/{job_id}")
    async def result(job_id: str) -> dict[str, Any]:
        if job_id not in results:
            raise HTTPException(404, "not handled (yet)")
        return results[job_id]

    @api.get("/stats")
    async def stats(request: Request) -> dict[str, Any]:
        app: aioshare.App = request.state.aioshare
        m = app.metrics
        return {
            "consuming": app.running,
            "failure": repr(app.failure) if app.failure is not None else None,
            "handled": len(results),
            "accepted": int(m.value("records-accepted-total")),
            "dead_lettered": int(m.value("records-dead-lettered-total")),
            "retried": int(m.value("records-retried-total")),
            "running": int(m.value("handlers-running")),
        }

    return api


async def serve(bootstrap: str | None, host: str, port: int) -> None:
    import uvicorn

    from aioshare.testing import embedded_for

    async with contextlib.AsyncExitStack() as stack:
        api = create_app(bootstrap or "127.0.0.1:9092")
        if bootstrap is None:
            broker = await stack.enter_async_context(embedded_for(api.state.worker))
            print(f"embedded broker on {broker.bootstrap_servers}", flush=True)
        server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level="info"))
        await server.serve()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-b", "--bootstrap-servers")
    where.add_argument("--embedded", action="store_true", help="run an embedded broker in this process")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    asyncio.run(serve(args.bootstrap_servers, args.host, args.port))


if __name__ == "__main__":
    main()
