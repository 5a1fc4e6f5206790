"""REST: stats with throughput, machines, alerts, dead letters (paged, replay and delete with a
token), probes, metrics, the OpenAPI document and errors a person can act on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conveyor_plant.keys import ALERT_HISTORY, latest_units, latest_values, tech_config

from reliable_queue import Job, NewDeadLetter
from tests.gateway.conftest import TOKEN, Gateway
from tests.helpers import wait_until
from tests.servers import RedisServer

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def noop(job: Job) -> None:
    return None


def test_stats_have_the_documented_shape_and_a_throughput(gateway: Gateway) -> None:
    gateway.run(gateway.client.enqueue_many, "alerts", [{"n": i} for i in range(40)])

    def samples() -> list[dict[str, Any]]:
        history = gateway.http.get("/stats/history?minutes=1").json()
        return history["queues"].get("alerts", [])

    # The sampler may have taken one before the enqueue, too: the oldest sample in the minute
    # is the base of the throughput, whichever it is.
    wait_until(lambda: any(s["pending"] == 40 for s in samples()), what="a sample of the 40")
    base = samples()[0]
    stats = gateway.http.get("/stats").json()
    assert stats["workers"] == "stopped"
    assert stats["queues"]["alerts"]["pending"] == 40
    assert stats["queues"]["alerts"]["completed_last_minute"] == 0

    stop = gateway.run(gateway.client.start_worker, "alerts", noop, concurrency=4)
    try:
        wait_until(
            lambda: gateway.http.get("/stats").json()["queues"]["alerts"]["completed"] == 40,
            what="40 jobs done",
        )
        q = gateway.http.get("/stats").json()["queues"]["alerts"]
        assert q["pending"] == 0
        assert q["completed_last_minute"] == 40
        assert q["enqueued_last_minute"] == 40 - base["enqueued"]
        assert 0 < q["rate_window_s"] <= 60
        assert q["rate_per_s"] == pytest.approx(40 / q["rate_window_s"], rel=0.05)
        wait_until(lambda: samples()[-1]["pending"] == 0, what="a sample of the drained queue")
        assert samples()[0] == base
    finally:
        gateway.run(stop)


def test_machine_values_and_configuration(gateway: Gateway, raw_redis: redis.Redis) -> None:
    raw_redis.hset(
        latest_values("press-7"),
        mapping={"temp": "21.5", "mode": '"AUTO"', "_ts": "1750000000000"},
    )
    raw_redis.set(
        tech_config("press-7"), json.dumps({"version": 3, "ts": 1, "config": {"rpm": 900}})
    )
    doc = gateway.http.get("/machines/press-7").json()
    assert doc == {
        "machine": "press-7",
        "values": {"temp": 21.5, "mode": "AUTO"},
        "updated_ms": 1_750_000_000_000,
        "config": {"version": 3, "ts": 1, "config": {"rpm": 900}},
        "offline_since_ms": None,
        "units": {},
    }
    raw_redis.hset(latest_units("press-7"), "temp", "°C")  # as the worker keeps them
    assert gateway.http.get("/machines/press-7").json()["units"] == {"temp": "°C"}
    raw_redis.hset(latest_values("press-7"), "_offline", "1750000000500")  # a Sparkplug death
    dead = gateway.http.get("/machines/press-7").json()
    assert dead["offline_since_ms"] == 1_750_000_000_500
    assert dead["values"] == {"temp": 21.5, "mode": "AUTO"}  # its last, marked as such
    raw_redis.hset(latest_values("plant/line1/press1"), mapping={"p": "2.5", "_ts": "1"})
    sparkplug = gateway.http.get("/machines/plant/line1/press1")  # a Sparkplug B device's id
    assert sparkplug.json()["values"] == {"p": 2.5}
    assert gateway.http.get("/machines/plant%2Fline1%2Fpress1").json() == sparkplug.json()
    listed = {"machines": ["plant/line1/press1", "press-7"], "truncated": False}
    assert gateway.http.get("/machines").json() == listed
    missing = gateway.http.get("/machines/press-8")
    assert missing.status_code == 404
    assert "nothing known of machine 'press-8'" in missing.json()["error"]


def test_alerts_newest_first(gateway: Gateway, raw_redis: redis.Redis) -> None:
    for i in range(3):
        alert = {"id": f"a{i}", "kind": "alert", "machine": "m", "type": f"t{i}"}
        raw_redis.xadd(ALERT_HISTORY, {"alert": json.dumps(alert)})
    alerts = gateway.http.get("/alerts?limit=2").json()["alerts"]
    assert [a["id"] for a in alerts] == ["a2", "a1"]


def dead_letters(gateway: Gateway, n: int) -> None:
    letters = [NewDeadLetter(data={"n": i}, reason="permanent", error=f"bad {i}") for i in range(n)]
    gateway.run(gateway.client.add_dead_letters, "mqtt_tech", letters)


def test_dead_letters_paged_then_replayed_with_the_token(gateway: Gateway) -> None:
    dead_letters(gateway, 5)
    page = gateway.http.get("/queues/dead:mqtt_tech/dead?limit=2&offset=1").json()
    assert page["total"] == 5
    assert page["queue"] == "mqtt_tech"
    assert len(page["dead_letters"]) == 2
    first, *_ = page["dead_letters"]
    assert {"id", "data", "attempts", "reason", "error", "failed_at"} <= set(first)

    denied = gateway.http.post("/queues/mqtt_tech/dead/replay")
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"] == "Bearer"
    wrong = gateway.http.post(
        "/queues/mqtt_tech/dead/replay", headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401

    one = gateway.http.post(
        "/queues/mqtt_tech/dead/replay", headers=AUTH, json={"ids": [first["id"]]}
    )
    assert one.json() == {"queue": "mqtt_tech", "replayed": 1}
    rest = gateway.http.post("/queues/mqtt_tech/dead/replay", headers=AUTH)
    assert rest.json()["replayed"] == 4
    q = gateway.http.get("/stats").json()["queues"]["mqtt_tech"]
    assert (q["pending"], q["failed"]) == (5, 0)


def test_dead_letters_deleted_with_the_token(gateway: Gateway) -> None:
    dead_letters(gateway, 3)
    ids = [d["id"] for d in gateway.http.get("/queues/mqtt_tech/dead").json()["dead_letters"]]
    assert gateway.http.delete("/queues/mqtt_tech/dead").status_code == 401
    one = gateway.http.delete(f"/queues/mqtt_tech/dead?ids={ids[0]}", headers=AUTH)
    assert one.json() == {"queue": "mqtt_tech", "purged": 1}
    assert gateway.http.delete("/queues/mqtt_tech/dead", headers=AUTH).json()["purged"] == 2
    assert gateway.http.get("/queues/mqtt_tech/dead").json()["total"] == 0


def test_without_a_token_configured_mutations_are_off(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(api_token=None)
    dead_letters(gateway, 1)
    r = gateway.http.post("/queues/mqtt_tech/dead/replay", headers=AUTH)
    assert r.status_code == 403
    assert "GATEWAY_API_TOKEN" in r.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/queues/nope/dead", None, 404, "no queue named 'nope'; known queues: mqtt_tech"),
        ("GET", "/queues/a{b/dead", None, 400, "invalid queue name 'a{b'"),
        ("GET", "/queues/mqtt_tech/dead?limit=9999", None, 422, "limit=9999 is out of range"),
        ("GET", "/queues/mqtt_tech/dead?offset=x", None, 422, "offset='x' is not a whole number"),
        ("POST", "/queues/mqtt_tech/dead/replay", b"[1]", 422, 'the body must be {"ids"'),
        ("POST", "/queues/mqtt_tech/dead/replay", b"{", 422, "the body must be JSON"),
        ("POST", "/queues/mqtt_tech/dead/replay", b'{"ids": [1]}', 422, "list of job id strings"),
        ("GET", "/nowhere", None, 404, "no such endpoint /nowhere: see /openapi.json"),
        ("PUT", "/stats", None, 405, "PUT is not allowed on /stats"),
    ],
)
def test_errors_are_json_that_say_what_to_do(
    gateway: Gateway, method: str, path: str, body: bytes | None, status: int, message: str
) -> None:
    dead_letters(gateway, 1)
    r = gateway.http.request(method, path, content=body, headers=AUTH)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"]
    assert r.json()["status"] == status


def test_probes_metrics_openapi_and_the_page(gateway: Gateway) -> None:
    assert gateway.http.get("/healthz").json() == {"status": "ok"}
    wait_until(lambda: gateway.http.get("/readyz").status_code == 200, what="/readyz 200")
    gateway.http.get("/stats")
    metrics = gateway.http.get("/metrics").text
    assert 'conveyor_gateway_request_seconds_count{route="/stats",status="200"} 1.0' in metrics
    assert "conveyor_gateway_websocket_clients 0.0" in metrics
    spec = gateway.http.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert {"/stats", "/machines/{machine}", "/queues/{queue}/dead"} <= set(spec["paths"])
    page = gateway.http.get("/")
    assert "<title>Conveyor</title>" in page.text
    assert gateway.http.get("/static/dashboard.js").status_code == 200


def test_redis_down_is_a_503_that_says_so(
    make_gateway: Callable[..., Gateway], own_redis: RedisServer
) -> None:
    gateway = make_gateway(url=own_redis.url)
    assert gateway.http.get("/stats").status_code == 200
    own_redis.stop(kill=True)
    r = gateway.http.get("/stats")
    assert r.status_code == 503
    assert "check that Redis runs and REDIS_URL points at it" in r.json()["error"]
    assert r.headers["retry-after"] == "5"
    ready = gateway.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] is False


def test_the_queue_history_survives_a_restart_and_is_the_same_from_a_second_replica(
    make_gateway: Callable[..., Gateway],
) -> None:
    first = make_gateway(sample_interval_s=0.05)
    first.run(first.client.enqueue_many, "alerts", [{"n": i} for i in range(7)])

    def history(gateway: Gateway, minutes: int) -> dict[str, Any]:
        return gateway.http.get(f"/stats/history?minutes={minutes}").json()

    wait_until(lambda: len(history(first, 10)["queues"].get("alerts", [])) >= 3, what="samples")
    first.http.__exit__(None, None, None)  # stopped: its samples stay in Redis
    stopped = time.time()
    second, third = make_gateway(sample_interval_s=0.05), make_gateway(sample_interval_s=0.05)
    kept, seen_by_third = (
        [s for s in history(g, 10)["queues"]["alerts"] if s["at"] <= stopped]
        for g in (second, third)
    )
    assert len(kept) >= 3
    assert seen_by_third == kept
    assert {s["pending"] for s in kept} == {7}
    day = history(second, 1440)
    assert day["interval_s"] == 60
    minutes = [s["pending"] for s in day["queues"]["alerts"]]
    assert minutes in ([7], [7, 7])  # one sample a minute
