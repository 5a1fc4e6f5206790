"""A worker process for one queue: its processor (or a custom handler) under the queue's
worker, with timing, metrics and the sinks it needs."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from conveyor_worker.metrics import WorkerMetrics
from conveyor_worker.processors import Context, Processor, processor_for
from reliable_queue import Job, JobHandler, QueueClient, Worker


def build_worker(
    *,
    client: QueueClient,
    queue: str,
    ctx: Context,
    concurrency: int,
    batch_size: int,
    drain_timeout: float,
    custom: JobHandler | None = None,
) -> Worker | None:
    """The worker of ``queue``: ``custom`` if given, else the queue's processor; None if the
    queue has no processor and no custom handler was given."""
    metrics = ctx.metrics
    if custom is not None:
        worker = client.worker(
            queue,
            _timed_job(custom, queue, metrics),
            concurrency=concurrency,
            drain_timeout=drain_timeout,
        )
    else:
        processor = processor_for(queue, ctx)
        if processor is None:
            return None
        worker = client.worker(
            queue,
            _timed_batch(processor, queue, metrics),
            concurrency=concurrency,
            batch_size=batch_size,
            drain_timeout=drain_timeout,
        )
    metrics.watch(worker)
    return worker


def _timed_batch(processor: Processor, queue: str, metrics: WorkerMetrics) -> Processor:
    histogram = metrics.handler_seconds.labels(queue)

    async def run(jobs: Sequence[Job]) -> Mapping[str, Exception] | None:
        started = time.perf_counter()
        try:
            return await processor(jobs)
        finally:
            histogram.observe(time.perf_counter() - started)

    return run


def _timed_job(handler: JobHandler, queue: str, metrics: WorkerMetrics) -> JobHandler:
    histogram = metrics.handler_seconds.labels(queue)

    async def run(job: Job) -> object:
        started = time.perf_counter()
        try:
            return await handler(job)
        finally:
            histogram.observe(time.perf_counter() - started)

    return run
