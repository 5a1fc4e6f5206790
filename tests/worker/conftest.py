"""Workers of the default queues in-process, against real Redis and InfluxDB."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conveyor_ingestor import parse_message
from conveyor_plant import PlantState
from conveyor_worker import (
    Context,
    InfluxConfig,
    InfluxSink,
    SinkSettings,
    WorkerMetrics,
    build_worker,
)

from conveyor.local_servers import InfluxServer
from reliable_queue import QueueClient, Worker

StartWorker = Callable[..., Any]


def message(kind: Any, machine: str, doc: Any) -> dict[str, Any]:
    """A job as the ingestor makes it."""
    topic = f"{machine}/{'alerts' if kind == 'alert' else kind}"
    parsed = parse_message(
        kind,
        machine=machine,
        topic=topic,
        payload=json.dumps(doc).encode(),
        received_at=int(time.time() * 1000),
    )
    return dict(parsed)


@pytest.fixture
async def start_worker(client: QueueClient, influx: InfluxServer) -> AsyncIterator[StartWorker]:
    started: list[tuple[Worker, Context]] = []

    async def start(
        queue: str,
        *,
        settings: SinkSettings | None = None,
        with_influx: bool = True,
        batch_size: int = 100,
        concurrency: int = 1,
    ) -> Worker:
        sink = (
            InfluxSink(InfluxConfig(url=influx.url, bucket=influx.bucket)) if with_influx else None
        )
        ctx = Context(
            client=client,
            plant=PlantState(client.redis),
            influx=sink,
            settings=settings or SinkSettings(),
            metrics=WorkerMetrics(),
        )
        worker = build_worker(
            client=client,
            queue=queue,
            ctx=ctx,
            concurrency=concurrency,
            batch_size=batch_size,
            drain_timeout=5,
        )
        assert worker is not None
        await worker.start()
        started.append((worker, ctx))
        return worker

    yield start
    for worker, ctx in started:
        await worker.stop()
        await ctx.close()
