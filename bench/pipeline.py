"""``python -m bench pipeline``: MQTT -> InfluxDB end to end, and the CPU each message costs.

Runs the real processes on loopback: mosquitto, Redis, InfluxDB 1.8 (hack/tools.sh), one
``conveyor ingest`` and 1, 2 and 4 ``conveyor work --queue mqtt_realtime`` processes, all with
default settings, and the queues' policies as the chart's MessageQueues set them
(``conveyor.default_policies``). For each worker count the broker first holds N realtime
messages (one value each) for the ingestor's persistent session, published while it is away, so
the publisher's cost stays outside the timed window; then the ingestor starts, and the run is
timed from its start to the N-th point visible in InfluxDB. The CPU seconds of every process
(ingestor, workers, redis-server, mosquitto, influxd; ``/proc/<pid>/stat``) over the run are
printed per message. Telegraf (``mqtt_consumer -> outputs.influxdb``, built by ``hack/tools.sh
telegraf``) drains the same N messages through the same broker into the same InfluxDB (another
database), measured the same way, right after the one-worker run it is compared with (the speed
of a shared machine drifts within minutes); the two alternate ``--rounds`` times (default 2) and
the best round of each is compared, every round printed. Beside them: InfluxDB's own ingest
limit, a direct writer of batches of 5,000 points. Then, with one worker process, the latency
from publish to the point being visible in a query at a steady rate (measured by polling every
20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import redis

from bench import cpu, telegraf
from bench.broker_sessions import drop_session, hold_session
from bench.mqtt_publish import publish_all
from conveyor.default_policies import write_default_policies
from conveyor.local_servers import (
    InfluxServer,
    MosquittoServer,
    RedisServer,
    find_binary,
    influxd_binary,
)
from conveyor.tables import render
from reliable_queue import QueueClient

CLI = [sys.executable, "-m", "conveyor.cli", "--log-format", "json"]
BASE_TS = 1_700_000_000_000
INGEST_CLIENT_ID = "bench-pipeline"
INGEST_FILTERS = ("+/alerts", "+/realtime", "+/spc", "+/tech")  # the ingestor's default routes
WORKER_COUNTS = (1, 2, 4)
TELEGRAF_DATABASE = "telegraf"
ROWS = (
    ("ingest", "ingest (Conveyor) / telegraf"),
    ("workers", "workers (realtime: InfluxDB + cache + stream)"),
    ("redis-server", "redis-server"),
    ("mosquitto", "mosquitto"),
    ("influxd", "influxd"),
)


@dataclasses.dataclass
class Run:
    """One contender's drain of N held messages: its rate and its CPU seconds per process."""

    label: str
    messages: int
    seconds: float
    cpu: dict[str, float]
    redis_calls: dict[str, int] = dataclasses.field(default_factory=dict)
    """Redis commands run over the run, by name (scripts' own calls included), from INFO."""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def us_per_message(self, group: str) -> float | None:
        if group not in self.cpu:
            return None
        return self.cpu[group] / self.messages * 1e6

    @property
    def total_us(self) -> float:
        return sum(self.cpu.values()) / self.messages * 1e6


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-pipeline-"))
    binaries = (find_binary("redis-server"), find_binary("mosquitto"), influxd_binary())
    if None in binaries:
        print(
            "bench: redis-server, mosquitto and influxd are needed: run hack/bootstrap.sh "
            "and hack/tools.sh",
            file=sys.stderr,
        )
        return 3
    redis_bin, mosquitto_bin, influx_bin = binaries
    assert redis_bin is not None
    assert mosquitto_bin is not None
    assert influx_bin is not None
    telegraf_bin = telegraf.binary()
    if telegraf_bin is None and getattr(args, "telegraf", False):
        _note("building telegraf (bash hack/tools.sh telegraf)")
        telegraf_bin = telegraf.build()
    rs = RedisServer(redis_bin, work / "redis").start()
    broker = MosquittoServer(mosquitto_bin, work / "mosquitto").start()
    influx = InfluxServer(influx_bin, work / "influxdb").start()
    try:
        return _bench(args.messages, rs, broker, influx, telegraf_bin, work, args.rounds)
    finally:
        influx.stop()
        broker.stop()
        rs.stop()


