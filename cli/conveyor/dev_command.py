"""``conveyor dev``: the pipeline on this machine, without a cluster.

Starts a Redis server (AOF on, data kept in ``--data-dir``) unless ``REDIS_URL`` points at one,
a worker for each default queue with its default concurrency, and prints a one-screen summary
of the queues every few seconds. Ctrl-C stops everything and leaves no process behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from pathlib import Path

from conveyor.defaults import DEFAULT_QUEUES
from conveyor.handlers import log_job
from conveyor.local_servers import RedisServer, find_binary
from conveyor.settings import RedisSettings, SettingsError, load
from conveyor.tables import render
from reliable_queue import QueueClient


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "conveyor" / "dev"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dev", help="run the pipeline locally: Redis and a worker per default queue")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help=f"where the local Redis keeps its data (default {default_data_dir()})",
    )
    p.add_argument("--summary-every", type=float, default=5.0, help="seconds between summaries")
    p.set_defaults(run=cmd_dev)


async def cmd_dev(args: argparse.Namespace) -> int:
    server: RedisServer | None = None
    if os.environ.get("REDIS_URL") or os.environ.get("REDIS_HOST"):
        settings = load(RedisSettings)
        url = settings.effective_url()
    else:
        binary = find_binary("redis-server")
        if binary is None:
            raise SettingsError(
                "redis-server is not installed: run hack/bootstrap.sh, or set REDIS_URL"
            )
        server = RedisServer(binary, args.data_dir / "redis", appendonly=True).start()
        url = server.url
    try:
        async with QueueClient.from_url(url) as client:
            await client.ping()
            stops = [
                await client.start_worker(q.name, log_job, concurrency=q.concurrency)
                for q in DEFAULT_QUEUES
            ]
            print(f"Conveyor dev: Redis at {url}")
            print(f'  try:  REDIS_URL={url} conveyor enqueue alerts \'{{"machine": "m1"}}\'')
            print("  stop: Ctrl-C")
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stopping.set)
            while not stopping.is_set():
                await _summary(client)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), args.summary_every)
            for stop in stops:
                await stop()
    finally:
        if server is not None:
            server.stop()
    print("Conveyor dev stopped.")
    return 0


async def _summary(client: QueueClient) -> None:
    stats = await client.stats([q.name for q in DEFAULT_QUEUES])
    rows = [
        (
            name,
            f"{s['pending']:,}",
            f"{s['processing']:,}",
            f"{s['failed']:,}",
            f"{s['completed']:,}",
        )
        for name, s in stats["queues"].items()
    ]
    print(
        render(("QUEUE", "PENDING", "PROCESSING", "DEAD", "COMPLETED"), rows, figures=True),
        flush=True,
    )
