"""The processors of the default queues. Each takes a batch of jobs and returns the jobs that
failed on their own (a malformed job); a sink that fails raises, and the whole batch is retried.

A job is acknowledged only after every sink it needs took it. Every write is idempotent under
retries: InfluxDB points carry the message's own time, cache writes set the same values again,
and derived jobs (SPC alerts) have ids derived from their cause.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from redis import exceptions as redis_errors

from conveyor_worker.errors import SinkUnavailable, WebhookFailed
from conveyor_worker.influx import InfluxSink
from conveyor_worker.metrics import WorkerMetrics
from conveyor_worker.points import point_time, realtime_lines, spc_line, tech_line
from conveyor_worker.spc import RULES, Limits, check_rules, individual_limits, subgroup_limits
from reliable_queue import Job, NewJob, PermanentError, QueueClient
from reliable_queue.keys import (
    ALERT_HISTORY,
    alert_seen,
    latest_times,
    latest_values,
    live_channel,
    spc_window,
    tech_config,
)

log = logging.getLogger(__name__)

Failures = dict[str, Exception]
Processor = Callable[[Sequence[Job]], Awaitable[Mapping[str, Exception] | None]]


@dataclass(frozen=True)
class SinkSettings:
    cache_ttl_s: int = 86_400
    alert_suppress_s: float = 300.0
    alert_history_max: int = 10_000
    webhooks: tuple[str, ...] = ()
    webhook_timeout_s: float = 5.0
    spc_window: int = 100
    spc_min_points: int = 20
    alerts_queue: str = "alerts"
    alert_priority: int = 10


class Context:
    """What processors share: the queue client (and its Redis), the sinks, settings, metrics."""

    def __init__(
        self,
        *,
        client: QueueClient,
        influx: InfluxSink | None,
        settings: SinkSettings,
        metrics: WorkerMetrics,
    ) -> None:
        self.client = client
        self.redis = client.redis
        self.influx = influx
        self.settings = settings
        self.metrics = metrics
        self._http: aiohttp.ClientSession | None = None

    async def write_points(self, lines: Sequence[str]) -> None:
        if self.influx is None or not lines:
            return
        started = time.perf_counter()
        await self.influx.write(lines)
        self.metrics.sink_seconds.labels("influxdb").observe(time.perf_counter() - started)

    async def redis_pipeline(
        self, build: Callable[[Any], None], *, transaction: bool = False
    ) -> list[Any]:
        started = time.perf_counter()
        try:
            pipe = self.redis.pipeline(transaction=transaction)
            build(pipe)
            result: list[Any] = await pipe.execute()
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise SinkUnavailable(f"Redis did not take the write: {exc}") from exc
        self.metrics.sink_seconds.labels("redis").observe(time.perf_counter() - started)
        return result

    async def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s)
            self._http = aiohttp.ClientSession(timeout=timeout)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self.influx is not None:
            await self.influx.close()


def processor_for(queue: str, ctx: Context) -> Processor | None:
    """The processor of a default queue, or None."""
    table: dict[str, Callable[[Context, Sequence[Job]], Awaitable[Failures]]] = {
        "mqtt_realtime": process_realtime,
        "mqtt_spc": process_spc,
        "mqtt_tech": process_tech,
        "alerts": process_alerts,
    }
    fn = table.get(queue)
    if fn is None:
        return None

    async def run(jobs: Sequence[Job]) -> Failures:
        return await fn(ctx, jobs)

    return run


# --- realtime ---------------------------------------------------------------------------------

# The latest-value cache keeps, per signal, the value with the newest timestamp: jobs of one
# machine are processed in parallel and retried, so a later write may carry an older value.
# KEYS: latest_values, latest_times; ARGV: ts (ms), ttl (s), then signal, JSON value pairs.
KEEP_NEWEST = """
local ts = tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  local seen = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '-1')
  if ts >= seen then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
  end