def _bench(
    n: int,
    rs: RedisServer,
    broker: MosquittoServer,
    influx: InfluxServer,
    telegraf_bin: Path | None,
    work: Path,
    rounds: int,
) -> int:
    limit = _influx_limit(influx, n)
    env = {
        **os.environ,
        "REDIS_URL": rs.url,
        "MQTT_BROKER_URL": broker.url,
        "INFLUX_URL": influx.url,
        "INFLUX_BUCKET": influx.bucket,
        "PROBE_HOST": "127.0.0.1",
        "PROBE_PORT": "0",
    }
    servers = {
        "redis-server": [_pid(rs)],
        "mosquitto": [_pid(broker)],
        "influxd": [_pid(influx)],
    }
    pipeline = _Pipeline(n, env, rs, broker, influx, servers)
    heads: list[Run] = []  # the one-worker runs, each followed by Telegraf's
    peers: list[Run] = []
    for i in range(rounds):
        heads.append(pipeline.drain(1, latency=i == 0))
        if telegraf_bin is not None:
            # Right after the run it is compared with: this machine's speed drifts by the minute.
            drop_session(broker.port, INGEST_CLIENT_ID, v5=True)  # not fed what Telegraf is sent
            peers.append(_telegraf(n, broker, influx, servers, telegraf_bin, work))
    runs = [_best(heads), *(pipeline.drain(workers) for workers in WORKER_COUNTS[1:])]
    _report(n, limit, runs, _best(peers) if peers else None, pipeline.latencies)
    if rounds > 1:
        print()
        print(_rounds_line(heads, peers))
    return 0


def _best(runs: list[Run]) -> Run:
    """The fastest of alternating rounds: the machine's slow minutes are noise, not cost."""
    return max(runs, key=lambda r: r.rate)


def _rounds_line(heads: list[Run], peers: list[Run]) -> str:
    def rates(runs: list[Run]) -> str:
        return ", ".join(f"{r.rate:,.0f}" for r in runs)

    line = f"Rounds, alternating, best of each above: Conveyor 1 worker {rates(heads)} msgs/s"
    if peers:
        ratios = ", ".join(f"{h.rate / p.rate:.2f}x" for h, p in zip(heads, peers, strict=False))
        line += f"; Telegraf {rates(peers)} msgs/s; round by round {ratios}"
    return line


@dataclasses.dataclass
class _Pipeline:
    """Conveyor's processes against the servers: one drain of N held messages per call."""

    n: int
    env: dict[str, str]
    rs: RedisServer
    broker: MosquittoServer
    influx: InfluxServer
    servers: dict[str, list[int]]
    latencies: list[float] = dataclasses.field(default_factory=list)

    def drain(self, workers: int, *, latency: bool = False) -> Run:
        """One drain; with ``latency``, then the latency at a steady rate, while the processes
        still run."""
        n, broker = self.n, self.broker
        redis_stats = redis.Redis.from_url(self.rs.url)
        _reset(self.rs, self.influx)
        _note(f"pipeline with {workers} worker process(es): holding {n:,} messages at the broker")
        drop_session(broker.port, INGEST_CLIENT_ID, v5=True)  # nothing left from a run before
        hold_session(broker.port, INGEST_CLIENT_ID, INGEST_FILTERS, v5=True)
        publish_all(broker.port, _messages(n, 0))
        procs = [_spawn(self.env, ["work", "--queue", "mqtt_realtime"]) for _ in range(workers)]
        try:
            cpu.wait_idle([p.pid for p in procs])
            groups = {**self.servers, "workers": [p.pid for p in procs]}
            redis_stats.config_resetstat()
            before = cpu.snapshot(groups)
            start = time.monotonic()
            ingest = _spawn(self.env, ["ingest"], MQTT_CLIENT_ID=INGEST_CLIENT_ID)
            procs.append(ingest)
            _note(f"draining {n:,} messages")
            _wait_points(self.influx, n, procs)
            seconds = time.monotonic() - start
            after = cpu.snapshot({**groups, "ingest": [ingest.pid]})
            calls = _redis_calls(redis_stats)
            if latency:
                _note("latency at a steady 500 msgs/s")
                self.latencies = _latency(broker, self.influx, rate=500, seconds=6, offset=n)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
            redis_stats.close()
        return Run(f"{workers} worker(s)", n, seconds, cpu.used(before, after), calls)


def _telegraf(
    n: int,
    broker: MosquittoServer,
    influx: InfluxServer,
    servers: Mapping[str, list[int]],
    path: Path,
    work: Path,
) -> Run:
    db = dataclasses.replace(influx, database=TELEGRAF_DATABASE)
    db.query(f"DROP DATABASE {TELEGRAF_DATABASE}")
    db.query(f"CREATE DATABASE {TELEGRAF_DATABASE}")
    _note(f"telegraf: holding {n:,} messages at the broker")
    hold_session(broker.port, telegraf.CLIENT_ID, telegraf.TOPICS, v5=False)
    publish_all(broker.port, _messages(n, 0))
    workdir = work / "telegraf"
    conf = telegraf.config(
        broker_port=broker.port, influx_url=influx.url, database=TELEGRAF_DATABASE, workdir=workdir
    )
    before = cpu.snapshot(servers)
    start = time.monotonic()
    proc = telegraf.start(path, conf, workdir)
    try:
        _note(f"telegraf: draining {n:,} messages")
        _wait_points(db, n, [proc], log=workdir / "telegraf.log")
        seconds = time.monotonic() - start
        after = cpu.snapshot({**servers, "ingest": [proc.pid]})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return Run("Telegraf", n, seconds, cpu.used(before, after))


