"""``conveyor bench pipeline``: MQTT publish -> InfluxDB point visible, end to end.

Runs the real processes on loopback: mosquitto, Redis, InfluxDB 1.8 (hack/tools.sh), one
``conveyor ingest`` and 1, 2 and 4 ``conveyor work --queue mqtt_realtime`` processes. For each
worker count it publishes N realtime messages (one value each) and times until InfluxDB holds
all N points. Beside it: InfluxDB's own ingest limit on the same server, a direct writer of
batches of 5,000 points. Then, with one worker process, the latency from publish to the point
being visible in a query, at a steady rate (measured by polling every 20 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, cast

from conveyor.bench.mqtt_publish import publish_all
from conveyor.local_servers import (
    InfluxServer,
    MosquittoServer,
    RedisServer,
    find_binary,
    influxd_binary,
)
from conveyor.tables import render

CLI = [sys.executable, "-m", "conveyor.cli", "--log-format", "json"]
BASE_TS = 1_700_000_000_000


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-pipeline-"))
    binaries = (find_binary("redis-server"), find_binary("mosquitto"), influxd_binary())
    if None in binaries:
        print(
            "conveyor bench: redis-server, mosquitto and influxd are needed: run hack/bootstrap.sh "
            "and hack/tools.sh",
            file=sys.stderr,
        )
        return 3
    redis_bin, mosquitto_bin, influx_bin = binaries
    assert redis_bin is not None
    assert mosquitto_bin is not None
    assert influx_bin is not None
    rs = RedisServer(redis_bin, work / "redis").start()
    broker = MosquittoServer(mosquitto_bin, work / "mosquitto").start()
    influx = InfluxServer(influx_bin, work / "influxdb").start()
    try:
        return _bench(args.messages, rs, broker, influx)
    finally:
        influx.stop()
        broker.stop()
        rs.stop()


def _bench(n: int, rs: RedisServer, broker: MosquittoServer, influx: InfluxServer) -> int:
    limit = _influx_limit(influx, n)
    rows = [("InfluxDB's own limit: direct writer, batches of 5,000", f"{limit:,.0f}", "1.00")]
    env = {
        **os.environ,
        "REDIS_URL": rs.url,
        "MQTT_BROKER_URL": broker.url,
        "INFLUX_URL": influx.url,
        "INFLUX_BUCKET": influx.bucket,
        "WORKER_BATCH_SIZE": "1000",
        "PROBE_HOST": "127.0.0.1",
        "PROBE_PORT": "0",
    }
    latencies: list[float] = []
    offset = 0
    for workers in (1, 2, 4):
        _reset(rs, influx)
        procs = _start(env, workers)
        try:
            _note(f"pipeline with {workers} worker process(es)")
            rate = _throughput(broker, influx, n, offset)
            offset += n
            rows.append(
                (
                    f"pipeline, 1 ingestor + {workers} worker process(es)",
                    f"{rate:,.0f}",
                    f"{rate / limit:.2f}",
                )
            )
            if workers == 1:
                _note("latency at a steady 500 msgs/s")
                latencies = _latency(broker, influx, rate=500, seconds=6, offset=offset)
                offset += 3000
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
    print()
    print(
        f"Pipeline benchmark: {n:,} realtime messages (one value each), MQTT QoS 1 -> "
        f"InfluxDB point visible, {os.cpu_count()} cores, everything on this machine"
    )
    print()
    print(render(("MQTT -> InfluxDB", "points/s", "x InfluxDB limit"), rows, figures=True))
    if latencies:
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print()
        print(
            f"publish -> visible in InfluxDB at 500 msgs/s, 1 worker: p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms (polled every 20 ms; {len(latencies):,} points)"
        )
    return 0


def _reset(rs: RedisServer, influx: InfluxServer) -> None:
    import redis

    redis.Redis.from_url(rs.url).flushall()
    influx.query(f"DROP DATABASE {influx.database}")
    influx.query(f"CREATE DATABASE {influx.database}")


def _start(env: dict[str, str], workers: int) -> list[subprocess.Popen[bytes]]:
    def spawn(args: list[str], extra: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*CLI, *args],
            env={**env, **extra},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    procs = [spawn(["ingest"], {"MQTT_CLIENT_ID": "bench-pipeline"})]
    procs += [
        spawn(["work", "--queue", "mqtt_realtime", "--concurrency", "2"], {})
        for _ in range(workers)
    ]
    time.sleep(3)  # connected and subscribed
    return procs


def _messages(n: int, offset: int, *, ts: float | None = None) -> list[tuple[str, bytes]]:
    return [
        (
            f"press-{i % 20}/realtime",
            json.dumps(
                {"timestamp": int(ts * 1000) if ts else BASE_TS + i, "temp": float(i)}
            ).encode(),
        )
        for i in range(offset, offset + n)
    ]


def _count(influx: InfluxServer) -> int:
    series = influx.query("SELECT count(value) FROM realtime")
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


def _throughput(broker: MosquittoServer, influx: InfluxServer, n: int, offset: int) -> float:
    messages = _messages(n, offset)
    start = time.time()
    sender = threading.Thread(target=publish_all, args=(broker.port, messages))
    sender.start()
    while _count(influx) < n:
        time.sleep(0.05)
    elapsed = time.time() - start
    sender.join()
    return n / elapsed


def _influx_limit(influx: InfluxServer, n: int) -> float:
    _note("InfluxDB's own write limit")
    lines = [
        f"realtime,machine=press-{i % 20},signal=temp value={float(i)} {BASE_TS + i}"
        for i in range(n)
    ]
    start = time.time()
    for i in range(0, n, 5000):
        body = "\n".join(lines[i : i + 5000]).encode()
        query = urllib.parse.urlencode({"bucket": influx.bucket, "precision": "ms"})
        request = urllib.request.Request(  # noqa: S310 - an http:// URL on loopback
            f"{influx.url}/api/v2/write?{query}", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - loopback
            resp.read()
    while _count(influx) < n:
        time.sleep(0.01)
    return n / (time.time() - start)


def _latency(
    broker: MosquittoServer, influx: InfluxServer, *, rate: float, seconds: float, offset: int
) -> list[float]:
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    total = int(rate * seconds)

    def publish() -> None:
        t0 = time.time()
        for k in range(total):
            due = t0 + k / rate
            time.sleep(max(0.0, due - time.time()))
            now = time.time()
            sent[int(now * 1000)] = now
            _one(broker, now, offset + k)

    sender = threading.Thread(target=publish)
    sender.start()
    deadline = time.time() + seconds + 30
    while time.time() < deadline and len(seen) < total:
        series = influx.query("SELECT value FROM realtime WHERE time > now() - 1m")
        now = time.time()
        rows = cast(list[list[Any]], series[0]["values"]) if series else []
        for row in rows:
            seen.setdefault(int(_epoch_ms(row[0])), now)
        time.sleep(0.02)
    sender.join()
    return [seen[ms] - t for ms, t in sent.items() if ms in seen]


_PUBLISHER: dict[str, object] = {}


def _one(broker: MosquittoServer, ts: float, i: int) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = _PUBLISHER.get("client")
    if client is None:
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        _PUBLISHER["client"] = client
    assert isinstance(client, mqtt.Client)
    topic, payload = _messages(1, i, ts=ts)[0]
    client.publish(topic, payload, qos=1)


def _epoch_ms(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000


def _note(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
