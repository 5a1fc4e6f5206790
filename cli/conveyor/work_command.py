"""``conveyor work --queue Q``: run a worker until SIGTERM or Ctrl-C, then drain."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from conveyor.handlers import load_handler, log_job
from conveyor.settings import RedisSettings, load
from reliable_queue import QueueClient

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("work", help="process jobs of one queue until stopped")
    p.add_argument("--queue", required=True, help="the queue to work on")
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="jobs at once (default 1); the queue's policy in Redis overrides it live",
    )
    p.add_argument("--handler", help="async function module:function taking the job (default: log)")
    p.add_argument(
        "--batch-size", type=int, help="hand the handler lists of up to N jobs instead of one"
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=20.0,
        help="seconds to let running jobs finish on SIGTERM (default 20; keep it below the "
        "pod's terminationGracePeriodSeconds)",
    )
    p.set_defaults(run=cmd_work)


async def cmd_work(args: argparse.Namespace) -> int:
    handler = load_handler(args.handler) if args.handler else log_job
    settings = load(RedisSettings)
    async with QueueClient.from_url(settings.effective_url(), cluster=settings.cluster) as client:
        await client.ping()
        worker = client.worker(
            args.queue,
            handler,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            drain_timeout=args.drain_timeout,
        )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await worker.start()
        await stopping.wait()
        log.info("stopping: draining for up to %.0fs", args.drain_timeout)
        await worker.stop()
    return 0
