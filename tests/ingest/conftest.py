"""An in-process ingestor against the real broker and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from conveyor_ingestor import (
    DEFAULT_ROUTES,
    IngestOptions,
    Ingestor,
    RoutingTable,
    Subscriber,
    broker_config,
)

from reliable_queue import QueueClient
from tests.helpers import eventually
from tests.servers import MosquittoServer

RunningIngestor = Callable[..., AsyncIterator[Ingestor]]


@pytest.fixture
async def ingestor(mosquitto: MosquittoServer, client: QueueClient) -> AsyncIterator[Ingestor]:
    """An ingestor on the default routes with a client id of its own; ready when yielded."""
    config = broker_config(mosquitto.url, client_id=f"ingest-{uuid.uuid4().hex[:8]}")
    routes = RoutingTable(DEFAULT_ROUTES)
    subscriber = Subscriber(config, routes.filters)
    ing = Ingestor(client=client, subscriber=subscriber, routes=routes, options=IngestOptions())
    await subscriber.start()
    task = asyncio.create_task(ing.run())
    # Ready: the broker acknowledged every subscription (SUBACK) and Redis answers.
    await eventually(lambda: ing.ready, what="the ingestor subscribed and ready")
    yield ing
    ing.stop()
    await task
    await subscriber.stop()
