"""Every answer of the gateway - the dashboard page, its files, the API, its errors (4xx, 5xx
and a refused WebSocket handshake) - forbids framing and MIME sniffing; the page gets a full
Content-Security-Policy and the data the strictest one."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from conveyor_gateway import GatewayConfig, create_app
from conveyor_plant import PlantState
from starlette.testclient import TestClient, WebSocketDenialResponse

from reliable_queue import QueueClient
from tests.gateway.conftest import TOKEN, Gateway

pytestmark = pytest.mark.integration


def assert_guarded(r: httpx.Response, *, page: bool = False) -> None:
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    if page:
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'self'"
        assert directives["script-src"] == "'self'"
        assert directives["connect-src"] == "'self'"
        assert directives["object-src"] == "'none'"
    else:
        assert csp.startswith("default-src 'none'")


def test_the_page_and_its_files(gateway: Gateway) -> None:
    page = gateway.http.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert_guarded(page, page=True)
    for path in ("/static/dashboard.js", "/static/dashboard.css"):
        r = gateway.http.get(path)
        assert r.status_code == 200
        assert_guarded(r)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/stats", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/metrics", 200),
        ("GET", "/healthz", 200),
        ("GET", "/nowhere", 404),
        ("PUT", "/stats", 405),
        ("GET", "/queues/mqtt_tech/dead?limit=0", 422),
        ("POST", "/queues/alerts/dead/replay", 401),
    ],
)
def test_api_answers_and_errors(gateway: Gateway, method: str, path: str, status: int) -> None:
    r = gateway.http.request(method, path)
    assert r.status_code == status
    assert_guarded(r)


def test_a_read_refused_for_want_of_the_token(make_gateway: Callable[..., Gateway]) -> None:
    r = make_gateway(read_requires_token=True).http.get("/stats")
    assert r.status_code == 401
    assert_guarded(r)


def test_a_server_error(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = QueueClient.from_url(redis_url)

    async def broken() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(client, "stats", broken)
    http = TestClient(
        create_app(client, PlantState.from_url(redis_url), GatewayConfig(api_token=TOKEN)),
        raise_server_exceptions=False,
    )
    r = http.get("/stats")
    assert r.status_code == 500
    assert_guarded(r)


def test_a_refused_websocket_handshake(gateway: Gateway) -> None:
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        gateway.http.websocket_connect("/ws", headers={"Origin": "http://elsewhere.example"}),
    ):
        pass
    assert denied.value.status_code == 403
    assert_guarded(denied.value)
