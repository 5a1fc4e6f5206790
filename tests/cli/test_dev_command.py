"""``conveyor dev`` as a user runs it: servers, ingestor, workers, gateway and the simulator;
messages flow through every queue to the gateway's /stats; Ctrl-C leaves nothing behind and a
restart finds the queues again."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from conveyor_messages import DEFAULT_QUEUES

from conveyor.local_servers import influxd_binary
from reliable_queue import QueueClient
from tests.helpers import CliProcess, eventually, run_cli, start_cli
from tests.servers import require_binary

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
QUEUES = ("alerts", "mqtt_realtime", "mqtt_spc", "mqtt_tech")


def children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for good but for its exit status; only its parent can reap it.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def run_until_flowing(data: Path) -> tuple[CliProcess, set[int], dict[str, int]]:
    dev = start_cli("dev", "--data-dir", str(data), "--port", "0", "--summary-every", "0.5")
    try:
        return await _wait_flowing(dev)
    except BaseException:
        dev.stop(sig=signal.SIGINT)
        raise


async def _wait_flowing(dev: CliProcess) -> tuple[CliProcess, set[int], dict[str, int]]:
    url = ""

    async def dashboard() -> bool:
        nonlocal url
        found = re.search(r"dashboard at (http://\S+)/", dev.output())
        url = found.group(1) if found else ""
        assert dev.returncode is None, dev.output()
        return bool(url)

    await eventually(dashboard, timeout=30, what="dev prints the dashboard URL")
    completed: dict[str, int] = {}

    async def flowing() -> bool:
        nonlocal completed
        try:
            stats = httpx.get(f"{url}/stats", timeout=2).json()
        except httpx.TransportError:
            return False
        completed = {q: stats["queues"].get(q, {}).get("completed", 0) for q in QUEUES}
        return all(completed.values())

    await eventually(
        flowing,
        timeout=60,
        interval=0.5,
        what="messages through every queue",
        detail=lambda: f"completed so far {completed}\n{dev.output()[-3000:]}",
    )
    return dev, children(dev.proc.pid), completed


async def test_dev_runs_the_pipeline_and_stops_cleanly(tmp_path: Path) -> None:
    for binary in ("redis-server", "mosquitto"):
        require_binary(binary, install=f"apt-get install {binary}")
    dev, kids, first = await run_until_flowing(tmp_path / "data")
    try:
        # redis, mosquitto, influxd (if built), ingestor, 4 workers, gateway, simulator
        assert len(kids) == 9 + (influxd_binary() is not None), dev.output()
        # As the chart's MessageQueues do: each default queue's priority is its jobs' default,
        # and it keeps the records of finished jobs the chart gives it.
        redis_url = re.search(r"Redis (\S+)", dev.output())
        assert redis_url, dev.output()
        async with QueueClient.from_url(redis_url.group(1)) as client:
            policies = {q.name: await client.get_policy(q.name) for q in DEFAULT_QUEUES}
        written = {n: (p.default_priority, p.done_max_count) for n, p in policies.items()}
        assert written == {q.name: (q.priority, q.finished_records) for q in DEFAULT_QUEUES}
    finally:
        code = dev.stop(sig=signal.SIGINT)  # Ctrl-C
    assert code == 0, dev.output()
    assert "Conveyor dev stopped." in dev.output()
    assert [pid for pid in kids if alive(pid)] == []
    logs = {p.name for p in (tmp_path / "data" / "logs").iterdir()}
    assert {"ingestor.log", "gateway.log", "simulator.log", "worker-alerts.log"} <= logs

    # The data stays: a second start counts on from where the first stopped.
    dev, _, again = await run_until_flowing(tmp_path / "data")
    assert dev.stop(sig=signal.SIGINT) == 0, dev.output()
    assert all(again[q] >= first[q] for q in QUEUES), (first, again)


def test_a_busy_dashboard_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_cli("dev", "--port", str(port), "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert f"port {port} is in use: pass --port with another, or --port 0" in out.stderr
    assert not (tmp_path / "redis").exists()  # nothing was started
