"""Reads (stats, machines, alerts, dead letters - their payloads are plant data) require the
API token when read auth is on: refused without it or with a wrong one, answered with it;
probes, metrics, the OpenAPI document and the dashboard's files stay open; the OpenAPI
document says which is which."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis
from conveyor_plant.keys import ALERT_HISTORY, latest_values

from reliable_queue import NewDeadLetter
from tests.gateway.conftest import TOKEN, Gateway

pytestmark = pytest.mark.integration

READS = [
    "/stats",
    "/stats/history",
    "/machines",
    "/machines/press-1",
    "/alerts",
    "/queues/mqtt_tech/dead",
    "/queues/dead:mqtt_tech/dead?limit=1",
]
OPEN = ["/healthz", "/metrics", "/openapi.json", "/", "/static/dashboard.js"]


def plant_data(gateway: Gateway, r: redis.Redis) -> None:
    r.hset(latest_values("press-1"), mapping={"temp": "21.5", "_ts": "1"})
    r.xadd(ALERT_HISTORY, {"alert": json.dumps({"machine": "press-1"})})
    letter = NewDeadLetter(data={"recipe": "secret"}, reason="permanent", error="bad")
    gateway.run(gateway.client.add_dead_letters, "mqtt_tech", [letter])


@pytest.fixture
def guarded(make_gateway: Callable[..., Gateway], raw_redis: redis.Redis) -> Gateway:
    gateway = make_gateway(read_requires_token=True)
    plant_data(gateway, raw_redis)
    return gateway


@pytest.mark.parametrize("path", READS)
def test_a_read_without_the_token_is_refused(guarded: Gateway, path: str) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": TOKEN},
    ):
        r = guarded.http.get(path, headers=headers)
        assert r.status_code == 401, (path, headers)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {
            "error": "this gateway requires its API token for reads: send "
            "'Authorization: Bearer <GATEWAY_API_TOKEN>'",
            "status": 401,
        }
        assert "secret" not in r.text


@pytest.mark.parametrize("path", READS)
def test_a_read_with_the_token_is_answered(guarded: Gateway, path: str) -> None:
    r = guarded.http.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text


def test_without_the_token_not_even_a_queue_name_is_revealed(guarded: Gateway) -> None:
    assert guarded.http.get("/queues/nope/dead").status_code == 401
    known = guarded.http.get("/queues/nope/dead", headers={"Authorization": f"Bearer {TOKEN}"})
    assert known.status_code == 404


def test_probes_metrics_and_the_dashboard_stay_open(guarded: Gateway) -> None:
    for path in OPEN:
        assert guarded.http.get(path).status_code == 200, path
    assert guarded.http.get("/readyz").status_code in (200, 503)  # not 401: a probe


def test_reads_are_open_when_read_auth_is_off(gateway: Gateway, raw_redis: redis.Redis) -> None:
    plant_data(gateway, raw_redis)
    for path in READS:
        assert gateway.http.get(path).status_code == 200, path


def test_the_openapi_document_states_the_auth_of_each_operation(
    make_gateway: Callable[..., Gateway],
) -> None:
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    for read_auth in (True, False):
        paths = make_gateway(read_requires_token=read_auth).http.get("/openapi.json").json()
        paths = paths["paths"]
        for path in ("/stats", "/stats/history", "/machines", "/machines/{machine}", "/alerts"):
            get = paths[path]["get"]
            assert get["security"] == (bearer if read_auth else []), path
            assert ("401" in get["responses"]) is read_auth, path
        assert paths["/queues/{queue}/dead"]["get"]["security"] == (bearer if read_auth else [])
        assert paths["/queues/{queue}/dead"]["delete"]["security"] == bearer
        assert paths["/queues/{queue}/dead/replay"]["post"]["security"] == bearer
        for path in ("/healthz", "/readyz", "/metrics"):
            assert paths[path]["get"]["security"] == [], path
