"""mqtt_spc raises alerts for rule violations and writes points with limits; mqtt_tech keeps
the current configuration and its history; alerts are deduplicated, kept, streamed and
delivered to webhooks, and a failing webhook retries the job, then dead-letters it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from conveyor_plant import PlantState
from conveyor_plant.keys import ALERT_HISTORY, tech_config
from conveyor_worker import SinkSettings
from redis.asyncio import Redis

from conveyor.local_servers import InfluxServer
from reliable_queue import Job, QueueClient
from tests.helpers import eventually
from tests.servers import free_port
from tests.worker.conftest import StartWorker, message

pytestmark = pytest.mark.integration
TS = 1_750_000_000_000


async def test_spc_rule_violation_becomes_an_alert(
    client: QueueClient, influx: InfluxServer, start_worker: StartWorker
) -> None:
    in_control = [10.0 + (0.05 if i % 2 else -0.05) * (1 + i % 3) for i in range(25)]
    values = [*in_control, 10.9]  # far beyond 3 sigma of the window
    await client.set_policy("alerts", default_priority=10)  # the alerts MessageQueue's priority
    await client.enqueue_many(
        "mqtt_spc",
        [
            message("spc", "lathe", {"characteristic": "bore", "value": v, "timestamp": TS + i})
            for i, v in enumerate(values)
        ],
    )
    await start_worker("mqtt_spc", settings=SinkSettings(spc_min_points=20), batch_size=5)

    async def alerted() -> bool:
        return (await client.queue_stats("alerts")).pending >= 1

    await eventually(alerted, timeout=20, what="an alert on the alerts queue")
    await eventually(lambda: _done(client, "mqtt_spc", len(values)), what="all SPC jobs done")
    alerts: list[Job] = []

    async def take(job: Job) -> None:
        alerts.append(job)

    stop = await client.start_worker("alerts", take)
    await eventually(lambda: bool(alerts), what="alert received")
    await stop()
    assert len(alerts) == 1  # the in-control points raised nothing
    alert = alerts[0].data
    assert alert["type"] == "spc_rule_1:bore"
    assert alert["severity"] == "critical"
    assert alert["details"]["values"] == [10.9]
    assert alert["details"]["limits"]["ucl"] < 10.9
    assert alerts[0].priority == 10  # the alerts queue's own, not one the worker chose
    rows = influx.query("SELECT value, ucl, lcl, rules FROM spc WHERE characteristic='bore'")
    points = rows[0]["values"]  # type: ignore[index]
    assert len(points) == len(values)
    assert points[-1][1] == 10.9
    assert points[-1][2] is not None
    assert points[0][2] is None  # too few points for limits yet
    # The point carries the rule it broke, for the control chart; the others none.
    assert [p[4] for p in points] == [None] * len(in_control) + ["1"]


async def test_tech_keeps_current_config_history_and_changes(
    client: QueueClient, influx: InfluxServer, start_worker: StartWorker, raw_redis: Redis
) -> None:
    pubsub = raw_redis.pubsub()
    await pubsub.subscribe("conveyor:live:cnc-1")
    docs = [
        {"fw": "1.0", "feed": 100, "timestamp": TS},
        {"fw": "1.0", "feed": 100, "timestamp": TS + 1},
        {"fw": "1.1", "feed": 100, "timestamp": TS + 2},
    ]
    await client.enqueue_many("mqtt_tech", [message("tech", "cnc-1", d) for d in docs])
    await start_worker("mqtt_tech", batch_size=1)
    await eventually(lambda: _done(client, "mqtt_tech", 3), what="tech jobs done")
    current = json.loads(await raw_redis.get(tech_config("cnc-1")))
    assert current["version"] == 2  # the repeat of 1.0 was not a change
    assert current["config"] == {"fw": "1.1", "feed": 100}
    rows = influx.query("SELECT version, config FROM tech WHERE machine='cnc-1'")
    assert [r[1] for r in rows[0]["values"]] == [1, 2]  # type: ignore[index]
    events = await _drain(pubsub, 2)
    assert [e["changed"] for e in events] == [["feed", "fw"], ["fw"]]


@pytest.fixture
async def webhook() -> AsyncIterator[dict[str, Any]]:
    """A local HTTP endpoint that records POSTs and answers with ``state['status']``."""
    state: dict[str, Any] = {"status": 200, "received": []}

    async def handle(request: web.Request) -> web.Response:
        state["received"].append(await request.json())
        return web.Response(status=state["status"], text="ok" if state["status"] < 300 else "boom")

    app = web.Application()
    app.router.add_post("/hook/s3cr3t-path-token", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    # A chat webhook's secret is its path: it must never show in an error or a dead letter.
    state["url"] = f"http://127.0.0.1:{port}/hook/s3cr3t-path-token"
    yield state
    await runner.cleanup()


async def test_alerts_are_deduplicated_kept_streamed_and_delivered(
    client: QueueClient, start_worker: StartWorker, webhook: dict[str, Any], raw_redis: Redis
) -> None:
    pubsub = raw_redis.pubsub()
    await pubsub.subscribe("conveyor:live:press-2")
    overheat = {"type": "overheat", "severity": "critical", "message": "120 C"}
    await client.enqueue_many(
        "alerts",
        [
            message("alert", "press-2", overheat),
            message("alert", "press-2", overheat),  # a repeat within the window: folded
            message("alert", "press-2", {"type": "door_open", "severity": "info"}),
        ],
    )
    worker = await start_worker(
        "alerts", settings=SinkSettings(webhooks=(webhook["url"],)), with_influx=False
    )
    await eventually(lambda: _done(client, "alerts", 3), what="alerts done")
    assert [p["alert"]["type"] for p in webhook["received"]] == ["overheat", "door_open"]
    history = await raw_redis.xrange(ALERT_HISTORY)
    assert [json.loads(fields[b"alert"])["type"] for _, fields in history] == [
        "overheat",
        "door_open",
    ]
    assert [e["type"] for e in await _drain(pubsub, 2)] == ["overheat", "door_open"]
    assert worker.counters.processed == 3


async def test_delivered_alerts_become_points_and_an_influxdb_outage_delays_none(
    client: QueueClient,
    start_worker: StartWorker,
    influx: InfluxServer,
    raw_redis: Redis,
    webhook: dict[str, Any],
) -> None:
    """Each delivered alert is a point of ``alerts`` (a dashboard's annotation), a folded repeat
    none; with InfluxDB away the alerts are delivered all the same, their points counted as
    dropped, never retried (which would deliver them twice)."""
    overheat = {"type": "overheat", "severity": "critical", "message": "120 C", "timestamp": TS}
    resolved = {"type": "overheat", "severity": "info", "timestamp": TS + 5, "state": "resolved"}
    jobs = [message("alert", "press-4", d) for d in (overheat, overheat, resolved)]
    await client.enqueue_many("alerts", jobs)
    settings = SinkSettings(webhooks=(webhook["url"],))
    first = await start_worker("alerts", settings=settings)
    await eventually(lambda: _done(client, "alerts", 3), what="alerts done")
    [series] = influx.query(
        "SELECT message, state, severity FROM alerts WHERE machine='press-4' AND type='overheat'"
    )
    assert series["values"] == [  # type: ignore[index]
        ["2025-06-15T15:06:40Z", "120 C", None, "critical"],
        ["2025-06-15T15:06:40.005Z", "overheat", "resolved", "info"],
    ]
    await first.stop()

    gone = f"http://127.0.0.1:{free_port()}"
    later = message("alert", "press-5", {"type": "door_open", "severity": "warning"})
    await client.enqueue_many("alerts", [later])
    worker = await start_worker("alerts", settings=settings, influx_url=gone)
    await eventually(lambda: _done(client, "alerts", 4), what="the alert delivered")
    assert webhook["received"][-1]["alert"]["type"] == "door_open"
    assert worker.counters.processed == 1
    assert (await client.queue_stats("alerts")).retried == 0
    assert not influx.query("SELECT * FROM alerts WHERE machine='press-5'")


async def test_failing_webhook_retries_then_dead_letters(
    client: QueueClient, start_worker: StartWorker, webhook: dict[str, Any], raw_redis: Redis
) -> None:
    webhook["status"] = 500
    await client.set_policy("alerts", max_retries=2, backoff_base_s=0.2)
    await client.enqueue("alerts", message("alert", "press-3", {"type": "fire"}), job_id="a1")
    await start_worker(
        "alerts", settings=SinkSettings(webhooks=(webhook["url"],)), with_influx=False
    )

    async def dead() -> bool:
        return await client.job_state("alerts", "a1") == "dead"

    await eventually(dead, timeout=20, what="alert dead-lettered after its retries")
    assert [p["attempt"] for p in webhook["received"]] == [1, 2, 3]
    [letter] = await client.dead_letters("alerts")
    assert "answered 500" in letter.error
    assert f"http://127.0.0.1:{webhook['url'].split(':')[2].split('/')[0]}/..." in letter.error
    assert "s3cr3t" not in letter.error
    assert await raw_redis.xlen(ALERT_HISTORY) == 0  # never recorded as delivered


async def _done(client: QueueClient, queue: str, n: int) -> bool:
    return (await client.queue_stats(queue)).completed >= n


async def _drain(pubsub: Any, n: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    async def received() -> bool:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if msg is not None:
            events.append(json.loads(msg["data"]))
        return len(events) >= n

    await eventually(
        received, timeout=5, interval=0, what=f"{n} live events", detail=lambda: f"got {events}"
    )
    await pubsub.aclose()
    return events


async def test_a_resolve_is_delivered_and_ends_the_fold(
    client: QueueClient, start_worker: StartWorker, webhook: dict[str, Any]
) -> None:
    """Firing, a repeat (folded), the resolve (delivered though of the same type), a new
    firing after it and its resolve (each news again). The operator's queue alerts carry
    details.state; a machine's MQTT alert gets it from a top-level "state", as here."""

    def queue_alert(state: str) -> dict[str, Any]:
        severity = "warning" if state == "firing" else "info"
        doc = {"type": "queue_depth", "severity": severity, "state": state}
        return message("alert", "orders", doc)

    await client.enqueue_many(
        "alerts",
        [queue_alert("firing"), queue_alert("firing"), queue_alert("resolved")],
    )
    await start_worker(
        "alerts", settings=SinkSettings(webhooks=(webhook["url"],)), with_influx=False
    )
    await eventually(lambda: _done(client, "alerts", 3), what="three alerts done")
    await client.enqueue("alerts", queue_alert("firing"))
    await eventually(lambda: _done(client, "alerts", 4), what="the fourth alert done")
    await client.enqueue("alerts", queue_alert("resolved"))
    await eventually(lambda: _done(client, "alerts", 5), what="the fifth alert done")
    states = [p["alert"]["details"]["state"] for p in webhook["received"]]
    assert states == ["firing", "resolved", "firing", "resolved"]


async def test_a_node_offline_alert_marks_the_machines_values_as_its_last(
    client: QueueClient, redis_url: str, start_worker: StartWorker
) -> None:
    """A Sparkplug B death's alert (the ingestor's node_offline) marks the machine offline in
    the latest-value cache, as the gateway and the dashboard read it; its resolve clears it."""
    machine = "plant/line7"

    def offline(state: str, at: int = TS + 5) -> dict[str, Any]:
        return {
            "machine": machine,
            "topic": "spBv1.0/plant/NDEATH/line7",
            "received_at": at,
            "kind": "alert",
            "ts": TS + 4 if state == "firing" else None,
            "type": "node_offline",
            "severity": "warning" if state == "firing" else "info",
            "message": f"{machine} {'went offline' if state == 'firing' else 'is back online'}",
            "details": {"state": state, "node": machine, "device": None},
        }

    await client.enqueue("mqtt_realtime", message("realtime", machine, {"ts": TS, "speed": 4.2}))
    await start_worker("mqtt_realtime", with_influx=False)
    await start_worker("alerts", with_influx=False)
    async with PlantState.from_url(redis_url) as plant:

        async def state() -> Any:
            return await plant.machine_state(machine)

        await eventually(state, what="the machine's values cached")
        await client.enqueue("alerts", offline("firing"))
        await eventually(lambda: _done(client, "alerts", 1), what="the death's alert done")
        dead = await state()
        assert dead.offline_since_ms == TS + 5  # when the ingestor took the NDEATH
        assert dead.values == {"speed": 4.2}  # the last values stay, marked
        await client.enqueue("alerts", offline("resolved", at=TS + 9))
        await eventually(lambda: _done(client, "alerts", 2), what="the birth's alert done")
        assert (await state()).offline_since_ms is None
        # A firing older than the resolve (a webhook retry, done late) marks nothing.
        late = {**offline("firing"), "message": "late"}  # not folded: another message
        await client.enqueue("alerts", late)
        await eventually(lambda: _done(client, "alerts", 3), what="the late firing done")
        assert (await state()).offline_since_ms is None
