"""``python -m bench soak``: normal traffic beside a misbehaving device flood, for minutes.

Everything runs as real processes on loopback: mosquitto, Redis, InfluxDB 1.8, one
``conveyor ingest`` and one ``conveyor work`` per default queue. Normal traffic: ``--machines``
machines publish ``--rate`` realtime messages a second in all (QoS 1), each with a sequence
number. Its latency is publish -> the machine's live-stream event, which the realtime worker
sends only after InfluxDB took the point. A first phase runs it alone (unloaded); then a
second process floods the broker at ``--flood-rate`` messages a second, as a plant full of
misconfigured devices would (:mod:`bench.soak_flood`).

Printed: normal traffic's latency p50/p99 unloaded and loaded (target: loaded within 2x);
Redis ``used_memory`` (start, max, end) against the bound the memory budget gives; the RSS of
every process against its bound; rejected messages by reason; good messages lost (must be 0:
each normal message is counted in InfluxDB at the end). Exit code 1 when a claim fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion

from bench.soak_figures import (
    DEAD_INGEST_MAX_BYTES,
    QUEUES,
    Normal,
    Samples,
    monitor,
    report,
)
from conveyor.local_servers import (
    InfluxServer,
    MosquittoServer,
    RedisServer,
    find_binary,
    free_port,
    influxd_binary,
)
from reliable_queue import QueueClient

CLI = [sys.executable, "-m", "conveyor.cli", "--log-format", "json"]


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem:
        print(f"bench soak: {problem}", file=sys.stderr)
        return 2
    binaries = (find_binary("redis-server"), find_binary("mosquitto"), influxd_binary())
    if None in binaries:
        print(
            "bench: redis-server, mosquitto and influxd are needed: run hack/bootstrap.sh "
            "and hack/tools.sh",
            file=sys.stderr,
        )
        return 3
    redis_bin, mosquitto_bin, influx_bin = (str(b) for b in binaries)
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-soak-"))
    _note(f"servers and logs in {work}")
    rs = RedisServer(redis_bin, work / "redis").start()
    broker = MosquittoServer(mosquitto_bin, work / "mosquitto").start()
    influx = InfluxServer(influx_bin, work / "influxdb").start()
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        procs = _start(work, rs, broker, influx, args)
        return _soak(args, work, rs, broker, influx, procs)
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            proc.wait(timeout=60)
        influx.stop()
        broker.stop()
        rs.stop()


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, said so that it can be fixed; None if nothing."""
    from bench.soak_flood import GROUPS

    if args.seconds < 20:
        return f"--seconds {args.seconds:g}: give at least 20 (a quarter runs without the flood)"
    for name in ("rate", "flood_rate", "machines"):
        if getattr(args, name) <= 0:
            return f"--{name.replace('_', '-')} must be above 0"
    groups = [g for g in args.flood_groups.split(",") if g]
    if not groups or not set(groups) <= set(GROUPS):
        return f"--flood-groups {args.flood_groups!r}: choose from {', '.join(GROUPS)}"
    if args.max_payload_bytes < 64:
        return "--max-payload-bytes must be at least 64 (INGEST_MAX_PAYLOAD_BYTES' minimum)"
    return None


