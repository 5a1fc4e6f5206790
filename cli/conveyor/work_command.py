"""``conveyor work --queue Q``: run the queue's processor (or a handler) until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from conveyor_messages import DEFAULT_QUEUES, default_queue
from conveyor_plant import PlantState

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
from reliable_queue.policy import MAX_TIMEOUT_S

log = logging.getLogger(__name__)

INFLUX_QUEUES = tuple(q.name for q in DEFAULT_QUEUES if q.writes_influx)
OTHER_BATCH_SIZE = 200
"""A processor's batch size on a queue that is not a default one (WORKER_BATCH_SIZE unset)."""
PROCESSOR_TIMEOUT_S = 60.0
"""A built-in processor's batch timeout when the queue's policy sets none (at least)."""
INFLUX_WRITES = 6
"""InfluxDB client timeouts a batch's timeout allows at least. A batch's InfluxDB writes (its
write, then the re-writes finding the jobs InfluxDB refuses) end by 80% of the timeout
(conveyor_worker's ISOLATE_SHARE); jobs not settled by then are retried, the rest is left for
Redis."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "work",
        help="process jobs of one queue until stopped (REDIS_*, INFLUX_*, WORKER_*, ALERT_*)",
        description="Runs the queue's processor: "
        f"{', '.join(q.name for q in DEFAULT_QUEUES)} have one; other queues need --handler. "
        "A batch (or a --handler's job) running longer than the queue's timeout (conveyor policy "
        "QUEUE --timeout-s N) is cancelled and fails with reason timeout. Without one, the "
        "processors' default applies: mqtt_* "
        f"{PROCESSOR_TIMEOUT_S:g}s, or {INFLUX_WRITES} x INFLUX_TIMEOUT_S if longer; alerts "
        f"{PROCESSOR_TIMEOUT_S:g}s plus "
        "ALERT_WEBHOOK_TIMEOUT_S per webhook per alert of a batch (WORKER_BATCH_SIZE); --handler: "
        "none. The mqtt_* processors' InfluxDB writes (re-writes finding the jobs InfluxDB "
        "refuses included) end by 80% of the batch's timeout; jobs not settled by then are "
        "retried.",
    )
    p.add_argument("--queue", required=True, help="the queue to work on")
    p.add_argument(
        "--concurrency",
        type=int,
        help="jobs (or batches) at once; default: the queue's default ("
        + ", ".join(f"{q.name} {q.concurrency}" for q in DEFAULT_QUEUES)
        + ", others 1). The queue's policy in Redis overrides it live",
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
    default = default_queue(queue)
    return 1 if default is None else default.concurrency


def processor_timeout(
    queue: str,
    *,
    influx_timeout_s: float,
    batch_size: int,
    webhooks: int,
    webhook_timeout_s: float,
) -> float | None:
    """The built-in processor's default batch timeout, from its sinks' own timeouts; None for a
    queue without one. A backstop for a hang no sink timeout catches: set above the slowest
    batch a working sink allows, so it never cuts a slow but healthy one short."""
    if queue in INFLUX_QUEUES:
        return max(PROCESSOR_TIMEOUT_S, INFLUX_WRITES * influx_timeout_s)
    default = default_queue(queue)
    if default is not None and default.kind == "alert":  # a batch's alerts go one after another
        return min(PROCESSOR_TIMEOUT_S + batch_size * webhooks * webhook_timeout_s, MAX_TIMEOUT_S)
    return None


def default_batch_size(queue: str) -> int:
    """A built-in processor's batch size when ``WORKER_BATCH_SIZE`` is unset: the queue's."""
    default = default_queue(queue)
    return default.batch_size if default is not None else OTHER_BATCH_SIZE


async def cmd_work(args: argparse.Namespace) -> int:
    # Imported here: the InfluxDB and HTTP clients cost every other conveyor command a second.
    from conveyor_worker import (
        Context,
        InfluxConfig,
        InfluxSink,
        SinkSettings,
        WorkerMetrics,
        build_worker,
    )

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
    url, cluster = redis_settings.effective_url(), redis_settings.cluster
    async with (
        QueueClient.from_url(url, cluster=cluster) as client,
        PlantState.from_url(url, cluster=cluster) as plant,
    ):
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
            plant=plant,
            influx=sink,
            settings=SinkSettings(
                cache_ttl_s=sinks.worker_cache_ttl_s,
                machine_ttl_s=sinks.worker_machine_ttl_s,
                alert_suppress_s=sinks.alert_suppress_s,
                alert_history_max=sinks.alert_history_max,
                webhooks=sinks.webhooks(),
                webhook_timeout_s=sinks.alert_webhook_timeout_s,
                spc_window=sinks.worker_spc_window,
                spc_min_points=sinks.worker_spc_min_points,
            ),
            metrics=metrics,
        )
        batch_size = sinks.worker_batch_size or default_batch_size(args.queue)
        worker = build_worker(
            client=client,
            queue=args.queue,
            ctx=ctx,
            concurrency=args.concurrency,
            batch_size=batch_size,
            drain_timeout=args.drain_timeout,
            custom=custom,
        )
        if worker is not None and custom is None:
            worker.default_timeout_s = processor_timeout(
                args.queue,
                influx_timeout_s=influx.timeout_s,
                batch_size=batch_size,
                webhooks=len(ctx.settings.webhooks),
                webhook_timeout_s=ctx.settings.webhook_timeout_s,
            )
            ctx.timed_by = worker  # its timeout, the policy's or this default, bounds the writes
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
