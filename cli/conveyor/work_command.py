"""``conveyor work --queue Q``: run the queue's processor (or a handler) until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from conveyor_worker import (
    Context,
    InfluxConfig,
    InfluxSink,
    SinkSettings,
    WorkerMetrics,
    build_worker,
)

from conveyor.defaults import DEFAULT_QUEUES
from conveyor.handlers import load_handler, log_job
from conveyor.probes import ProbeServer
from conveyor.settings import (
    InfluxSettings,
    ProbeSettings,
    RedisSettings,
    WorkerSettings,
    load,
)
from conveyor.startup import wait_for_redis
from reliable_queue import QueueClient, UsageError

log = logging.getLogger(__name__)

INFLUX_QUEUES = ("mqtt_realtime", "mqtt_spc", "mqtt_tech")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "work",
        help="process jobs of one queue until stopped (REDIS_*, INFLUX_*, WORKER_*, ALERT_*)",
        description="Runs the queue's processor: mqtt_realtime, mqtt_spc, mqtt_tech and alerts "
        "have one; other queues need --handler.",
    )
    p.add_argument("--queue", required=True, help="the queue to work on")
    p.add_argument(
        "--concurrency",
        type=int,
        help="jobs (or batches) at once; default: the queue's default (alerts 1, mqtt_realtime 3, "
        "mqtt_spc 2, mqtt_tech 1, others 1). The queue's policy in Redis overrides it live",
    )
    p.add_argument("--handler", help="async function module:function taking one job")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=20.0,
        help="seconds to let running jobs finish on SIGTERM (default 20; keep it below the "
        "pod's terminationGracePeriodSeconds)",
    )
    p.set_defaults(run=cmd_work)


def default_concurrency(queue: str) -> int:
    return next((q.concurrency for q in DEFAULT_QUEUES if q.name == queue), 1)


async def cmd_work(args: argparse.Namespace) -> int:
    custom = load_handler(args.handler) if args.handler else None
    if args.concurrency is None:
        args.concurrency = default_concurrency(args.queue)
    elif args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    redis_settings = load(RedisSettings)
    influx = load(InfluxSettings)
    sinks = load(WorkerSettings)
    probes_at = load(ProbeSettings)
    metrics = WorkerMetrics()
    async with QueueClient.from_url(
        redis_settings.effective_url(), cluster=redis_settings.cluster
    ) as client:
        await wait_for_redis(client, redis_settings.startup_wait_s)
        sink = None
        if influx.url:
            sink = InfluxSink(
                InfluxConfig(
                    url=influx.url,
                    bucket=influx.bucket,
                    org=influx.org,
                    token=influx.token.get_secret_value(),
                    timeout_s=influx.timeout_s,
                )
            )
        elif custom is None and args.queue in INFLUX_QUEUES:
            log.warning(
                "INFLUX_URL is not set: %s points are NOT written to InfluxDB (cache, live stream "
                "and alerts still work). Set INFLUX_URL to enable the InfluxDB sink.",
                args.queue,
            )
        ctx = Context(
            client=client,
            influx=sink,
            settings=SinkSettings(
                cache_ttl_s=sinks.worker_cache_ttl_s,
                alert_suppress_s=sinks.alert_suppress_s,
                alert_history_max=sinks.alert_history_max,
                webhooks=sinks.webhooks(),
                spc_window=sinks.worker_spc_window,
                spc_min_points=sinks.worker_spc_min_points,
            ),
            metrics=metrics,
        )
        worker = build_worker(
            client=client,
            queue=args.queue,
            ctx=ctx,
            concurrency=args.concurrency,
            batch_size=sinks.worker_batch_size,
            drain_timeout=args.drain_timeout,
            custom=custom,
        )
        if worker is None:
            log.warning("queue %s has no processor and no --handler: jobs are logged", args.queue)
            worker = client.worker(
                args.queue, log_job, concurrency=args.concurrency, drain_timeout=args.drain_timeout
            )
            metrics.watch(worker)
        probes = ProbeServer(registry=metrics.registry, ready=lambda: {"worker": worker.running})
        await probes.start_or_warn(probes_at.host, probes_at.port)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await worker.start()
        try:
            await stopping.wait()
            log.info("stopping: draining for up to %.0fs", args.drain_timeout)
            await worker.stop()
        finally:
            await probes.stop()
            await ctx.close()
    return 0
