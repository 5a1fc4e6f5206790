"""``python -m bench queue``: the reliable queue measured on this machine, in one run.

Beside Conveyor's own figures it prints the physical limit (redis-benchmark LPUSH/RPOP on the
same Redis server, plain and pipelined) and the same no-op workload through peer job queues.
Every system runs as one producer process and one worker process against one fresh Redis, and
is timed the same way: from the producer's first enqueue to the worker's N-th handler run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from bench.peers_env import Peer, ensure_peer
from conveyor.local_servers import RedisServer, find_binary
from conveyor.tables import render

DRIVER = [sys.executable, "-m", "bench.conveyor_driver"]
PAYLOAD_BYTES = 200


@dataclass
class Run:
    """One producer/worker measurement."""

    label: str
    n: int
    start: float = 0.0
    produced: float = 0.0
    done: float = 0.0
    lines: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.n / (self.done - self.start)

    @property
    def produce_rate(self) -> float:
        return self.n / (self.produced - self.start)


async def run(args: argparse.Namespace) -> int:
    server: RedisServer | None = None
    if args.redis_url:
        url = args.redis_url
    else:
        binary = find_binary("redis-server")
        if binary is None:
            print("bench: redis-server is missing: run hack/bootstrap.sh", file=sys.stderr)
            return 3
        server = RedisServer(binary, Path(tempfile.mkdtemp(prefix="conveyor-bench-"))).start()
        url = server.url
    try:
        return _bench(args, url)  # blocking on purpose: the CLI has nothing else to do
    finally:
        if server is not None:
            server.stop()


def _bench(args: argparse.Namespace, url: str) -> int:
    r = redis.Redis.from_url(url)
    info = r.info("server")
    n = args.messages
    _note(f"Redis {info['redis_version']} at {url}; {n:,} jobs per throughput run")

    limits = redis_benchmark(url, n=max(n, 100_000))
    one = _measure(
        r,
        "Conveyor, per-message enqueue(), worker concurrency 64",
        n,
        [*DRIVER, "worker", "--mode", "job", "--concurrency", "64"],
        [*DRIVER, "produce", "--mode", "job"],
        url,
    )
    batch = _measure(
        r,
        "Conveyor, enqueue_many(1000), batch handler of 500",
        n,
        [*DRIVER, "worker", "--mode", "batch", "--concurrency", "4"],
        [*DRIVER, "produce", "--mode", "batch"],
        url,
    )
    steady = _measure(
        r,
        "latency",
        5000,
        [*DRIVER, "worker", "--mode", "latency", "--concurrency", "16"],
        [*DRIVER, "produce", "--mode", "paced", "--rate", "1000"],
        url,
    )
    latencies = sorted(_floats(steady, "latencies"))
    jump_ms = _priority_jump(r, url, backlog=100_000)
    memory = _memory_per_job(r, url, count=100_000)

    peers: list[tuple[Peer, Run | str]] = []
    for name in [p for p in args.peers.split(",") if p]:
        try:
            peer = ensure_peer(name)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            _note(f"{name}: not measured ({exc})")
            continue
        try:
            peers.append(
                (
                    peer,
                    _measure(
                        r, name, n, [*peer.command, "worker"], [*peer.command, "produce"], url
                    ),
                )
            )
        except RuntimeError as exc:
            peers.append((peer, str(exc)))

    e2e_limit = 1 / (1 / limits["LPUSH -P 32"] + 1 / limits["RPOP -P 32"])
    plain_limit = 1 / (1 / limits["LPUSH"] + 1 / limits["RPOP"])
    print()
    print(
        f"Queue benchmark: {n:,} no-op jobs, Redis {info['redis_version']}, "
        f"one producer and one worker process per system, {_cores()} cores"
    )
    print()
    print(
        render(
            ("physical limit (redis-benchmark, 50 clients)", "ops/s"),
            [(k, f"{v:,.0f}") for k, v in limits.items()]
            + [
                ("one LPUSH + one RPOP per job, plain", f"{plain_limit:,.0f}"),
                ("one LPUSH + one RPOP per job, pipelined", f"{e2e_limit:,.0f}"),
            ],
            figures=True,
        )
    )
    print()

    def row(label: str, result: Run) -> tuple[str, ...]:
        return (
            label,
            f"{result.rate:,.0f}",
            f"{result.produce_rate:,.0f}",
            _ratio(result.rate, one.rate),
            _ratio(result.rate, plain_limit),
            _ratio(result.rate, e2e_limit),
        )

    rows = [row(one.label, one), row(batch.label, batch)]
    failures = []
    for peer, result in peers:
        label = f"{peer.name} {peer.version} ({_PEER_SETTINGS[peer.name]})"
        if isinstance(result, str):
            rows.append((label, "failed", "", "", "", ""))
            failures.append(f"{peer.name}: {result}")
        else:
            rows.append(row(label, result))
    print(
        render(
            (
                "end to end: enqueue -> no-op handler",
                "jobs/s",
                "enqueue/s",
                "x Conveyor",
                "x plain",
                "x pipelined",
            ),
            rows,
            figures=True,
        )
    )
    for failure in failures:
        print(f"  {failure}")
    print()
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    print(
        render(
            ("Conveyor latency and cost", "value", "target"),
            [
                (
                    "enqueue -> handler start at a steady 1,000 jobs/s, p50",
                    f"{p50 * 1000:.2f} ms",
                    "",
                ),
                (
                    "enqueue -> handler start at a steady 1,000 jobs/s, p99",
                    f"{p99 * 1000:.2f} ms",
                    "",
                ),
                (
                    "priority-10 job starts, behind 100,000 priority-1",
                    f"{jump_ms:.1f} ms",
                    "< 20 ms",
                ),
                (
                    f"Redis memory per pending {PAYLOAD_BYTES}-byte job, total",
                    f"{memory:.0f} B",
                    "",
                ),
                ("  of which beyond the payload", f"{memory - PAYLOAD_BYTES:.0f} B", "<= 300 B"),
            ],
            figures=True,
        )
    )
    return 0


_PEER_SETTINGS = {
    "rq": "SimpleWorker, 8 producer threads",
    "arq": "max_jobs 64, 64 producer tasks",
    "dramatiq": "1 process x 8 threads, 8 producer threads",
    "celery": "threads pool x 8, prefetch 16, 8 producer threads",
    "bullmq": "Node, concurrency 64, 64 producer tasks",
}


def redis_benchmark(url: str, *, n: int) -> dict[str, float]:
    """LPUSH and RPOP ops/s, plain and pipelined, from redis-benchmark on the same server."""
    binary = find_binary("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is missing: run hack/bootstrap.sh (redis-tools)")
    port = str(redis.Redis.from_url(url).connection_pool.connection_kwargs["port"])
    results: dict[str, float] = {}
    for pipeline in (1, 32):
        _note(f"redis-benchmark LPUSH,RPOP -P {pipeline}")
        out = subprocess.run(
            [
                binary,
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-n",
                str(n),
                "-c",
                "50",
                "-P",
                str(pipeline),
                "-t",
                "lpush,rpop",
                "--csv",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines()[1:]:
            cells = [c.strip('"') for c in line.split(",")]
            name = cells[0].split()[0]
            results[name if pipeline == 1 else f"{name} -P {pipeline}"] = float(cells[1])
    return results


def _measure(
    r: redis.Redis, label: str, n: int, worker_cmd: list[str], producer_cmd: list[str], url: str
) -> Run:
    r.flushall()
    _note(f"measuring {label}")
    common = ["--url", url, "--n", str(n)]
    result = Run(label, n)
    worker = subprocess.Popen([*worker_cmd, *common], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        _expect(worker.stdout, "ready", 120, label)
        producer = subprocess.run(
            [*producer_cmd, *common], capture_output=True, text=True, timeout=600
        )
        if producer.returncode != 0:
            raise RuntimeError(f"{label} producer failed: {producer.stderr[-500:]}")
        for line in producer.stdout.splitlines():
            word, _, value = line.partition(" ")
            if word == "start":
                result.start = float(value)
            elif word == "end":
                result.produced = float(value)
        result.done = float(_expect(worker.stdout, "done", 600, label))
        result.lines = worker.stdout.readlines() if label == "latency" else []
    finally:
        if worker.poll() is None:
            worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    return result


def _expect(stream: IO[str], word: str, timeout: float, label: str) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"{label}: worker exited before printing {word!r}")
        head, _, rest = line.strip().partition(" ")
        if head == word:
            return rest
    raise RuntimeError(f"{label}: no {word!r} within {timeout}s")


def _floats(run_: Run, word: str) -> list[float]:
    for line in run_.lines:
        head, _, rest = line.strip().partition(" ")
        if head == word:
            return [float(x) for x in json.loads(rest)]
    return []


def _priority_jump(r: redis.Redis, url: str, *, backlog: int) -> float:
    """Milliseconds from enqueueing one priority-10 job to its handler starting, while a worker
    chews through a backlog of priority-1 jobs."""
    r.flushall()
    _note(f"priority jump behind {backlog:,} pending jobs")
    common = ["--url", url]
    subprocess.run(
        [*DRIVER, "produce", "--mode", "batch", "--priority", "1", "--n", str(backlog), *common],
        check=True,
        capture_output=True,
        timeout=600,
    )
    worker = subprocess.Popen(
        [*DRIVER, "worker", "--mode", "urgent", "--concurrency", "8", "--n", "1", *common],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        _expect(worker.stdout, "working", 120, "priority jump")
        time.sleep(0.5)  # let the worker settle into the backlog
        subprocess.run(
            [*DRIVER, "produce", "--mode", "urgent", "--n", "1", *common],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _expect(worker.stdout, "done", 60, "priority jump")
        [seconds] = json.loads(_expect(worker.stdout, "latencies", 10, "priority jump"))
        return float(seconds) * 1000
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def _memory_per_job(r: redis.Redis, url: str, *, count: int) -> float:
    """Bytes of Redis memory per pending job with a 200-byte JSON payload."""
    r.flushall()
    _note(f"memory of {count:,} pending {PAYLOAD_BYTES}-byte jobs")
    before = int(r.info("memory")["used_memory"])
    subprocess.run(
        [
            *DRIVER,
            "produce",
            "--mode",
            "batch",
            "--n",
            str(count),
            "--url",
            url,
            "--payload",
            str(PAYLOAD_BYTES - 8),
        ],  # {"v":"..."} adds 8 bytes
        check=True,
        capture_output=True,
        timeout=600,
    )
    after = int(r.info("memory")["used_memory"])
    return (after - before) / count


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]
        if len(values) > 1
        else values[0]
    )


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}"


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def _note(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
