"""``conveyor ingest`` as deployed: its settings are checked at start, its probes answer."""

from __future__ import annotations

import json

import pytest

from tests.helpers import probe, run_cli, start_cli
from tests.servers import MosquittoServer, free_port

pytestmark = pytest.mark.integration


def test_default_routes_are_the_original_design() -> None:
    out = run_cli("ingest", "--print-routes")
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines()]
    assert [(w[0], w[2], " ".join(w[3:])) for w in lines] == [
        ("+/alerts", "alerts", "(the queue's priority, alert)"),
        ("+/realtime", "mqtt_realtime", "(the queue's priority, realtime)"),
        ("+/spc", "mqtt_spc", "(the queue's priority, spc)"),
        ("+/tech", "mqtt_tech", "(the queue's priority, tech)"),
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MQTT_BROKER_URL": "http://b:1883"}, "MQTT_BROKER_URL=http://b:1883: Value error"),
        ({"MQTT_RECEIVE_MAXIMUM": "0"}, "MQTT_RECEIVE_MAXIMUM=0"),
        ({"MQTT_CA_FILE": "/nonexistent/ca.pem"}, "MQTT_CA_FILE=/nonexistent/ca.pem"),
        (
            {"INGEST_ROUTES": '[{"filter": "a/#/b", "queue": "q", "kind": "spc"}]'},
            "INGEST_ROUTES, route 0",
        ),
        (
            {"INGEST_ROUTES": '[{"filter": "plant/line", "queue": "q", "kind": "spc"}]'},
            "no '+' level for the machine id",
        ),
        (
            {"INGEST_ROUTES": '[{"filter": "+/x", "queue": "bad name", "kind": "spc"}]'},
            "invalid queue name",
        ),
    ],
)
def test_bad_settings_stop_it_with_one_line(env: dict[str, str], message: str) -> None:
    out = run_cli("ingest", **env)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


async def test_probes_and_metrics(redis_url: str, mosquitto: MosquittoServer) -> None:
    port = free_port()
    proc = start_cli(
        "ingest",
        redis_url=redis_url,
        MQTT_BROKER_URL=mosquitto.url,
        MQTT_CLIENT_ID="ingest-probes",
        PROBE_HOST="127.0.0.1",
        PROBE_PORT=str(port),
    )
    try:
        await proc.wait_ready(timeout=20)
        _status, body = _get(port, "/readyz")
        assert json.loads(body)["checks"] == {"broker": True, "redis": True}
        assert _get(port, "/healthz")[0] == 200
        metrics = _get(port, "/metrics")[1]
        for name in (
            "conveyor_ingest_received_total",
            "conveyor_ingest_batch_size_bucket",
            'conveyor_ingest_connected{peer="broker"} 1.0',
            "conveyor_ingest_broker_reconnects",
        ):
            assert name in metrics
    finally:
        assert proc.stop() == 0, proc.output()


def _get(port: int, path: str) -> tuple[int, str]:
    answer = probe(port, path)
    assert answer is not None, f"nothing answers {path} on port {port}"
    return answer