def _report(
    n: int, limit: float, runs: list[Run], peer: Run | None, latencies: list[float]
) -> None:
    print()
    print(
        f"Pipeline benchmark: {n:,} realtime messages (one value each) held by the broker for the "
        f"subscriber's persistent session, MQTT QoS 1 -> InfluxDB point visible, timed from the "
        f"subscriber's start; {os.cpu_count()} cores, everything on this machine, default settings"
    )
    print()
    rows = [("InfluxDB's own limit: direct writer, batches of 5,000", f"{limit:,.0f}", "1.00")]
    rows += [
        (f"Conveyor: 1 ingestor + {r.label}", f"{r.rate:,.0f}", f"{r.rate / limit:.2f}")
        for r in runs
    ]
    if peer is not None:
        rows.append(
            (
                "Telegraf: mqtt_consumer -> outputs.influxdb",
                f"{peer.rate:,.0f}",
                f"{peer.rate / limit:.2f}",
            )
        )
    print(render(("MQTT -> InfluxDB", "msgs/s", "x InfluxDB limit"), rows, figures=True))
    print()
    contenders = [*runs, *([peer] if peer is not None else [])]
    headers = ("CPU µs per message", *(c.label for c in contenders))
    table = [(title, *(_us(c.us_per_message(group)) for c in contenders)) for group, title in ROWS]
    table.append(("total", *(f"{c.total_us:,.0f}" for c in contenders)))
    print(render(headers, table, figures=True))
    print()
    for run in runs[:1]:
        print(_redis_line(run))
        print()
    if peer is not None and runs:
        one = runs[0]
        print(
            f"Conveyor (1 ingestor + 1 worker) / Telegraf: {one.rate / peer.rate:.2f}x the "
            f"throughput, {one.total_us / peer.total_us:.2f}x the CPU per message"
        )
    else:
        print(telegraf.NOT_BUILT)
    if not latencies:
        print()
        print("publish -> visible in InfluxDB: no point became visible; the latency is unknown")
    else:
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print()
        print(
            f"publish -> visible in InfluxDB at 500 msgs/s, 1 worker: p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms (polled every 20 ms; {len(latencies):,} points)"
        )


def _redis_calls(r: redis.Redis) -> dict[str, int]:
    stats = cast(dict[str, dict[str, int]], r.info("commandstats"))
    return {
        name.removeprefix("cmdstat_"): int(stat["calls"])
        for name, stat in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


def _redis_line(run: Run) -> str:
    """Redis commands per message: scripts, then the commands they and the clients ran."""
    per = {name: calls / run.messages for name, calls in run.redis_calls.items()}
    scripts = per.pop("evalsha", 0.0) + per.pop("eval", 0.0)
    top = sorted(per.items(), key=lambda kv: -kv[1])[:6]
    named = ", ".join(f"{name} {count:.3f}" for name, count in top)
    return (
        f"Redis per message ({run.label}): {scripts:.3f} script calls, {sum(per.values()):.2f} "
        f"commands in all, scripts' own included (most: {named})"
    )


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _pid(server: RedisServer | MosquittoServer | InfluxServer) -> int:
    assert server.proc is not None
    return server.proc.pid


def _spawn(env: Mapping[str, str], args: list[str], **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, *args],
        env={**env, **extra},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_points(
    influx: InfluxServer,
    n: int,
    procs: list[subprocess.Popen[bytes]],
    *,
    log: Path | None = None,
) -> None:
    """Wait until InfluxDB holds n points; fail if a contender exits or nothing moves for 60 s."""
    seen, moved = -1, time.monotonic()
    while (count := _count(influx)) < n:
        now = time.monotonic()
        if count != seen:
            seen, moved = count, now
        where = f" (its log: {log})" if log else ""
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(
                    f"{p.args!r} exited with {p.returncode} after {count:,} of {n:,} points{where}"
                )
        if now - moved > 60:
            raise TimeoutError(
                f"InfluxDB has {count:,} of {n:,} points and none came for 60 s{where}"
            )
        time.sleep(0.05)


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


def _reset(rs: RedisServer, influx: InfluxServer) -> None:
    """Empty servers, and the default queues' policies as the chart's MessageQueues set them."""
    redis.Redis.from_url(rs.url).flushall()

    async def policies() -> None:
        async with QueueClient.from_url(rs.url) as client:
            await write_default_policies(client)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from the CLI's event loop
        pool.submit(asyncio.run, policies()).result()
    influx.query(f"DROP DATABASE {influx.database}")
    influx.query(f"CREATE DATABASE {influx.database}")


def _count(influx: InfluxServer) -> int:
    series = influx.query("SELECT count(value) FROM realtime")
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


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
