"""Who /ws lets in: the token as the first message or a Bearer header, never in the URL; a
browser page only from the gateway's own origin or an allowed one; no more sockets than the
cap; and a client that falls too many bytes behind is dropped like one too many messages
behind."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from conveyor_gateway.live import LiveHub, Subscription
from conveyor_gateway.metrics import GatewayMetrics
from conveyor_gateway.security import origin_allowed
from conveyor_plant.keys import live_channel
from starlette.testclient import WebSocketDenialResponse, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tests.gateway.conftest import TOKEN, Gateway
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def closed_with(ws: WebSocketTestSession) -> tuple[str, int, str]:
    """The error the gateway sent, then the close frame's code and reason."""
    error = ws.receive_json()
    assert error["kind"] == "error", error
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    return str(error["error"]), closed.value.code, str(closed.value.reason)


def test_a_token_in_the_url_is_refused_with_how_to_send_it(
    make_gateway: Callable[..., Gateway],
) -> None:
    for auth in (True, False):
        gateway = make_gateway(stream_requires_token=auth)
        with gateway.http.websocket_connect(f"/ws?token={TOKEN}") as ws:
            error, code, reason = closed_with(ws)
        assert code == 1008
        assert reason == "token in the URL: send it in the first message or a header"
        assert '{"action": "auth", "token": "<GATEWAY_API_TOKEN>"}' in error
        assert "Authorization: Bearer" in error
        metrics = gateway.http.get("/metrics").text
        assert 'conveyor_gateway_websocket_refused_total{reason="token_in_url"} 1.0' in metrics


