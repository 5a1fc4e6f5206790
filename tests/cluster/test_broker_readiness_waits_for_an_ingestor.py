"""The in-chart broker is ready for publishers only once an ingestor is connected to it
(mosquitto 2.0 forgets shared subscriptions when it restarts, and would acknowledge and drop
what publishers sent before the ingestors subscribed again: docs/ingestor.md).

The readiness probe the chart renders runs here as the kubelet would run it, against this
machine's real /proc/net/tcp, with connections made to a listener on a free loopback port
(the rendered port and /tmp swapped for the test's own); the chaos suite shows it on kind.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.chart import one, render
from tests.helpers import free_port

INGESTOR_PORT = 1884  # conveyor.mqttIngestorPort


def probe_script(tmp: Path, port: int) -> str:
    sts = one(
        render(show_only="templates/mosquitto-statefulset.yaml"),
        "StatefulSet",
        "conveyor-mosquitto",
    )
    [container] = sts["spec"]["template"]["spec"]["containers"]
    command = container["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"]
    script: str = command[2]
    assert f":{INGESTOR_PORT:04X}$" in script  # the ingestors' listener, as /proc/net/tcp has it
    return script.replace(f":{INGESTOR_PORT:04X}$", f":{port:04X}$").replace("/tmp/", f"{tmp}/")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", free_port()))
    with server:
        yield server


def test_ready_once_an_ingestor_stays_connected_and_then_for_the_process_life(
    tmp_path: Path, listener: socket.socket
) -> None:
    script = probe_script(tmp_path, listener.getsockname()[1])

    def ready() -> bool:
        return subprocess.run(["sh", "-c", script], timeout=10).returncode == 0

    assert not ready(), "ready with no ingestor connected"
    assert not ready()
    # A connection that closes at once (a login the broker refused) does not count: it must be
    # there at two probes in a row.
    with socket.create_connection(listener.getsockname()):
        refused_peer, _ = listener.accept()
        assert not ready()
    refused_peer.close()
    assert not ready(), "a connection gone by the next probe made the broker ready"

    ingestor = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    try:
        assert not ready(), "ready at the first sight of the connection"
        assert ready(), "not ready with an ingestor connected at two probes"
    finally:
        ingestor.close()
        peer.close()
    assert ready(), "an ingestor's restart turned publishers away"

    # Another broker process (restarted in place): it waits for an ingestor again.
    (tmp_path / "ingestor-seen").write_text("another-process\n")
    assert not ready()