end
if ts >= tonumber(redis.call('HGET', KEYS[1], '_ts') or '-1') then
  redis.call('HSET', KEYS[1], '_ts', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
"""


async def process_realtime(ctx: Context, jobs: Sequence[Job]) -> Failures:
    failed: Failures = {}
    lines: list[str] = []
    good: list[Job] = []
    for job in jobs:
        try:
            lines += realtime_lines(job.data)
            good.append(job)
        except (KeyError, TypeError, AttributeError) as exc:
            failed[job.id] = PermanentError(f"not a realtime message ({exc!r}): see dead letters")
    await ctx.write_points(lines)

    def build(pipe: Any) -> None:
        for job in good:
            msg = job.data
            machine = msg["machine"]
            values: dict[str, Any] = {}
            ts = msg["received_at"]
            for sample in msg["samples"]:
                ts = point_time(msg, sample)
                fields = [x for k, v in sample["values"].items() for x in (k, json.dumps(v))]
                keys = (latest_values(machine), latest_times(machine))
                pipe.eval(KEEP_NEWEST, 2, *keys, ts, ctx.settings.cache_ttl_s, *fields)
                values.update(sample["values"])
            event = {"kind": "realtime", "machine": machine, "ts": ts, "values": values}
            pipe.publish(live_channel(machine), json.dumps(event))

    if good:
        await ctx.redis_pipeline(build)
    return failed


# --- SPC --------------------------------------------------------------------------------------


async def process_spc(ctx: Context, jobs: Sequence[Job]) -> Failures:
    failed: Failures = {}
    lines: list[str] = []
    alerts: list[NewJob] = []
    for job in jobs:
        msg = job.data
        try:
            samples = msg["samples"]
            machine = msg["machine"]
        except (KeyError, TypeError) as exc:
            failed[job.id] = PermanentError(f"not an SPC message ({exc!r})")
            continue
        for index, sample in enumerate(samples):
            ts = point_time(msg, sample)
            point_id = f"{job.id}:{index}"
            history = await _spc_history(
                ctx, machine, sample["characteristic"], point_id, sample["values"]
            )
            limits = _limits(history[:-1], ctx.settings.spc_min_points)
            lines.append(
                spc_line(
                    machine=machine,
                    characteristic=sample["characteristic"],
                    ts_ms=ts,
                    values=sample["values"],
                    limits=limits.as_dict() if limits else None,
                )
            )
            if limits is None:
                continue
            points = [fmean(v) for v in history]
            for violation in check_rules(points, limits):
                alerts.append(
                    _spc_alert(msg, sample, ts, violation.rule, violation.points, limits, point_id)
                )
    await ctx.write_points(lines)
    if alerts:
        await ctx.client.enqueue_many(
            ctx.settings.alerts_queue, alerts, priority=ctx.settings.alert_priority
        )
        ctx.metrics.spc_violations.inc(len(alerts))
    return failed


async def _spc_history(
    ctx: Context, machine: str, characteristic: str, point_id: str, values: list[float]
) -> list[list[float]]:
    """The window, oldest first, ending with this point; a retried point is not added twice."""
    key = spc_window(machine, characteristic)
    [raw] = await ctx.redis_pipeline(lambda p: p.lrange(key, 0, -1))
    entries = [json.loads(x) for x in raw]
    if not any(e["id"] == point_id for e in entries):
        entry = json.dumps({"id": point_id, "v": values})
        size = ctx.settings.spc_window

        def push(p: Any) -> None:
            p.lpush(key, entry)
            p.ltrim(key, 0, size - 1)
            p.expire(key, 30 * 86_400)

        await ctx.redis_pipeline(push, transaction=True)
        entries = [{"id": point_id, "v": values}, *entries][:size]
    else:  # a retry: judge the point against what came before it, as the first time
        at = next(i for i, e in enumerate(entries) if e["id"] == point_id)
        entries = entries[at:]
    return [e["v"] for e in reversed(entries)]


def _limits(previous: list[list[float]], min_points: int) -> Limits | None:
    if len(previous) < min_points:
        return None
    if all(len(v) == 1 for v in previous):
        return individual_limits([v[0] for v in previous])
    return subgroup_limits(previous)


def _spc_alert(
    msg: Mapping[str, Any],
    sample: Mapping[str, Any],
    ts: int,
    rule: int,
    points: tuple[float, ...],
    limits: Limits,
    point_id: str,
) -> NewJob:
    name = sample["characteristic"]
    data = {
        "kind": "alert",
        "machine": msg["machine"],
        "topic": msg["topic"],
        "received_at": msg["received_at"],
        "ts": ts,
        "type": f"spc_rule_{rule}:{name}",
        "severity": "critical" if rule == 1 else "warning",
        "message": f"{name}: {RULES[rule]} (last {points[-1]:.6g}; CL {limits.centre:.6g}, "
        f"UCL {limits.ucl:.6g}, LCL {limits.lcl:.6g})",
        "details": {
            "rule": rule,
            "characteristic": name,
            "values": list(points),
            "limits": limits.as_dict(),
        },
    }
    return NewJob(data, job_id=f"spc:{point_id}:{rule}")


# --- tech -------------------------------------------------------------------------------------


async def process_tech(ctx: Context, jobs: Sequence[Job]) -> Failures:
    failed: Failures = {}
    lines: list[str] = []
    changes: list[tuple[str, dict[str, Any], list[str]]] = []
    for job in jobs:
        msg = job.data
        try:
            machine, config = msg["machine"], msg["config"]
        except (KeyError, TypeError) as exc:
            failed[job.id] = PermanentError(f"not a tech message ({exc!r})")
            continue
        key = tech_config(machine)

        def read(p: Any, k: str = key) -> None:
            p.get(k)

        [raw] = await ctx.redis_pipeline(read)
        current: dict[str, Any] = json.loads(raw) if raw else {"version": 0, "config": None}
        if current["config"] == config:
            continue  # unchanged (or this job's retry after its change was stored)
        ts = point_time(msg)
        version = int(current["version"]) + 1
        lines.append(tech_line(machine=machine, ts_ms=ts, config=config, version=version))
        changed = sorted(
            set(config) ^ set(current["config"] or {})
            | {k for k in config if (current["config"] or {}).get(k, object()) != config[k]}
        )
        record = {"version": version, "ts": ts, "config": config}
        changes.append((machine, record, changed))
    await ctx.write_points(lines)

    def build(pipe: Any) -> None:
        for machine, record, changed in changes:
            pipe.set(tech_config(machine), json.dumps(record))
            event = {"kind": "tech", "machine": machine, "changed": changed, **record}
            pipe.publish(live_channel(machine), json.dumps(event))

    if changes:
        await ctx.redis_pipeline(build)
    return failed


# --- alerts -----------------------------------------------------------------------------------


async def process_alerts(ctx: Context, jobs: Sequence[Job]) -> Failures:
    failed: Failures = {}
    for job in jobs:
        alert = job.data
        try:
            machine, kind = alert["machine"], alert["type"]
        except (KeyError, TypeError) as exc:
            failed[job.id] = PermanentError(f"not an alert ({exc!r})")
            continue
        key = alert_seen(machine, kind)

        def claim(p: Any, k: str = key, j: str = job.id) -> None:
            p.set(k, j, nx=True, ex=max(1, int(ctx.settings.alert_suppress_s)), get=True)

        [previous] = await ctx.redis_pipeline(claim)
        if previous is not None and previous.decode() != job.id:
            ctx.metrics.alerts_suppressed.inc()
            continue  # the same alert was raised within the suppression window
        try:
            await _deliver(ctx, job)
        except WebhookFailed as exc:
            failed[job.id] = exc
            continue
        record = json.dumps({"id": job.id, **alert})

        def build(pipe: Any, m: str = machine, r: str = record) -> None:
            pipe.xadd(
                ALERT_HISTORY, {"alert": r}, maxlen=ctx.settings.alert_history_max, approximate=True
            )
            pipe.publish(live_channel(m), r)

        await ctx.redis_pipeline(build, transaction=True)
        ctx.metrics.alerts_delivered.inc()
    return failed


def _shown(url: str) -> str:
    """A webhook's URL as errors (and so dead letters and logs) show it: scheme and host only.
    Chat webhooks carry their secret in the path or the query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/..."


async def _deliver(ctx: Context, job: Job) -> None:
    if not ctx.settings.webhooks:
        return
    session = await ctx.http()
    body = {"id": job.id, "attempt": job.attempt, "alert": job.data}
    for url in ctx.settings.webhooks:
        started = time.perf_counter()
        shown = _shown(url)
        try:
            async with session.post(url, json=body) as resp:
                if resp.status >= 300:
                    raise WebhookFailed(
                        f"webhook {shown} answered {resp.status}: {(await resp.text())[:200]}"
                    )
        except aiohttp.ClientError as exc:
            # aiohttp's messages may quote the whole URL.
            raise WebhookFailed(f"webhook {shown} failed: {str(exc).replace(url, shown)}") from exc
        except TimeoutError as exc:
            raise WebhookFailed(
                f"webhook {shown} did not answer within {ctx.settings.webhook_timeout_s}s"
            ) from exc
        finally:
            ctx.metrics.sink_seconds.labels("webhook").observe(time.perf_counter() - started)