def test_the_first_message_carries_the_token(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(stream_requires_token=True)
    with gateway.http.websocket_connect("/ws?kinds=alert") as ws:
        ws.send_json({"action": "auth", "token": TOKEN})
        hello = ws.receive_json()
        assert hello["kind"] == "subscribed"
        assert hello["subscription"]["kinds"] == ["alert"]
        ws.send_json({"action": "auth", "token": TOKEN})  # again: acknowledged, harmless
        assert ws.receive_json() == {"kind": "authenticated"}

    with gateway.http.websocket_connect("/ws") as ws:
        ws.send_json({"action": "auth", "token": TOKEN + "x"})
        error, code, reason = closed_with(ws)
    assert (code, reason) == (4401, "wrong token")
    assert error.startswith("wrong token: send")

    with gateway.http.websocket_connect("/ws") as ws:
        ws.send_json({"action": "subscribe", "machines": ["*"]})
        _, code, reason = closed_with(ws)
    assert (code, reason) == (4401, "the first message must be the token")


def test_no_token_in_time_closes_with_the_reason(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(stream_requires_token=True, auth_timeout_s=0.2)
    with gateway.http.websocket_connect("/ws") as ws:
        error, code, reason = closed_with(ws)
    assert (code, reason) == (4401, "no token within 0.2 s")
    assert "this stream requires the token: within 0.2 s, send" in error
    metrics = gateway.http.get("/metrics").text
    assert 'conveyor_gateway_websocket_refused_total{reason="auth"} 1.0' in metrics


def test_a_bearer_header_carries_the_token(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(stream_requires_token=True)
    with gateway.http.websocket_connect("/ws", headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert ws.receive_json()["kind"] == "subscribed"
    with gateway.http.websocket_connect("/ws", headers={"Authorization": "Bearer nope"}) as ws:
        _, code, reason = closed_with(ws)
    assert (code, reason) == (4401, "wrong token")


def test_an_open_stream_acknowledges_a_token_it_does_not_need(gateway: Gateway) -> None:
    with gateway.http.websocket_connect("/ws") as ws:
        assert ws.receive_json()["kind"] == "subscribed"
        ws.send_json({"action": "auth", "token": "anything"})
        assert ws.receive_json() == {"kind": "authenticated"}


def test_a_page_from_a_foreign_origin_is_refused(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(allowed_origins=("https://screens.plant.example",))
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        gateway.http.websocket_connect("/ws", headers={"Origin": "https://evil.example"}),
    ):
        pass
    assert denied.value.status_code == 403
    assert denied.value.json()["error"] == (
        "origin https://evil.example may not open the stream: list it in GATEWAY_ALLOWED_ORIGINS"
    )
    admitted = [
        {},  # no Origin: not a browser
        {"Origin": "http://testserver"},  # the gateway's own (Host: testserver)
        {"Origin": "https://screens.plant.example"},  # allowed
    ]
    for headers in admitted:
        with gateway.http.websocket_connect("/ws", headers=headers) as ws:
            assert ws.receive_json()["kind"] == "subscribed", headers
    metrics = gateway.http.get("/metrics").text
    assert 'conveyor_gateway_websocket_refused_total{reason="origin"} 1.0' in metrics


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "admitted"),
    [
        (None, "gw:8000", (), True),
        ("http://gw:8000", "gw:8000", (), True),
        ("https://gw.example", "gw.example", (), True),  # TLS ended by a proxy
        ("https://gw.example", "gw.example:443", (), True),
        ("HTTPS://GW.example:443", "gw.example", (), True),
        ("http://gw:8001", "gw:8000", (), False),
        ("http://gw.evil", "gw", (), False),
        ("null", "gw", (), False),
        ("http://a.example", "gw", ("http://a.example",), True),
        ("http://a.example:8080", "gw", ("http://a.example",), False),
        ("https://a.example", "gw", ("http://a.example",), False),
        ("http://anything", "gw", ("*",), True),
        ("http://[::1]:8000", "[::1]:8000", (), True),
    ],
)
def test_which_origins_are_admitted(
    origin: str | None, host: str, allowed: tuple[str, ...], admitted: bool
) -> None:
    assert origin_allowed(origin, host, allowed) is admitted


def test_past_the_connection_cap_clients_are_refused_with_1013(
    make_gateway: Callable[..., Gateway],
) -> None:
    gateway = make_gateway(max_connections=2, stream_requires_token=True)
    # Sockets still waiting to authenticate count: they hold resources too.
    with gateway.http.websocket_connect("/ws") as first, gateway.http.websocket_connect("/ws"):
        with gateway.http.websocket_connect("/ws") as third:
            error, code, reason = closed_with(third)
        assert (code, reason) == (1013, "the gateway is full; try again later")
        assert error == reason
        first.close()
        # One left: the next client gets in (once the server has seen the first one go).

        def admitted() -> bool:
            with gateway.http.websocket_connect("/ws") as again:
                again.send_json({"action": "auth", "token": TOKEN})
                return bool(again.receive_json()["kind"] == "subscribed")

        wait_until(admitted, interval=0, what="a freed place reused")
    metrics = gateway.http.get("/metrics").text
    assert 'conveyor_gateway_websocket_refused_total{reason="capacity"}' in metrics


class NoRedis:
    """The hub's dispatch alone: nothing here subscribes."""

    def pubsub(self, *, ignore_subscribe_messages: bool) -> object:
        raise AssertionError("not subscribed in this test")


def test_a_client_past_its_byte_bound_is_marked_for_dropping() -> None:
    hub = LiveHub(NoRedis(), buffer=1_000, buffer_bytes=10_000, metrics=GatewayMetrics())
    slow = hub.connect(Subscription())
    # 2,000 bytes in 1,030 characters: the bound is in bytes, as memory is.
    message = json.dumps(
        {"kind": "realtime", "machine": "m", "values": {"pad": "x" + "é" * 970}},
        ensure_ascii=False,
    )
    assert (len(message), len(message.encode())) == (1_030, 2_000)
    for _ in range(5):
        hub.dispatch(live_channel("m"), message.encode())
    assert not slow.lagging.is_set()
    assert slow.queued_bytes == 10_000
    hub.dispatch(live_channel("m"), message.encode())  # one more: past 10,000 bytes
    assert slow.lagging.is_set()
    assert slow.buffer.qsize() == 5  # far below the 1,000-message bound
    assert slow.dropped == 1
