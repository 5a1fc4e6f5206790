"""``conveyor gateway`` as a process on a real socket: a slow WebSocket client is dropped
(past its bound in messages, or in bytes) while a fast one gets everything; a foreign origin's
handshake is refused with 403; and schemathesis finds no input that makes a 500, nor a read
answered without the token."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from conveyor_plant.keys import latest_values, live_channel
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from conveyor.local_servers import InfluxServer
from tests.gateway.conftest import TOKEN, GatewayProcess

pytestmark = pytest.mark.integration


def publish(redis_url: str, total: int) -> None:
    """``total`` live messages of 2 kB (30 MB for 15,000: more than a stalled socket's buffers
    hold), in small paced batches as workers publish them."""
    padding = base64.b64encode(os.urandom(1_500)).decode()  # 2 kB that do not compress
    with redis.Redis.from_url(redis_url) as r:
        for start in range(0, total, 50):
            pipe = r.pipeline(transaction=False)
            for n in range(start, start + 50):
                event = {"kind": "realtime", "machine": "m", "values": {"n": n}, "pad": padding}
                pipe.publish(live_channel("m"), json.dumps(event))
            pipe.execute()
            time.sleep(0.004)  # paces the publisher, as workers publish: not a wait


@contextlib.contextmanager
def stalled_client(port: int) -> Iterator[socket.socket]:
    """A WebSocket client that completes the handshake and then reads nothing, with a small
    receive buffer (which also turns off Linux's autotuning: loopback would soak up tens of
    megabytes). Raw, so that no library reads on its behalf."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = [
        "GET /ws HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    try:
        yield sock
    finally:
        sock.close()


@pytest.mark.parametrize(
    "bound",
    [
        {"GATEWAY_CLIENT_BUFFER": "200"},
        # About as far behind in bytes (200 messages of 2.1 kB), with room for 100,000 messages.
        {"GATEWAY_CLIENT_BUFFER": "100000", "GATEWAY_CLIENT_BUFFER_BYTES": "420000"},
    ],
    ids=["messages", "bytes"],
)
def test_a_slow_client_is_dropped_and_the_others_keep_up(
    gateway_process: Callable[..., GatewayProcess], redis_url: str, bound: dict[str, str]
) -> None:
    gw = gateway_process(**bound)
    ws_url = gw.url.replace("http", "ws") + "/ws"
    total = 15_000
    received: list[int] = []

    def fast_reader() -> None:
        with connect(ws_url, max_size=None) as ws:
            ws.recv()  # subscribed
            ready.set()
            while len(received) < total:
                received.append(json.loads(ws.recv(timeout=20))["values"]["n"])

    ready = threading.Event()
    fast = threading.Thread(target=fast_reader)
    fast.start()
    port = int(gw.url.rsplit(":", 1)[1])
    with stalled_client(port) as stalled:
        assert ready.wait(10)
        publish(redis_url, total)
        fast.join(timeout=60)
        assert received == list(range(total)), f"the fast client got {len(received)} of {total}"
        # The stalled client now reads what reached it, up to the end of the stream: the
        # gateway gave up on it (its farewell could not be delivered into a full socket).
        stalled.settimeout(10)
        tail = b""
        while chunk := stalled.recv(1 << 20):
            tail = (tail + chunk)[-4096:]
    last = int(tail.rsplit(b'"n": ', 1)[1].split(b"}", 1)[0])
    assert last < total // 2
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert "conveyor_gateway_slow_clients_dropped_total 1.0" in metrics


def test_schemathesis_finds_nothing_against_the_openapi_document(
    gateway_process: Callable[..., GatewayProcess],
    redis_url: str,
    influx: InfluxServer,
    tmp_path: Path,
) -> None:
    """Every check schemathesis has (no 5xx, status codes, content types and bodies as
    documented, invalid input rejected, auth enforced - reads included -, Allow headers), on
    generated input. One allowance: a chart's window is two parameters (from, to) whose
    difference is bounded, which a schema cannot say, so there a schema-valid pair may be a
    422 (its bounds are tested in test_trend_and_control_charts.py)."""
    with redis.Redis.from_url(redis_url) as r:  # something to find besides 404s
        r.sadd("conveyor:queues", "alerts")
        r.hset(latest_values("press-1"), mapping={"temp": "21.5", "_ts": "1"})
    (tmp_path / "schemathesis.toml").write_text(
        "[[operations]]\n"
        'include-path-regex = "^/(machines/\\\\{machine\\\\}/(series|changes)|spc/)"\n'
        "checks.positive_data_acceptance.expected-statuses = "
        '["2XX", 401, 403, 404, 422]\n'
    )
    gw = gateway_process(
        GATEWAY_API_TOKEN=TOKEN,
        GATEWAY_READ_AUTH="true",
        INFLUX_URL=influx.url,
        INFLUX_BUCKET=influx.bucket,
    )
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{gw.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "50",
            "-H",
            f"Authorization: Bearer {TOKEN}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,  # its .schemathesis/ cache
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "passed" in run.stdout


def test_a_foreign_origin_is_refused_at_the_handshake(
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    gw = gateway_process(GATEWAY_ALLOWED_ORIGINS="https://screens.example")
    ws_url = gw.url.replace("http", "ws") + "/ws"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, origin=Origin("https://evil.example"))
    response = refused.value.response
    assert response.status_code == 403
    assert b"list it in GATEWAY_ALLOWED_ORIGINS" in response.body
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    for origin in (None, Origin(gw.url), Origin("https://screens.example")):
        with connect(ws_url, origin=origin) as ws:
            assert json.loads(ws.recv(timeout=10))["kind"] == "subscribed"
