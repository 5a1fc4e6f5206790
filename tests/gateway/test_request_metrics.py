"""The request histogram: each API request labelled by its route's template and the status it
was answered with (an error handler's too); no label from the path asked for, so a scan of
random URLs cannot grow the metrics; probes and documents are not timed."""

from __future__ import annotations

import re

import pytest
from conveyor_gateway.routes import OPERATIONS

from tests.gateway.conftest import TOKEN, Gateway

pytestmark = pytest.mark.integration
COUNT = re.compile(r'conveyor_gateway_request_seconds_count\{route="([^"]*)",status="(\d+)"\}')


def timed(gateway: Gateway) -> dict[tuple[str, str], float]:
    text = gateway.http.get("/metrics").text
    return {
        (m[1], m[2]): float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if (m := COUNT.match(line))
    }


def test_requests_are_labelled_by_route_template_and_answered_status(gateway: Gateway) -> None:
    gateway.http.get("/stats")
    gateway.http.get("/machines/press-9")  # 404 from the endpoint
    gateway.http.get("/queues/a{b/dead")  # 400 from the queue library's UsageError
    gateway.http.post("/queues/alerts/dead/replay")  # 401 from the access check
    gateway.http.get("/queues/alerts/dead", headers={"Authorization": f"Bearer {TOKEN}"})
    assert timed(gateway) == {
        ("/stats", "200"): 1.0,
        ("/machines/{machine}", "404"): 1.0,
        ("/queues/{queue}/dead", "400"): 1.0,
        ("/queues/{queue}/dead/replay", "401"): 1.0,
        ("/queues/{queue}/dead", "404"): 1.0,
    }


def test_unmatched_paths_probes_and_documents_add_no_label(gateway: Gateway) -> None:
    for i in range(20):
        assert gateway.http.get(f"/nowhere/{i}").status_code == 404
    assert gateway.http.put("/stats").status_code == 405
    for path in ("/healthz", "/readyz", "/openapi.json", "/", "/static/dashboard.js"):
        gateway.http.get(path)
    assert timed(gateway) == {}


def test_the_label_values_are_the_api_route_table(gateway: Gateway) -> None:
    api = {op.documented_path for op in OPERATIONS if op.timed}
    for path in ("/stats", "/stats/history", "/machines", "/alerts", "/machines/m"):
        gateway.http.get(path)
    assert {route for route, _ in timed(gateway)} <= api
