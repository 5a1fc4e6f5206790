"""Every message of a burst lands in the right queue with the right priority, normalised;
malformed ones land in dead:ingest with their reason; unrouted ones are counted."""

from __future__ import annotations

import asyncio
import json

import pytest
from conveyor_ingestor import Ingestor
from conveyor_messages import DEFAULT_QUEUES

from reliable_queue import Job, QueueClient
from tests.helpers import eventually
from tests.mqtt import publish
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration


async def test_burst_is_routed_by_topic(
    ingestor: Ingestor, mosquitto: MosquittoServer, client: QueueClient
) -> None:
    for q in DEFAULT_QUEUES:  # what the operator writes from the chart's MessageQueues
        await client.set_policy(q.name, default_priority=q.priority)
    messages = []
    for i in range(250):
        m = f"press-{i % 5}"
        messages += [
            (f"{m}/realtime", json.dumps({"temp": 20 + i % 7, "timestamp": 1_700_000_000_000 + i})),
            (f"{m}/spc", json.dumps({"characteristic": "bore", "value": 10.0 + i / 1000})),
            (f"{m}/tech", json.dumps({"firmware": f"1.{i}"})),
            (f"{m}/alerts", json.dumps({"type": "overheat", "severity": "critical", "n": i})),
        ]
    sent = await asyncio.to_thread(publish, mosquitto.port, [(t, p.encode()) for t, p in messages])
    assert sent == 1000
    expected = {"mqtt_realtime": 250, "mqtt_spc": 250, "mqtt_tech": 250, "alerts": 250}

    async def all_queued() -> bool:
        stats = await client.stats()
        return all(stats["queues"].get(q, {}).get("pending") == n for q, n in expected.items())

    await eventually(all_queued, timeout=20, what="1000 jobs in their queues")

    seen: dict[str, list[Job]] = {q: [] for q in expected}

    async def take(job: Job) -> None:
        seen[job.queue].append(job)

    stops = [await client.start_worker(q, take, concurrency=8) for q in expected]
    await eventually(lambda: sum(map(len, seen.values())) == 1000, what="all processed")
    for stop in stops:
        await stop()
    priorities = {q: {j.priority for j in jobs} for q, jobs in seen.items()}
    assert priorities == {"alerts": {10}, "mqtt_realtime": {5}, "mqtt_spc": {3}, "mqtt_tech": {1}}
    assert priorities == {q.name: {q.priority} for q in DEFAULT_QUEUES}
    realtime = seen["mqtt_realtime"][0].data
    assert realtime["kind"] == "realtime"
    assert realtime["machine"].startswith("press-")
    assert realtime["samples"][0]["values"]["temp"] >= 20
    assert realtime["samples"][0]["ts"] >= 1_700_000_000_000
    alert = seen["alerts"][0].data
    assert (alert["type"], alert["severity"]) == ("overheat", "critical")
    assert {j.data["machine"] for j in seen["mqtt_spc"]} == {f"press-{k}" for k in range(5)}
    assert ingestor.metrics.received._value.get() == 1000


async def test_malformed_and_oversized_payloads_go_to_dead_ingest(
    ingestor: Ingestor, mosquitto: MosquittoServer, client: QueueClient
) -> None:
    bad = [
        ("m1/realtime", b"{not json"),
        ("m1/realtime", b'{"temp": {"nested": [1]}}'),
        ("m1/spc", b'{"characteristic": "bore", "value": "big"}'),
        ("m1/alerts", b'{"severity": "critical"}'),
        ("m1/tech", b"\xff\xfe\x00binary"),
        ("m1/realtime", b'{"v": "' + b"x" * 300_000 + b'"}'),
        ("m1/realtime", b'{"temp": 1, "timestamp": "yesterday"}'),
    ]
    assert await asyncio.to_thread(publish, mosquitto.port, bad) == len(bad)

    async def all_dead() -> bool:
        return await client.dead_letter_count("dead:ingest") == len(bad)

    await eventually(all_dead, timeout=10, what="every bad message in dead:ingest")
    letters = {d.reason: d for d in await client.dead_letters("ingest")}
    assert set(letters) == {
        "not_json",
        "bad_value",
        "no_alert",
        "not_utf8",
        "oversized",
        "bad_timestamp",
    }
    assert letters["not_json"].data["payload"] == "{not json"
    assert letters["not_json"].data["topic"] == "m1/realtime"
    assert "expects a realtime message" in letters["not_json"].error
    assert "payload_base64" in letters["not_utf8"].data
    oversized = letters["oversized"]
    assert oversized.data["truncated"] is True
    assert oversized.data["payload_bytes"] > 300_000
    assert "INGEST_MAX_PAYLOAD_BYTES" in oversized.error
    assert (await client.queue_stats("mqtt_realtime")).pending == 0


async def test_unrouted_topics_are_counted_not_queued(
    ingestor: Ingestor, client: QueueClient
) -> None:
    # The subscription is '+/realtime', so '/realtime' (an empty machine level) reaches the
    # ingestor but names no machine: counted, acknowledged, not queued.
    assert await asyncio.to_thread(publish, _port(ingestor), [("/realtime", b'{"t": 1}')]) == 1
    await eventually(lambda: ingestor.metrics.unrouted._value.get() == 1, what="unrouted")
    assert (await client.queue_stats("mqtt_realtime")).pending == 0


def _port(ingestor: Ingestor) -> int:
    return ingestor.subscriber.config.port
