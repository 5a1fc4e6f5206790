"""Conveyor's side of the queue benchmark, run as separate producer and worker processes.

Every system in the benchmark is driven through the same protocol, so that each figure means
the same thing: the worker prints ``ready``, the producer prints ``start <t>`` and ``end <t>``,
and the worker prints ``done <t>`` when its handler has run N times (``t`` is time.time(), one
clock on one machine).

    python -m bench.conveyor_driver worker  --url URL --queue Q --n N [--mode ...]
    python -m bench.conveyor_driver produce --url URL --queue Q --n N [--mode ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from reliable_queue import Job, NewJob, QueueClient

PRODUCER_TASKS = 64


def say(*words: object) -> None:
    print(*words, flush=True)


async def work(args: argparse.Namespace) -> None:
    done = asyncio.Event()
    count = 0
    latencies: list[float] = []

    def seen(n: int) -> None:
        nonlocal count
        count += n
        if count >= args.n:
            done.set()

    async def noop(job: Job) -> None:
        seen(1)

    async def noop_batch(jobs: list[Job]) -> None:
        seen(len(jobs))

    async def timed(job: Job) -> None:
        latencies.append(time.time() - job.data["t"])
        seen(1)

    working = False

    async def urgent(job: Job) -> None:
        nonlocal working
        if job.id == "urgent":
            latencies.append(time.time() - job.data["t"])
            done.set()
        elif not working:
            working = True
            say("working")  # the backlog is being worked: the urgent job may come

    handler: Any = {"job": noop, "batch": noop_batch, "latency": timed, "urgent": urgent}[args.mode]
    async with QueueClient.from_url(args.url) as client:
        worker = client.worker(
            args.queue,
            handler,
            concurrency=args.concurrency,
            batch_size=args.batch_size if args.mode == "batch" else None,
        )
        await worker.start()
        say("ready")
        await done.wait()
        say("done", time.time())
        if latencies:
            say("latencies", json.dumps(latencies))
        await worker.stop()


async def produce(args: argparse.Namespace) -> None:
    payload = {"v": "x" * args.payload}
    async with QueueClient.from_url(args.url) as client:
        await client.ping()
        say("start", time.time())
        if args.mode == "batch":
            for start in range(0, args.n, 1000):
                count = min(1000, args.n - start)
                await client.enqueue_many(args.queue, [payload] * count, priority=args.priority)
        elif args.mode == "paced":
            interval = 1 / args.rate
            t0 = time.monotonic()
            for i in range(args.n):
                delay = t0 + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await client.enqueue(args.queue, {"t": time.time()})
        elif args.mode == "urgent":
            await client.enqueue_many(
                args.queue, [NewJob({"t": time.time()}, priority=10, job_id="urgent")]
            )
        else:
            per_task = args.n // PRODUCER_TASKS

            async def one_task(count: int) -> None:
                for _ in range(count):
                    await client.enqueue(args.queue, payload)

            counts = [per_task] * PRODUCER_TASKS
            counts[0] += args.n - per_task * PRODUCER_TASKS
            await asyncio.gather(*(one_task(c) for c in counts))
        say("end", time.time())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("worker", "produce"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", default="bench")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--mode", default="job")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--payload", type=int, default=16)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--priority", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(work(args) if args.role == "worker" else produce(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
