"""The OpenAPI document cannot drift from the code: it holds exactly the app's HTTP routes and
methods; its bounds are the code's limits (a changed constant changes the document) and the
running gateway answers 422 one step past each bound and not at it; its schemas are the models
the answers are validated against, and those models name every field of the library's records.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conveyor_gateway import GatewayConfig, InfluxSource, create_app, openapi_document
from conveyor_gateway import models as answer_models
from conveyor_gateway.limits import (
    MAX_CHANGES,
    MAX_IDS,
    MAX_MACHINE_ID,
    MAX_NAME,
    MAX_OFFSET,
    MAX_PAGE,
    MAX_SPC_POINTS,
    MAX_TREND_POINTS,
    MAX_TREND_SIGNALS,
    MAX_WINDOW_MS,
    history_minutes,
)
from conveyor_gateway.metrics import path_template
from conveyor_gateway.routes import OPERATIONS
from conveyor_plant import PlantState
from conveyor_plant.keys import latest_values
from conveyor_worker.points import line, spc_line, tech_line
from starlette.routing import Mount, Route, WebSocketRoute

from conveyor.local_servers import InfluxServer
from reliable_queue import DeadLetter, NewDeadLetter, QueueClient, QueueStats
from reliable_queue.history import Sample
from reliable_queue.keys import QUEUE_NAME_PATTERN
from tests.gateway.conftest import TOKEN, Gateway

AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOT_OPERATIONS = {"/ws", "/static"}  # a WebSocket and a mount of files: no OpenAPI operation


def parameter(doc: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    [found] = [p for p in doc["paths"][path][method]["parameters"] if p["name"] == name]
    schema: dict[str, Any] = found["schema"]
    return schema


def test_the_document_holds_exactly_the_routes_of_the_app() -> None:
    nowhere = "redis://127.0.0.1:1"  # never connected to: the app is not started
    app = create_app(QueueClient.from_url(nowhere), PlantState.from_url(nowhere))
    documented = {
        (path, method.upper())
        for path, item in openapi_document()["paths"].items()
        for method in item
    }
    routed: list[tuple[str, str]] = []
    others: set[str] = set()
    for route in app.routes:
        if isinstance(route, Route):
            assert route.methods is not None
            path = path_template(route.path)  # {machine:anypath}: {machine}
            routed += [(path, m) for m in route.methods - {"HEAD"}]
        else:
            assert isinstance(route, WebSocketRoute | Mount)
            others.add(route.path)
    assert len(routed) == len(set(routed)), "a path and method routed twice"
    assert set(routed) == documented
    assert others == NOT_OPERATIONS


def test_the_bounds_are_what_they_were_decided_to_be() -> None:
    """Changing a bound is a decision, not an edit: the document follows the constants (below),
    so this is where a looser one must be argued for."""
    assert (MAX_PAGE, MAX_OFFSET, MAX_IDS, MAX_MACHINE_ID) == (500, 10**9, 10_000, 256)
    # The charts: a month's window, a chart's width of buckets, a few thousand SPC points.
    charts = (MAX_WINDOW_MS, MAX_TREND_POINTS, MAX_TREND_SIGNALS, MAX_SPC_POINTS, MAX_CHANGES)
    assert (*charts, MAX_NAME) == (31 * 86_400_000, 2_000, 50, 5_000, 100, 256)


def test_the_bounds_in_the_document_are_the_codes_limits() -> None:
    doc = openapi_document()
    assert parameter(doc, "/alerts", "get", "limit")["maximum"] == MAX_PAGE
    assert parameter(doc, "/queues/{queue}/dead", "get", "limit")["maximum"] == MAX_PAGE
    assert parameter(doc, "/queues/{queue}/dead", "get", "offset")["maximum"] == MAX_OFFSET
    assert parameter(doc, "/machines/{machine}", "get", "machine")["maxLength"] == MAX_MACHINE_ID
    for path, method in (
        ("/queues/{queue}/dead", "get"),
        ("/queues/{queue}/dead", "delete"),
        ("/queues/{queue}/dead/replay", "post"),
    ):
        pattern = parameter(doc, path, method, "queue")["pattern"]
        assert pattern == "^(dead:)?" + QUEUE_NAME_PATTERN.removeprefix("^")
    body = doc["paths"]["/queues/{queue}/dead/replay"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    ids = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["ids"]
    [array] = [s for s in ids["anyOf"] if s.get("type") == "array"]
    assert array["maxItems"] == MAX_IDS


@pytest.mark.parametrize(("history_s", "most"), [(60.0, 1440), (600.0, 1440), (172800.0, 2880)])
def test_the_history_window_in_the_document_follows_the_configuration(
    history_s: float, most: int
) -> None:
    """A day of minute samples, or the fine ones kept, if longer."""
    doc = openapi_document(GatewayConfig(history_s=history_s))
    minutes = parameter(doc, "/stats/history", "get", "minutes")
    assert minutes["maximum"] == history_minutes(history_s) == most


def test_the_models_name_every_field_of_the_librarys_records() -> None:
    """A field the queue library adds to its figures or its dead letters must be added to the
    models (and so to the document), or the gateway would drop it without a word."""
    stats_fields = [f.name for f in dataclasses.fields(QueueStats)]
    figures = list(answer_models.QueueFigures.model_fields)
    assert figures[: len(stats_fields)] == stats_fields
    letter_fields = [f.name for f in dataclasses.fields(DeadLetter)]
    assert list(answer_models.DeadLetter.model_fields) == letter_fields
    sample_fields = [f.name for f in dataclasses.fields(Sample)]
    assert list(answer_models.HistorySample.model_fields) == sample_fields


@pytest.mark.integration
def test_the_gateway_enforces_the_documented_bounds_exactly(
    make_gateway: Callable[..., Gateway], raw_redis: redis.Redis
) -> None:
    """One step past each documented bound is a 422; the bound itself is not."""
    gateway = make_gateway(history_s=300.0)
    letters = [NewDeadLetter(data={}, reason="permanent", error="bad")]
    gateway.run(gateway.client.add_dead_letters, "alerts", letters)
    doc = gateway.http.get("/openapi.json").json()
    for path, url in (
        ("/alerts", "/alerts"),
        ("/stats/history", "/stats/history"),
        ("/queues/{queue}/dead", "/queues/alerts/dead"),
    ):
        for spec in doc["paths"][path]["get"]["parameters"]:
            schema = spec["schema"]
            if schema["type"] != "integer":
                continue
            name, low, high = spec["name"], schema["minimum"], schema["maximum"]
            for value, refused in ((low, False), (high, False), (low - 1, True), (high + 1, True)):
                r = gateway.http.get(f"{url}?{name}={value}", headers=AUTH)
                assert (r.status_code == 422) is refused, (path, name, value, r.text)
    assert parameter(doc, "/stats/history", "get", "minutes")["maximum"] == 1440

    longest = parameter(doc, "/machines/{machine}", "get", "machine")["maxLength"]
    raw_redis.hset(latest_values("m" * longest), mapping={"t": "1"})
    assert gateway.http.get(f"/machines/{'m' * longest}").status_code == 200
    assert gateway.http.get(f"/machines/{'m' * (longest + 1)}").status_code == 422

    body = doc["paths"]["/queues/{queue}/dead/replay"]["post"]["requestBody"]
    name = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    ids = doc["components"]["schemas"][name]["properties"]["ids"]
    [array] = [s for s in ids["anyOf"] if s.get("type") == "array"]
    most = array["maxItems"]
    for count, status in ((most + 1, 422), (most, 200)):
        r = gateway.http.post(
            "/queues/alerts/dead/replay",
            headers=AUTH,
            content=json.dumps({"ids": [f"job-{i}" for i in range(count)]}),
        )
        assert r.status_code == status, r.text


@pytest.mark.integration
@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b'{"ids": null}', b'{"ids": []}', b'{"ids": ["a"]}'],
    ids=["empty", "no ids", "null", "none", "one"],
)
def test_a_body_the_model_accepts_is_accepted(gateway: Gateway, body: bytes) -> None:
    if body.strip():
        answer_models.ReplayRequest.model_validate_json(body)
    gateway.run(
        gateway.client.add_dead_letters, "alerts", [NewDeadLetter(data={}, reason="x", error="bad")]
    )
    r = gateway.http.post("/queues/alerts/dead/replay", headers=AUTH, content=body)
    assert r.status_code == 200, r.text


@pytest.mark.integration
def test_every_json_answer_is_its_documented_model(
    make_gateway: Callable[..., Gateway], raw_redis: redis.Redis, influx: InfluxServer
) -> None:
    gateway = make_gateway(influx=InfluxSource(influx.url, influx.bucket))
    raw_redis.hset(latest_values("press-1"), mapping={"temp": "21.5", "_ts": "1"})
    now = int(time.time() * 1000)
    influx.write(
        [
            line("realtime", {"machine": "press-1", "signal": "temp"}, {"value": 21.5}, now - 1000),
            spc_line(
                machine="press-1",
                characteristic="bore",
                ts_ms=now - 1000,
                values=[1.0, 2.0],
                limits={"cl": 1.5, "ucl": 2.5, "lcl": 0.5, "r_cl": 1, "r_ucl": 3.3, "r_lcl": 0},
                rules=[1],
            ),
            tech_line(machine="press-1", ts_ms=now - 1000, config={"fw": "1.1"}, version=3),
        ]
    )
    gateway.run(
        gateway.client.add_dead_letters,
        "alerts",
        [NewDeadLetter(data={"n": 1}, reason="x", error="bad")],
    )
    urls = {
        "/machines/{machine}": "/machines/press-1",
        "/machines/{machine}/series": "/machines/press-1/series",
        "/machines/{machine}/changes": "/machines/press-1/changes",
        "/spc/{machine}/{characteristic}": "/spc/press-1/bore",
        "/queues/{queue}/dead": "/queues/alerts/dead",
    }
    checked = 0
    for op in OPERATIONS:
        if op.method != "GET" or isinstance(op.answer, str) or op.path == "/readyz":
            continue
        r = gateway.http.get(urls.get(op.documented_path, op.path), headers=AUTH)
        assert r.status_code == 200, (op.path, r.text)
        op.answer.model_validate_json(r.content, strict=True)
        checked += 1
    assert checked == 10
