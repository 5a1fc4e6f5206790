"""Workers of the default queues in-process, against real Redis and InfluxDB."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conveyor_ingestor import parse_message
from conveyor_worker import InfluxConfig, InfluxSink, SinkSettings, build_worker

from conveyor.local_servers import InfluxServer
from reliable_queue import QueueClient, Worker
from tests.helpers import worker_context

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
async def start_worker(
    client: QueueClient, redis_url: str, influx: InfluxServer
) -> AsyncIterator[StartWorker]:
    started: list[Worker] = []
    contexts = contextlib.AsyncExitStack()

    async def start(
        queue: str,
        *,
        settings: SinkSettings | None = None,
        with_influx: bool = True,
        influx_url: str | None = None,
        batch_size: int = 100,
        concurrency: int = 1,
    ) -> Worker:
        url = influx_url or influx.url  # another: an InfluxDB that is not there
        sink = InfluxSink(InfluxConfig(url=url, bucket=influx.bucket)) if with_influx else None
        ctx = await contexts.enter_async_context(
            worker_context(client, redis_url, influx=sink, settings=settings)
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
        started.append(worker)
        return worker

    async with contexts:  # closed once every worker has stopped
        yield start
        for worker in started:
            await worker.stop()
