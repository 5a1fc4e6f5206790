"""``python -m bench ingest``: MQTT -> Redis messages/s at QoS 1 for one ingestor process.

Each contender drains the same backlog: N messages published to the broker while its
persistent session was offline, then timed from its connection to the last message handled.
So the figure is the consumer's own speed, not the publisher's. Beside the ingestor: the
broker's limit as one Python client sees it (a subscriber that only counts) and a naive
ingestor (one LPUSH per message, acknowledged by paho before Redis is even asked).

Then Sparkplug B: N NDATA of ``SPARKPLUG_METRICS`` metrics each, by alias, from 20 edge nodes
born first, through the same ingestor with INGEST_SPARKPLUG on: messages/s and metrics/s
beside the JSON figures (2 values a message).
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
    conveyor = _conveyor(n, broker, rs, _payloads(n), n)
    rows.append(("conveyor ingest: validated, batched, acked after Redis", conveyor))
    r.flushall()
    backlog = _sparkplug_payloads(n)
    sparkplug = _conveyor(n, broker, rs, backlog, len(backlog), sparkplug=True)
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
    print()
    print(
        f"Sparkplug B: {n:,} NDATA of {SPARKPLUG_METRICS} metrics by alias (QoS 1, "
        f"{len(backlog[-1][1])} bytes) from {SPARKPLUG_NODES} edge nodes, births first"
    )
    print()
    print(
        render(
            ("conveyor ingest", "msgs/s", "values/s", "x JSON values/s"),
            [
                (
                    "JSON realtime, 2 values a message",
                    f"{conveyor:,.0f}",
                    f"{conveyor * 2:,.0f}",
                    "1.00",
                ),
                (
                    f"Sparkplug B NDATA, {SPARKPLUG_METRICS} aliased metrics",
                    f"{sparkplug:,.0f}",
                    f"{sparkplug * SPARKPLUG_METRICS:,.0f}",
                    f"{sparkplug * SPARKPLUG_METRICS / (conveyor * 2):.2f}",
                ),
            ],
            figures=True,
        )
    )
    return 0


SPARKPLUG_METRICS = 50
SPARKPLUG_NODES = 20


def _sparkplug_payloads(n: int) -> list[tuple[str, bytes]]:
    """A birth of each edge node, then ``n`` NDATA spread over them, in seq order."""
    from conveyor_ingestor.sparkplug.decoding import DOUBLE, INT64
    from conveyor_ingestor.sparkplug.encoding import OutMetric, encode_payload

    base = 1_750_000_000_000
    out = []
    for node in range(SPARKPLUG_NODES):
        metrics = [OutMetric(INT64, 0, name="bdSeq")] + [
            OutMetric(DOUBLE, 0.0, name=f"Sensors/S{m:02d}", alias=m)
            for m in range(SPARKPLUG_METRICS)
        ]
        birth = encode_payload(metrics, timestamp=base, seq=0)
        out.append((f"spBv1.0/bench/NBIRTH/node{node}", birth))
    for i in range(n):
        node = i % SPARKPLUG_NODES
        seq = (i // SPARKPLUG_NODES + 1) % 256
        metrics = [OutMetric(DOUBLE, 20.0 + m + i, alias=m) for m in range(SPARKPLUG_METRICS)]
        data = encode_payload(metrics, timestamp=base + i, seq=seq)
        out.append((f"spBv1.0/bench/NDATA/node{node}", data))
    return out


def _payloads(n: int) -> list[tuple[str, bytes]]:
    base = 1_750_000_000_000
    return [
        (
            f"press-{i % 20}/realtime",
            json.dumps({"timestamp": base + i, "values": {"temp": 21.5, "rpm": 1200 + i}}).encode(),
        )
        for i in range(n)
    ]


def _publish(broker: MosquittoServer, payloads: list[tuple[str, bytes]]) -> None:
    from bench.mqtt_publish import publish_all

    _note(f"publishing {len(payloads):,} messages into the offline session")
    publish_all(broker.port, payloads)


def _baseline(mode: str, n: int, broker: MosquittoServer, rs: RedisServer) -> float:
    client_id = f"bench-{mode}"
    common = ["--broker-port", str(broker.port), "--client-id", client_id, "--redis-url", rs.url]
    subprocess.run([*BASELINES, "prepare", *common], check=True, capture_output=True, timeout=60)
    _publish(broker, _payloads(n))
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


def _conveyor(
    n: int,
    broker: MosquittoServer,
    rs: RedisServer,
    payloads: list[tuple[str, bytes]],
    jobs: int,
    *,
    sparkplug: bool = False,
) -> float:
    """Messages/s of ``n`` (of ``payloads``, which make ``jobs`` realtime jobs)."""
    port = free_port()
    env = {
        "REDIS_URL": rs.url,
        "MQTT_BROKER_URL": broker.url,
        "MQTT_CLIENT_ID": "bench-conveyor-sparkplug" if sparkplug else "bench-conveyor",
        "PROBE_HOST": "127.0.0.1",
        "PROBE_PORT": str(port),
        "PATH": "/usr/bin:/bin",
        **({"INGEST_SPARKPLUG": "true"} if sparkplug else {}),
    }
    # First run: create the session and its subscriptions, then leave.
    proc = subprocess.Popen(CONVEYOR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_connected(port)
    proc.terminate()
    proc.wait(timeout=30)
    _publish(broker, payloads)
    _note(f"measuring conveyor ingest{' (Sparkplug B)' if sparkplug else ''}")
    r = redis.Redis.from_url(rs.url)
    proc = subprocess.Popen(CONVEYOR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start = _wait_connected(port)
        while int(r.zcard("conveyor:{mqtt_realtime}:pending")) < jobs:
            if proc.poll() is not None:
                raise RuntimeError(f"conveyor ingest exited with {proc.returncode}")
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
