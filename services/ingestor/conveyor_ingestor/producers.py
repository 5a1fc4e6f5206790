"""Producer helpers for other services, as in the original design: validate like the
ingestor, then enqueue on the queue the routing table names."""

from __future__ import annotations

import json
import time
from typing import Any

from conveyor_ingestor.errors import RoutingError
from conveyor_ingestor.payloads import parse_job
from conveyor_ingestor.routing import DEFAULT_ROUTES, RoutingTable
from reliable_queue import QueueClient

_DEFAULT_TABLE = RoutingTable(DEFAULT_ROUTES)


async def enqueue_alert(
    client: QueueClient,
    machine_id: str,
    alert: dict[str, Any],
    *,
    routes: RoutingTable = _DEFAULT_TABLE,
) -> str:
    """Queue an alert of ``machine_id`` (``{"type", "severity", "message", ...}``)."""
    return await _enqueue(client, f"{machine_id}/alerts", alert, routes)


async def enqueue_realtime(
    client: QueueClient, topic: str, data: Any, *, routes: RoutingTable = _DEFAULT_TABLE
) -> str:
    """Queue realtime values as if they had arrived on ``topic`` (e.g. ``m1/realtime``)."""
    return await _enqueue(client, topic, data, routes)


async def _enqueue(client: QueueClient, topic: str, data: Any, routes: RoutingTable) -> str:
    match = routes.match(topic)
    if match is None:
        raise RoutingError(f"no route for topic {topic!r}")
    kind = match.route.kind
    if kind == "sparkplug":
        raise RoutingError(f"{topic!r} is a Sparkplug B topic: its payloads are protobuf")
    job, _ = parse_job(
        kind,
        machine=match.machine,
        topic=topic,
        payload=json.dumps(data).encode(),
        received_at=int(time.time() * 1000),
    )
    return await client.enqueue(match.route.queue, job, priority=match.route.priority)
