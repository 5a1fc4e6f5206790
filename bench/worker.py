"""``python -m bench worker``: CPU per realtime job of the worker, against real Redis and InfluxDB.

Two figures, each from the CPU time of this process and of the servers (``/proc``) over a run
of N jobs shaped as ``python -m bench pipeline`` sends them (20 machines, one value each):

- *processor*: the realtime processor alone on decoded jobs, in batches of the worker's size:
  InfluxDB lines and write, latest-value cache, live stream;
- *worker*: a backlog of N queued jobs drained by the queue's worker as ``conveyor work``
  runs it (claim, decode, the processor, ack), timed from its start to the last ack.

``--profile FILE`` writes a cProfile of the worker run (read it with ``python -m pstats``) and
prints its top functions. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from conveyor.local_servers import InfluxServer, RedisServer, find_binary, influxd_binary
from conveyor.tables import render

MACHINES = 20
BASE_TS = 1_750_000_000_000
QUEUE = "mqtt_realtime"


def run(args: argparse.Namespace) -> int:
    redis_bin, influxd = find_binary("redis-server"), influxd_binary()
    if redis_bin is None or influxd is None:
        print(
            "bench: redis-server and influxd are needed: run hack/bootstrap.sh",
            file=sys.stderr,
        )
        return 3
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-worker-"))
    rs = RedisServer(redis_bin, work / "redis").start()
    influx = InfluxServer(influxd, work / "influx").start()
    try:
        rows = asyncio.run(_bench(args, rs, influx))
    finally:
        influx.stop()
        rs.stop()
    print()
    print(
        f"Worker benchmark: {args.messages:,} realtime jobs ({MACHINES} machines, one value "
        f"each), batches of {args.batch_size}, concurrency {args.concurrency}; CPU µs per job"
    )
    print(
        render(
            ["run", "jobs/s", "worker µs/job", "redis µs/job", "influxd µs/job"],
            [list(row) for row in rows],
        )
    )
    return 0


def _messages(n: int, offset: int) -> list[dict[str, Any]]:
    from conveyor_ingestor import parse_message

    received = int(time.time() * 1000)
    out = []
    for i in range(offset, offset + n):
        machine = f"press-{i % MACHINES}"
        doc = {"timestamp": BASE_TS + i, "temp": float(i)}
        message = parse_message(
            "realtime",
            machine=machine,
            topic=f"{machine}/realtime",
            payload=json.dumps(doc).encode(),
            received_at=received,
        )
        out.append(dict(message))
    return out


def _cpu(pid: int | None = None) -> float:
    """CPU seconds (user and system) of a process (this one if None)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Meter:
    def __init__(self, rs: RedisServer, influx: InfluxServer) -> None:
        assert rs.proc is not None
        assert influx.proc is not None
        self.pids = (None, rs.proc.pid, influx.proc.pid)

    def __enter__(self) -> _Meter:
        self.started = time.perf_counter()
        self.before = [_cpu(pid) for pid in self.pids]
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.used = [_cpu(pid) - b for pid, b in zip(self.pids, self.before, strict=True)]

    def row(self, name: str, n: int) -> tuple[str, ...]:
        return (
            name,
            f"{n / self.seconds:,.0f}",
            *(f"{used / n * 1e6:.0f}" for used in self.used),
        )


async def _bench(
    args: argparse.Namespace, rs: RedisServer, influx: InfluxServer
) -> list[tuple[str, ...]]:
    from conveyor_plant import PlantState
    from conveyor_worker import (
        Context,
        InfluxConfig,
        InfluxSink,
        SinkSettings,
        WorkerMetrics,
        build_worker,
    )
    from conveyor_worker.processors import process_realtime

    from reliable_queue import Job, QueueClient

    n, size = args.messages, args.batch_size
    client = QueueClient.from_url(rs.url)
    sink = InfluxSink(InfluxConfig(url=influx.url, bucket=influx.bucket))
    plant = PlantState.from_url(rs.url)
    ctx = Context(
        client=client, plant=plant, influx=sink, settings=SinkSettings(), metrics=WorkerMetrics()
    )
    rows = []
    try:
        jobs = [
            Job(id=f"j{i}", queue=QUEUE, data=d, priority=5, attempt=1, enqueued_at=0, token="")
            for i, d in enumerate(_messages(n, 0))
        ]
        await process_realtime(ctx, jobs[:size])  # warm: connections, caches, script
        with _Meter(rs, influx) as meter:
            for at in range(0, n, size):
                failed = await process_realtime(ctx, jobs[at : at + size])
                assert not failed, failed
        rows.append(meter.row("processor (decoded jobs)", n))

        await client.enqueue_many(QUEUE, _messages(n, n))
        worker = build_worker(
            client=client,
            queue=QUEUE,
            ctx=ctx,
            concurrency=args.concurrency,
            batch_size=size,
            drain_timeout=10,
        )
        assert worker is not None
        profile = cProfile.Profile() if args.profile else None
        with _Meter(rs, influx) as meter:
            if profile is not None:
                profile.enable()
            await worker.start()
            await _drained(client, n)
            if profile is not None:
                profile.disable()
        await worker.stop()
        rows.append(meter.row("worker (claim, decode, process, ack)", n))
        if profile is not None:
            _report(profile, args.profile)
    finally:
        await ctx.close()
        await client.close()
        await plant.close()
    return rows


async def _drained(client: Any, n: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while (stats := await client.queue_stats(QUEUE)).completed < n:
        if stats.failed or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not finish: {stats}")
        await asyncio.sleep(0.05)


def _report(profile: cProfile.Profile, path: str) -> None:
    profile.dump_stats(path)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue())
    print(f"profile written to {path}")
