"""/ws: clients get the workers' live messages for the machines and kinds they asked for, can
change their subscription, and a bad request is answered, not ignored. (Who is let in:
test_stream_admission.py.)"""

from __future__ import annotations

import json

import pytest
import redis
from conveyor_plant.keys import live_channel
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tests.gateway.conftest import Gateway
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def publish(r: redis.Redis, machine: str, event: dict[str, object]) -> None:
    """What the workers do after processing a message."""
    r.publish(live_channel(machine), json.dumps(event))


def subscribed(gateway: Gateway) -> None:
    hub = gateway.state.hub
    wait_until(lambda: hub.subscribed, interval=0.01, what="the live stream subscribed to Redis")


def realtime(machine: str, temp: float) -> dict[str, object]:
    return {"kind": "realtime", "machine": machine, "ts": 1, "values": {"temp": temp}}


def receive_event(ws: WebSocketTestSession) -> dict[str, object]:
    event: dict[str, object] = ws.receive_json()
    return event


def test_only_the_machines_and_kinds_asked_for(gateway: Gateway, raw_redis: redis.Redis) -> None:
    subscribed(gateway)
    with gateway.http.websocket_connect("/ws?machines=m1,m3&kinds=realtime") as ws:
        hello = receive_event(ws)
        assert hello == {
            "kind": "subscribed",
            "subscription": {"machines": ["m1", "m3"], "kinds": ["realtime"]},
            "buffer": 1000,
            "buffer_bytes": 4 * 1024 * 1024,
        }
        publish(raw_redis, "m2", realtime("m2", 1.0))  # another machine
        publish(raw_redis, "m1", {"kind": "alert", "machine": "m1", "type": "x"})  # another kind
        publish(raw_redis, "m1", realtime("m1", 2.0))
        assert receive_event(ws) == realtime("m1", 2.0)

        ws.send_json({"action": "subscribe", "machines": ["*"], "kinds": ["alert"]})
        assert receive_event(ws)["subscription"] == {"machines": ["*"], "kinds": ["alert"]}
        publish(raw_redis, "m9", realtime("m9", 3.0))
        publish(raw_redis, "m9", {"kind": "alert", "machine": "m9", "type": "overheat"})
        assert receive_event(ws)["type"] == "overheat"


def test_every_client_gets_its_copy(gateway: Gateway, raw_redis: redis.Redis) -> None:
    subscribed(gateway)
    with gateway.http.websocket_connect("/ws") as a, gateway.http.websocket_connect("/ws") as b:
        receive_event(a)
        receive_event(b)
        assert gateway.state.hub.clients == 2
        for i in range(20):
            publish(raw_redis, f"m{i % 4}", realtime(f"m{i % 4}", float(i)))
        for ws in (a, b):
            got = [receive_event(ws)["values"] for _ in range(20)]
            assert got == [{"temp": float(i)} for i in range(20)]
    metrics = gateway.http.get("/metrics").text
    assert "conveyor_gateway_messages_sent_total 40.0" in metrics


def test_a_bad_subscription_is_answered(gateway: Gateway) -> None:
    with gateway.http.websocket_connect("/ws?kinds=temperature") as ws:
        error = receive_event(ws)
        assert error["kind"] == "error"
        assert "unknown kind(s) temperature: use realtime, tech or alert" in str(error["error"])
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008
    with gateway.http.websocket_connect("/ws") as ws:
        receive_event(ws)
        for nonsense in ("hello", b"\xff\x00"):  # text or binary: answered, not a crash
            if isinstance(nonsense, bytes):
                ws.send_bytes(nonsense)
            else:
                ws.send_text(nonsense)
            error = receive_event(ws)
            assert error["kind"] == "error"
            assert 'send {"action": "subscribe"' in str(error["error"])