def _start(
    work: Path,
    rs: RedisServer,
    broker: MosquittoServer,
    influx: InfluxServer,
    args: argparse.Namespace,
) -> dict[str, tuple[subprocess.Popen[bytes], int]]:
    env = {
        **os.environ,
        "REDIS_URL": rs.url,
        "MQTT_BROKER_URL": broker.url,
        "MQTT_CLIENT_ID": "bench-soak-ingest",
        "INFLUX_URL": influx.url,
        "INFLUX_BUCKET": influx.bucket,
        "INGEST_MAX_PAYLOAD_BYTES": str(args.max_payload_bytes),
        "INGEST_DEAD_MAX_BYTES": str(DEAD_INGEST_MAX_BYTES),
        "PROBE_HOST": "127.0.0.1",
    }
    commands = {"ingest": ["ingest"], **{q: ["work", "--queue", q] for q in QUEUES}}
    procs = {}
    for name, command in commands.items():
        port = free_port()
        log = (work / f"{name}.log").open("ab")
        procs[name] = (
            subprocess.Popen(
                [*CLI, *command],
                env={**env, "PROBE_PORT": str(port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            port,
        )
        log.close()
    deadline = time.monotonic() + 60
    while not all(_status(port, "/readyz") == 200 for _, port in procs.values()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the services did not become ready within 60 s: see {work}")
        time.sleep(0.1)
    return procs


def _soak(
    args: argparse.Namespace,
    work: Path,
    rs: RedisServer,
    broker: MosquittoServer,
    influx: InfluxServer,
    procs: dict[str, tuple[subprocess.Popen[bytes], int]],
) -> int:
    unloaded_s = min(60.0, max(10.0, args.seconds / 4))
    loaded_s = max(10.0, args.seconds - unloaded_s)
    samples, normal = Samples(), Normal()
    stop_monitor = threading.Event()
    r = redis.Redis.from_url(rs.url)
    servers = {"redis-server": rs.proc, "mosquitto": broker.proc, "influxd": influx.proc}
    watched = {**{n: p for n, p in servers.items() if p is not None}}

    def pids() -> dict[str, int]:
        running = {**{n: p for n, (p, _) in procs.items()}, **watched}
        alive = {n: p.pid for n, p in running.items() if p.poll() is None}
        return {**alive, "this bench (normal traffic)": os.getpid()}

    threads = [
        threading.Thread(target=monitor, args=(r, pids, samples, stop_monitor), daemon=True),
        threading.Thread(target=_listen, args=(rs.url, normal), daemon=True),
        threading.Thread(
            target=_publish_normal,
            args=(broker.port, args.machines, args.rate, normal),
            daemon=True,
        ),
    ]
    for t in threads:
        t.start()
    _note(f"unloaded: {args.rate} msgs/s from {args.machines} machines for {unloaded_s:.0f} s")
    time.sleep(unloaded_s)  # the unloaded phase runs meanwhile
    flood_started = time.time()
    _note(f"loaded: a flood of {args.flood_rate} msgs/s beside it for {loaded_s:.0f} s")
    flood = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.soak_flood",
            "--port",
            str(broker.port),
            "--rate",
            str(args.flood_rate),
            "--seconds",
            str(loaded_s),
            "--max-payload-bytes",
            str(args.max_payload_bytes),
            "--seed",
            str(args.seed),
            "--groups",
            args.flood_groups,
        ],
        stdout=subprocess.PIPE,
    )
    procs["flood"] = (flood, 0)  # watched, not bounded: it is the devices, not Conveyor
    out, _ = flood.communicate(timeout=loaded_s + 120)
    if flood.returncode != 0:
        raise RuntimeError(f"the flood publisher failed with exit code {flood.returncode}")
    del procs["flood"]
    flood_ended = time.time()
    normal.stop.set()
    threads[2].join(timeout=60)  # every normal message acknowledged by the broker
    flood_counts: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])
    _note("draining")
    worker_dead, dead_ingest = asyncio.run(_drain(rs.url, influx, len(normal.sent)))
    stop_monitor.set()
    normal.done.set()
    for t in (threads[0], threads[1]):
        t.join(timeout=5)
    stored = _normal_points(influx)
    metrics = _metrics(procs["ingest"][1])
    dead_bytes = _dead_bytes(r)
    broker_dropped = (
        (work / "mosquitto" / "mosquitto.log")
        .read_text(errors="replace")
        .count("Dropping too large outgoing PUBLISH")
    )
    alive = {name: proc.poll() is None for name, (proc, _) in procs.items()}
    return report(
        args,
        samples=samples,
        normal=normal,
        windows=(flood_started, flood_ended),
        flood_counts=flood_counts,
        stored=stored,
        metrics=metrics,
        worker_dead=worker_dead,
        dead_ingest=(dead_ingest, dead_bytes),
        broker_dropped=broker_dropped,
        machines_created=flood_counts.get("new_machines", 0),
        alive=alive,
    )


async def _drain(url: str, influx: InfluxServer, sent: int) -> tuple[Counter[tuple[str, str]], int]:
    """Wait until every queue is empty and InfluxDB holds every normal message (at most two
    minutes); then the worker queues' dead letters by reason, and dead:ingest's length."""
    async with QueueClient.from_url(url) as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stats = (await client.stats(list(QUEUES)))["queues"]
            busy = sum(s["pending"] + s["processing"] + s["delayed"] for s in stats.values())
            if busy == 0 and _normal_points(influx) >= sent:
                break
            await asyncio.sleep(0.5)
        worker_dead: Counter[tuple[str, str]] = Counter()
        for q in QUEUES:
            worker_dead.update((q, d.reason) for d in await client.dead_letters(q, limit=100_000))
        return worker_dead, await client.dead_letter_count("ingest")


# --- normal traffic ------------------------------------------------------------------------


def _publish_normal(port: int, machines: int, rate: float, normal: Normal) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    last_ts: dict[int, int] = {}
    unacked: list[mqtt.MQTTMessageInfo] = []
    started = time.time()
    seq = 0
    try:
        while not normal.stop.is_set():
            due = started + seq / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)  # pacing a steady rate, not waiting for anything
            machine = seq % machines
            now = time.time()
            ts = max(int(now * 1000), last_ts.get(machine, 0) + 1)  # one point per message
            last_ts[machine] = ts
            body = {"timestamp": ts, "seq": seq, "temp": 20.0 + seq % 100 / 10}
            normal.sent[seq] = now
            unacked.append(
                client.publish(f"soak-press-{machine}/realtime", json.dumps(body), qos=1)
            )
            seq += 1
            if len(unacked) > 5000:
                unacked = [i for i in unacked if not i.is_published()]
        for info in unacked:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


def _listen(url: str, normal: Normal) -> None:
    pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.psubscribe("conveyor:live:soak-press-*")
    while not normal.done.is_set():
        message = pubsub.get_message(timeout=0.5)
        if message is None:
            continue
        now = time.time()
        seq = json.loads(message["data"]).get("values", {}).get("seq")
        if isinstance(seq, int | float):
            normal.seen.setdefault(int(seq), now)


def _normal_points(influx: InfluxServer) -> int:
    series = influx.query(
        "SELECT count(value) FROM realtime WHERE signal = 'seq' AND machine =~ /^soak-press-/"
    )
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _dead_bytes(r: redis.Redis) -> int:
    """What dead:ingest holds, as Redis counts it (MEMORY USAGE of its three keys)."""
    total = 0
    for key in r.scan_iter(match="conveyor:{ingest}:*"):
        if b"dead" in key or key.endswith(b":jobs"):
            total += int(r.memory_usage(key, samples=0) or 0)
    return total


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as resp:
            return int(resp.status)
    except OSError:
        return 0


def _note(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
