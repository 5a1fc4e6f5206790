"""``python -m bench ingest``: MQTT -> Redis messages/s at QoS 1 for one ingestor process.

Each contender drains the same backlog: N messages published to the broker while its
persistent session was offline, then timed from its connection to the last message handled.
So the figure is the consumer's own speed, not the publisher's. Beside the ingestor: the
broker's limit as one Python client sees it (a subscriber that only counts) and a naive
ingestor (one LPUSH per message, acknowledged by paho before Redis is even asked).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis

from conveyor.local_servers import MosquittoServer, RedisServer, find_binary, free_port
from conveyor.tables import render

BASELINES = [sys.executable, "-m", "bench.mqtt_baselines"]
CONVEYOR = [sys.executable, "-m", "conveyor.cli", "--log-format", "json", "ingest"]


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-ingest-"))
    redis_bin, mosquitto_bin = find_binary("redis-server"), find_binary("mosquitto")
    if redis_bin is None or mosquitto_bin is None:
        print(
            "bench: redis-server and mosquitto are needed: run hack/bootstrap.sh",
            file=sys.stderr,
        )
        return 3
    rs = RedisServer(redis_bin, work / "redis").start()
    broker = MosquittoServer(mosquitto_bin, work / "mosquitto").start()
    try:
        return _bench(args.messages, rs, broker)
    finally:
        broker.stop()
        rs.stop()


def _bench(n: int, rs: RedisServer, broker: MosquittoServer) -> int:
    r = redis.Redis.from_url(rs.url)
    rows = []
    count = _baseline("count", n, broker, rs)
    rows.append(("broker limit: a paho subscriber that only counts", count))
    naive = _baseline("naive", n, broker, rs)
    rows.append(("naive: one LPUSH per message, acked before Redis", naive))
    r.flushall()
    conveyor = _conveyor(n, broker, rs)
    rows.append(("conveyor ingest: validated, batched, acked after Redis", conveyor))
    print()
    print(
        f"Ingest benchmark: {n:,} realtime messages (QoS 1, ~90 bytes) drained from a "
        "persistent session by one process"
    )
    print()
    print(
        render(
            ("MQTT -> Redis", "msgs/s", "x broker limit"),
            [(label, f"{rate:,.0f}", f"{rate / count:.2f}") for label, rate in rows],
            figures=True,
        )
    )
    return 0


def _payloads(n: int) -> list[tuple[str, bytes]]:
    base = 1_750_000_000_000
    return [
        (
            f"press-{i % 20}/realtime",
            json.dumps({"timestamp": base + i, "values": {"temp": 21.5, "rpm": 1200 + i}}).encode(),
        )
        for i in range(n)
    ]


def _publish(broker: MosquittoServer, n: int) -> None:
    from bench.mqtt_publish import publish_all

    _note(f"publishing {n:,} messages into the offline session")
    publish_all(broker.port, _payloads(n))


def _baseline(mode: str, n: int, broker: MosquittoServer, rs: RedisServer) -> float:
    client_id = f"bench-{mode}"
    common = ["--broker-port", str(broker.port), "--client-id", client_id, "--redis-url", rs.url]
    subprocess.run([*BASELINES, "prepare", *common], check=True, capture_output=True, timeout=60)
    _publish(broker, n)
    _note(f"measuring {mode}")
    out = subprocess.run(
        [*BASELINES, mode, *common, "--n", str(n)],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    times = dict(line.split() for line in out.splitlines())
    return n / (float(times["done"]) - float(times["connected"]))


def _conveyor(n: int, broker: MosquittoServer, rs: RedisServer) -> float:
    port = free_port()
    env = {
        "REDIS_URL": rs.url,
        "MQTT_BROKER_URL": broker.url,
        "MQTT_CLIENT_ID": "bench-conveyor",
        "PROBE_HOST": "127.0.0.1",
        "PROBE_PORT": str(port),
        "PATH": "/usr/bin:/bin",
    }
    # First run: create the session and its subscriptions, then leave.
    proc = subprocess.Popen(CONVEYOR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_connected(port)
    proc.terminate()
    proc.wait(timeout=30)
    _publish(broker, n)
    _note("measuring conveyor ingest")
    r = redis.Redis.from_url(rs.url)
    proc = subprocess.Popen(CONVEYOR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start = _wait_connected(port)
        while int(r.zcard("conveyor:{mqtt_realtime}:pending")) < n:
            time.sleep(0.005)
        return n / (time.time() - start)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_connected(port: int) -> float:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
                if 'conveyor_ingest_connected{peer="broker"} 1.0' in resp.read().decode():
                    return time.time()
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("the ingestor did not connect within 60 s")


def _note(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
