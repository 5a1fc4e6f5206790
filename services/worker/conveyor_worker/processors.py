"""The processors of the default queues. Each takes a batch of jobs and returns the jobs that
failed on their own; a sink that is away raises :class:`~conveyor_worker.SinkUnavailable`, and
the whole batch is postponed, its jobs' attempts kept (the worker pauses: the outage would fail
the next batch too), for as long as the queue's ``outage_max_s`` after its first postponement.

A job fails on its own when it is malformed, when its points cannot be built (a value line
protocol cannot carry), or when InfluxDB refuses its points as bad data (``isolating.py``
finds which jobs of a refused batch carry them): it goes to dead letters with the reason, once
(the queue's worker logs it), and costs no other job anything. The Redis side effects (cache,
live stream, SPC alerts, tech history) follow only for the jobs whose points were written.

Finding the refused jobs of a batch takes extra writes, so it has a deadline: ``ISOLATE_SHARE``
of the batch's timeout after the batch started. Jobs still unresolved then (neither written nor
refused alone) fail with :class:`~reliable_queue.Retry` and are retried per the queue's policy,
as are jobs InfluxDB refuses at a capacity limit (they would add series it has no room for);
jobs written are acknowledged and jobs refused alone dead-lettered as usual.

A job is acknowledged only after every sink it needs took it. Every write is idempotent under
retries: InfluxDB points carry the message's own time, cache writes set the same values again,
and derived jobs (SPC alerts) have ids derived from their cause.

Every per-machine key the processors write expires (``machine_ttl_s``, the latest-value cache
``cache_ttl_s``, alert suppression ``alert_suppress_s``), and every write refreshes it: the
state of a machine that stopped sending goes, that of one still sending stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from conveyor_messages import Kind, default_queue, queue_for_kind
from conveyor_messages.contract import MAX_UNIT_CHARS, AlertMessage, RealtimeMessage, SpcMessage
from conveyor_plant import PlantState
from conveyor_plant.keys import (
    ALERT_HISTORY,
    LATEST_OFFLINE_FIELD,
    LATEST_ONLINE_FIELD,
    OFFLINE_ALERT,
    alert_seen,
    latest_times,
    latest_units,
    latest_values,
    live_channel,
    spc_window,
    tech_config,
)
from redis import exceptions as redis_errors

from conveyor_worker.errors import SinkUnavailable, WebhookFailed
from conveyor_worker.influx import InfluxSink
from conveyor_worker.isolating import PointGroup, write_isolating
from conveyor_worker.metrics import WorkerMetrics
from conveyor_worker.points import (
    alert_line,
    point_time,
    realtime_lines,
    spc_line,
    tech_line,
)
from conveyor_worker.spc import RULES, Limits, check_rules, individual_limits, subgroup_limits
from reliable_queue import Job, NewJob, PermanentError, QueueClient, QueueUnavailable, Retry

log = logging.getLogger(__name__)

Failures = dict[str, Exception]
Processor = Callable[[Sequence[Job]], Awaitable[Mapping[str, Exception] | None]]

UNBUILDABLE = (KeyError, TypeError, AttributeError, ValueError, OverflowError)
"""What building a job's points raises for a message that cannot become points."""
ISOLATE_SHARE = 0.8
"""The share of a batch's timeout, from the batch's start, within which its InfluxDB writes
(the batch's, then those finding the jobs InfluxDB refuses) must end; the rest is left for the
Redis side effects, so that a few bad jobs on a slow InfluxDB never time the batch out."""


class Timed(Protocol):
    """What runs the processors (a :class:`~reliable_queue.Worker`): each batch's timeout."""

    @property
    def timeout_s(self) -> float | None: ...


@dataclass(frozen=True)
class SinkSettings:
    cache_ttl_s: int = 86_400
    machine_ttl_s: int = 30 * 86_400
    """Expiry of per-machine state (SPC windows, tech configuration), refreshed by each write."""
    alert_suppress_s: float = 300.0
    alert_history_max: int = 10_000
    webhooks: tuple[str, ...] = ()
    webhook_timeout_s: float = 5.0
    spc_window: int = 100
    spc_min_points: int = 20
    alerts_queue: str = queue_for_kind("alert").name


class Context:
    """What processors share: the queue client, the plant's state in Redis, the sinks,
    settings, metrics."""

    def __init__(
        self,
        *,
        client: QueueClient,
        plant: PlantState,
        influx: InfluxSink | None,
        settings: SinkSettings,
        metrics: WorkerMetrics,
    ) -> None:
        self.client = client
        self.redis = plant.redis  # the plant's state: cache, SPC windows, tech, alerts, stream
        self.influx = influx
        self.settings = settings
        self.metrics = metrics
        self.timed_by: Timed | None = None
        """The worker running the processors, whose timeout bounds a batch's InfluxDB writes
        (:data:`ISOLATE_SHARE`); None: no bound."""
        self._http: aiohttp.ClientSession | None = None
        self._keep_newest_loaded = False

    def writes_deadline(self) -> float | None:
        """When (event loop time) a batch starting now must be done writing to InfluxDB."""
        timeout = self.timed_by.timeout_s if self.timed_by is not None else None
        if timeout is None:
            return None
        return asyncio.get_running_loop().time() + ISOLATE_SHARE * timeout

    async def write_points(
        self, groups: Sequence[PointGroup], *, measurement: str, deadline: float | None = None
    ) -> Failures:
        """Write the jobs' points. Return the jobs whose points InfluxDB refused as bad data,
        each failed permanently with the server's answer, and those it refused at a capacity
        limit or left unresolved at ``deadline``, each failed with :class:`Retry`; an outage
        raises SinkUnavailable."""
        if self.influx is None:
            return {}
        sink = self.influx

        async def write(lines: Sequence[str]) -> None:
            started = time.perf_counter()
            await sink.write(lines)
            self.metrics.sink_seconds.labels("influxdb").observe(time.perf_counter() - started)

        isolated = await write_isolating(write, groups, deadline=deadline)
        failures: Failures = {}
        for group in groups:
            refusal = isolated.rejected.get(group.job_id)
            if refusal is None:
                continue
            self.metrics.points_rejected.labels(measurement).inc(len(group.lines))
            error = PermanentError(
                f"{refusal}; this message cannot be written as sent: correct its sender "
                "(a replay is refused the same way)"
            )
            error.__cause__ = refusal
            failures[group.job_id] = error
        refused = len(failures)
        for job_id, limit in isolated.limited.items():
            failures[job_id] = Retry(str(limit))
        if isolated.limited:
            log.warning(
                "%d of %d %s jobs retried: %s",
                len(isolated.limited),
                len(groups),
                measurement,
                next(iter(isolated.limited.values())),
            )
        for job_id in isolated.unresolved:
            failures[job_id] = Retry(
                f"the batch's time for InfluxDB writes ({ISOLATE_SHARE:.0%} of its timeout) ran "
                f"out after {isolated.writes} writes, before this job's points were written or "
                "refused alone: retried. InfluxDB is slow (see the worker's InfluxDB latency) or "
                "refused many jobs of the batch (see its dead letters)"
            )
        if refused or isolated.unresolved:
            log.info(
                "InfluxDB refused the %s points of %d of %d jobs; found them in %d writes%s",
                measurement,
                refused,
                len(groups),
                isolated.writes,
                f"; out of time, {len(isolated.unresolved)} jobs retried"
                if isolated.timed_out
                else "",
            )
        return failures

    async def redis_pipeline(
        self, build: Callable[[Any], object], *, transaction: bool = False
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

    async def keep_newest(self, build: Callable[[Any], object]) -> list[Any]:
        """:meth:`redis_pipeline` for a pipeline calling :data:`KEEP_NEWEST` by its SHA: loaded
        before the first call, and again when Redis lost it (a restart), then the pipeline is
        sent again (a call that ran, and its event, then runs twice: same values, same event)."""
        for attempt in (1, 2):
            if not self._keep_newest_loaded:
                try:
                    await self.redis.script_load(KEEP_NEWEST)
                except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
                    raise SinkUnavailable(f"Redis did not take the cache script: {exc}") from exc
                self._keep_newest_loaded = True
            try:
                return await self.redis_pipeline(build)
            except redis_errors.NoScriptError:
                self._keep_newest_loaded = False
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

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
    """The processor of a default queue (conveyor_messages.DEFAULT_QUEUES): its kind's; or None."""
    default = default_queue(queue)
    if default is None:
        return None
    by_kind: dict[Kind, Callable[[Context, Sequence[Job], float | None], Awaitable[Failures]]] = {
        "realtime": process_realtime,
        "spc": process_spc,
        "tech": process_tech,
        "alert": process_alerts,
    }
    fn = by_kind[default.kind]

    async def run(jobs: Sequence[Job]) -> Failures:
        return await fn(ctx, jobs, ctx.writes_deadline())

    return run


# --- realtime ---------------------------------------------------------------------------------

# The latest-value cache keeps, per signal, the value with the newest timestamp: jobs of one
# machine are processed in parallel and retried, so a later write may carry an older value.
# One call per machine per batch (with at most CACHE_SIGNALS_PER_CALL signals), by EVALSHA; the
# machine's live-stream event and its signals' units go with it, so that a batch costs one
# command per machine.
# KEYS: latest_values, latest_times, latest_units (one machine's: one hash slot)
# ARGV: ttl (s), the newest sample time (ms) of the call, the live channel and the event to
#   publish on it (none if the channel is ''), the units' ttl (s), the number N of units, N
#   pairs of signal and unit, then per signal: name, time (ms), JSON value.
#   A signal's value and time are set when its time is at least the stored one; ``_ts`` of
#   latest_values likewise; both hashes expire ttl seconds after the write. The units are set
#   as sent (a unit seldom changes) and live the units' ttl (the machine's, longer than the
#   values': a machine quiet for a weekend keeps them, as a Sparkplug B node sends them only
#   with its births).
KEEP_NEWEST = """
local nunits = tonumber(ARGV[6])
local first = 7 + 2 * nunits
local names = {}
for i = first, #ARGV, 3 do names[#names + 1] = ARGV[i] end
local seen = {}
if #names > 0 then seen = redis.call('HMGET', KEYS[2], unpack(names)) end
local values, times = {}, {}
for n = 1, #names do
  local at = first + 3 * (n - 1)
  if tonumber(ARGV[at + 1]) >= (tonumber(seen[n]) or -1) then
    values[#values + 1] = ARGV[at]
    values[#values + 1] = ARGV[at + 2]
    times[#times + 1] = ARGV[at]
    times[#times + 1] = ARGV[at + 1]
  end
end
if tonumber(ARGV[2]) >= (tonumber(redis.call('HGET', KEYS[1], '_ts')) or -1) then
  values[#values + 1] = '_ts'
  values[#values + 1] = ARGV[2]
end
if #values > 0 then redis.call('HSET', KEYS[1], unpack(values)) end
if #times > 0 then redis.call('HSET', KEYS[2], unpack(times)) end
if nunits > 0 then redis.call('HSET', KEYS[3], unpack(ARGV, 7, first - 1)) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[5])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
"""
KEEP_NEWEST_SHA = hashlib.sha1(KEEP_NEWEST.encode()).hexdigest()  # noqa: S324 - Redis' script id
CACHE_SIGNALS_PER_CALL = 500
"""Signals (and units) per cache call, well within what Lua's unpack() takes (~8,000 values)."""


async def process_realtime(
    ctx: Context, jobs: Sequence[Job], deadline: float | None = None
) -> Failures:
    """Points to InfluxDB; then, for the jobs written, per machine of the batch: one cache call
    with the newest value of each signal, and one live-stream event with those values and the
    newest sample time (``{"kind": "realtime", "machine", "ts", "values"}``, and ``"units"``
    when the batch's messages named any)."""
    failed: Failures = {}
    groups: list[PointGroup] = []
    for job in jobs:
        try:
            groups.append(PointGroup(job.id, tuple(realtime_lines(job.data))))
        except UNBUILDABLE as exc:
            failed[job.id] = PermanentError(
                f"cannot make InfluxDB points of this realtime message ({exc!r}): "
                "correct its sender"
            )
    failed |= await ctx.write_points(groups, measurement="realtime", deadline=deadline)
    machines = _newest_per_machine(job.data for job in jobs if job.id not in failed)
    if machines:
        await ctx.keep_newest(lambda pipe: _cache_and_publish(pipe, machines, ctx.settings))
    return failed


@dataclass
class _Newest:
    """A machine's newest values of a batch: signal -> (time, value); the newest sample time;
    when the ingestor received its last message (the event's time if it has no samples)."""

    signals: dict[str, tuple[int, Any]]
    sample_ts: int | None
    received_at: Any
    units: dict[str, str] = field(default_factory=dict)


def _newest_per_machine(messages: Iterable[RealtimeMessage]) -> dict[str, _Newest]:
    """Per machine, per signal, the value with the newest time; of equal times, the later
    message's (as writing the messages one after another would keep)."""
    machines: dict[str, _Newest] = {}
    for msg in messages:
        machine = msg["machine"]
        if type(machine) is not str:  # only a message without values gets here so
            machine = str(machine)
        newest = machines.get(machine)
        if newest is None:
            newest = machines[machine] = _Newest({}, None, None)
        newest.received_at = msg["received_at"]
        sent = msg.get("units")
        if sent:
            _take_units(sent, newest.units)
        signals = newest.signals
        for sample in msg["samples"]:
            ts = point_time(msg, sample)
            if newest.sample_ts is None or ts > newest.sample_ts:
                newest.sample_ts = ts
            for signal, value in sample["values"].items():
                seen = signals.get(signal)
                if seen is None or ts >= seen[0]:
                    signals[signal] = (ts, value)
    return machines


def _take_units(sent: object, units: dict[str, str]) -> None:
    """A message's units into ``units``: text to text only, so that a job from elsewhere that
    breaks the contract costs its units, not its batch."""
    if not isinstance(sent, dict):
        return
    for signal, unit in list(sent.items())[:CACHE_SIGNALS_PER_CALL]:
        if type(signal) is str and type(unit) is str and 0 < len(unit) <= MAX_UNIT_CHARS:
            units[signal] = unit


def _cache_and_publish(pipe: Any, machines: Mapping[str, _Newest], settings: SinkSettings) -> None:
    ttl = settings.cache_ttl_s
    for machine, newest in machines.items():
        values = {signal: value for signal, (_, value) in newest.signals.items()}
        ts = newest.sample_ts if newest.sample_ts is not None else newest.received_at
        doc = {"kind": "realtime", "machine": machine, "ts": ts, "values": values}
        if newest.units:
            doc["units"] = newest.units
        event = json.dumps(doc)
        channel = live_channel(machine)
        if newest.sample_ts is None:  # messages without samples: nothing to cache
            pipe.publish(channel, event)
            continue
        keys = (latest_values(machine), latest_times(machine), latest_units(machine))
        units = [x for pair in newest.units.items() for x in pair]
        calls: list[list[Any]] = [[]]
        for signal, (at, value) in newest.signals.items():
            if len(calls[-1]) == 3 * CACHE_SIGNALS_PER_CALL:
                calls.append([])
            calls[-1] += (signal, at, json.dumps(value))
        for n, args in enumerate(calls, start=1):
            last = n == len(calls)  # with the event and the units
            publish = (channel, event) if last else ("", "")
            unit_args = (len(units) // 2, *units) if last else (0,)
            pipe.evalsha(
                KEEP_NEWEST_SHA, 3, *keys, ttl, newest.sample_ts, *publish,
                settings.machine_ttl_s, *unit_args, *args,
            )  # fmt: skip


# --- SPC --------------------------------------------------------------------------------------

SpcPoint = tuple[int, str, list[float]]
"""One sample of an SPC message: its time (ms), characteristic and values."""


async def process_spc(ctx: Context, jobs: Sequence[Job], deadline: float | None = None) -> Failures:
    failed: Failures = {}
    groups: list[PointGroup] = []
    alerts: dict[str, list[NewJob]] = {}
    added: dict[str, list[tuple[str, str]]] = {}  # job id -> (window key, entry) it holds
    for job in jobs:
        try:
            machine, points = _spc_points(job.data)
        except UNBUILDABLE as exc:
            failed[job.id] = PermanentError(
                f"cannot make InfluxDB points of this SPC message ({exc!r}): correct its sender"
            )
            continue
        lines: list[str] = []
        for index, (ts, name, values) in enumerate(points):
            point_id = f"{job.id}:{index}"
            history, entry = await _spc_history(ctx, machine, name, point_id, values)
            added.setdefault(job.id, []).append(entry)
            limits = _limits(history[:-1], ctx.settings.spc_min_points)
            broken = check_rules([fmean(v) for v in history], limits) if limits else []
            lines.append(
                spc_line(
                    machine=machine,
                    characteristic=name,
                    ts_ms=ts,
                    values=values,
                    limits=limits.as_dict() if limits else None,
                    rules=[v.rule for v in broken],
                )
            )
            for violation in broken:
                assert limits is not None  # rules are judged against limits
                alerts.setdefault(job.id, []).append(
                    _spc_alert(
                        job.data, name, ts, violation.rule, violation.points, limits, point_id
                    )
                )
        groups.append(PointGroup(job.id, tuple(lines)))
    failed |= await ctx.write_points(groups, measurement="spc", deadline=deadline)
    # A refused point leaves its window, so that it judges no later point. Points of this batch
    # judged after it keep their verdicts: InfluxDB refuses names and times, rarely values.
    # A point to be retried stays, as in an outage: its retry finds it and judges it the same.
    refused = {job_id for job_id, error in failed.items() if not isinstance(error, Retry)}
    undo = [entry for job_id, entries in added.items() if job_id in refused for entry in entries]
    if undo:
        await ctx.redis_pipeline(lambda p: [p.lrem(key, 1, raw) for key, raw in undo])
    raised = [a for job_id, found in alerts.items() if job_id not in failed for a in found]
    if raised:
        try:
            await ctx.client.enqueue_many(ctx.settings.alerts_queue, raised)
        except QueueUnavailable as exc:  # an outage, as of any sink: the batch is postponed
            raise SinkUnavailable(f"Redis did not take the SPC alerts: {exc}") from exc
        ctx.metrics.spc_violations.inc(len(raised))
    return failed


def _spc_points(msg: SpcMessage) -> tuple[str, list[SpcPoint]]:
    """The machine and samples of an SPC message, checked to make points before any of them
    touches a window: a message that cannot be written must not judge others."""
    machine = msg["machine"]
    points: list[SpcPoint] = []
    for sample in msg["samples"]:
        values = [float(v) for v in sample["values"]]
        if not values:
            raise ValueError("a sample without values")
        name, ts = sample["characteristic"], point_time(msg, sample)
        spc_line(machine=machine, characteristic=name, ts_ms=ts, values=values, limits=None)
        points.append((ts, name, values))
    return machine, points


async def _spc_history(
    ctx: Context, machine: str, characteristic: str, point_id: str, values: list[float]
) -> tuple[list[list[float]], tuple[str, str]]:
    """The window, oldest first, ending with this point, and the point's (key, entry) in it;
    a retried point is not added twice. Each point added keeps the window for
    ``machine_ttl_s`` more."""
    key = spc_window(machine, characteristic)
    [raw] = await ctx.redis_pipeline(lambda p: p.lrange(key, 0, -1))
    entries = [json.loads(x) for x in raw]
    at = next((i for i, e in enumerate(entries) if e["id"] == point_id), None)
    if at is None:
        entry = json.dumps({"id": point_id, "v": values})
        size = ctx.settings.spc_window

        def push(p: Any) -> None:
            p.lpush(key, entry)
            p.ltrim(key, 0, size - 1)
            p.expire(key, ctx.settings.machine_ttl_s)

        await ctx.redis_pipeline(push, transaction=True)
        entries = [{"id": point_id, "v": values}, *entries][:size]
    else:  # a retry: judge the point against what came before it, as the first time
        entry = raw[at].decode() if isinstance(raw[at], bytes) else str(raw[at])
        entries = entries[at:]
    return [e["v"] for e in reversed(entries)], (key, entry)


def _limits(previous: list[list[float]], min_points: int) -> Limits | None:
    if len(previous) < min_points:
        return None
    if all(len(v) == 1 for v in previous):
        return individual_limits([v[0] for v in previous])
    return subgroup_limits(previous)


def _spc_alert(
    msg: SpcMessage,
    name: str,
    ts: int,
    rule: int,
    points: tuple[float, ...],
    limits: Limits,
    point_id: str,
) -> NewJob:
    data = AlertMessage(
        kind="alert",
        machine=msg["machine"],
        topic=msg["topic"],
        received_at=msg["received_at"],
        ts=ts,
        type=f"spc_rule_{rule}:{name}",
        severity="critical" if rule == 1 else "warning",
        message=f"{name}: {RULES[rule]} (last {points[-1]:.6g}; CL {limits.centre:.6g}, "
        f"UCL {limits.ucl:.6g}, LCL {limits.lcl:.6g})",
        details={
            "rule": rule,
            "characteristic": name,
            "values": list(points),
            "limits": limits.as_dict(),
        },
    )
    return NewJob(data, job_id=f"spc:{point_id}:{rule}")


# --- tech -------------------------------------------------------------------------------------


async def process_tech(
    ctx: Context, jobs: Sequence[Job], deadline: float | None = None
) -> Failures:
    """Jobs of one machine are taken in rounds, one per machine each, in order: each change is
    numbered and compared against the configuration stored before it. A job to be retried
    takes its machine's later jobs with it, so that they are never stored before it."""
    failed: Failures = {}
    pending: dict[str, list[Job]] = {}
    for job in jobs:
        try:
            machine, config = job.data["machine"], job.data["config"]
            if not isinstance(machine, str) or not isinstance(config, dict):
                raise TypeError("machine must be a string and config an object")
        except (KeyError, TypeError) as exc:
            failed[job.id] = PermanentError(f"not a tech message ({exc!r})")
            continue
        pending.setdefault(machine, []).append(job)
    while pending:
        round_jobs = [queue.pop(0) for queue in pending.values()]
        failed |= await _tech_round(ctx, round_jobs, deadline)
        for job in round_jobs:
            if isinstance(failed.get(job.id), Retry):
                for later in pending.pop(job.data["machine"]):
                    failed[later.id] = Retry(
                        f"retried after the earlier change of its machine (job {job.id}), "
                        "which is retried"
                    )
        pending = {machine: queue for machine, queue in pending.items() if queue}
    return failed


async def _tech_round(ctx: Context, jobs: list[Job], deadline: float | None) -> Failures:
    """Tech jobs of distinct machines."""
    failed: Failures = {}
    machines = [job.data["machine"] for job in jobs]
    stored = await ctx.redis_pipeline(lambda p: [p.get(tech_config(m)) for m in machines])
    groups: list[PointGroup] = []
    unchanged: list[str] = []
    changes: dict[str, tuple[str, dict[str, Any], list[str]]] = {}
    for job, machine, raw in zip(jobs, machines, stored, strict=True):
        config: dict[str, Any] = job.data["config"]
        current: dict[str, Any] = json.loads(raw) if raw else {"version": 0, "config": None}
        before: dict[str, Any] = current["config"] or {}
        if current["config"] == config:
            unchanged.append(machine)  # unchanged (or this job's retry after its change was stored)
            continue
        try:
            ts = point_time(job.data)
            version = int(current["version"]) + 1
            line = tech_line(machine=machine, ts_ms=ts, config=config, version=version)
        except UNBUILDABLE as exc:
            failed[job.id] = PermanentError(
                f"cannot make an InfluxDB point of this tech message ({exc!r}): correct its sender"
            )
            continue
        changed = sorted(
            set(config) ^ set(before) | {k for k in config if before.get(k, object()) != config[k]}
        )
        groups.append(PointGroup(job.id, (line,)))
        changes[job.id] = (machine, {"version": version, "ts": ts, "config": config}, changed)
    failed |= await ctx.write_points(groups, measurement="tech", deadline=deadline)
    ttl = ctx.settings.machine_ttl_s

    def build(pipe: Any) -> None:
        for machine in unchanged:
            pipe.expire(tech_config(machine), ttl)
        for job_id, (machine, record, changed) in changes.items():
            if job_id in failed:
                continue
            pipe.set(tech_config(machine), json.dumps(record), ex=ttl)
            event = {"kind": "tech", "machine": machine, "changed": changed, **record}
            pipe.publish(live_channel(machine), json.dumps(event))

    await ctx.redis_pipeline(build)
    return failed


# --- alerts -----------------------------------------------------------------------------------


async def process_alerts(
    ctx: Context, jobs: Sequence[Job], deadline: float | None = None
) -> Failures:
    """Each alert deduplicated, delivered (webhooks), recorded (history) and streamed; then
    the delivered ones written to InfluxDB, best effort (:func:`_alert_points`).
    ``deadline`` bounds only that write: each webhook call has its own timeout."""
    failed: Failures = {}
    delivered: list[PointGroup] = []
    for job in jobs:
        alert = job.data
        try:
            machine, kind = alert["machine"], alert["type"]
        except (KeyError, TypeError) as exc:
            failed[job.id] = PermanentError(f"not an alert ({exc!r})")
            continue
        # A resolve (details.state "resolved", as the operator's queue alerts send) is folded
        # only into resolves; each delivery ends the other's fold: a firing after a resolve, or
        # a resolve after a firing, is news again.
        details = alert.get("details")
        resolved = isinstance(details, dict) and details.get("state") == "resolved"
        key = alert_seen(machine, f"{kind}:resolved" if resolved else kind)

        def claim(p: Any, k: str = key, j: str = job.id) -> None:
            p.set(k, j, nx=True, ex=max(1, int(ctx.settings.alert_suppress_s)), get=True)

        [previous] = await ctx.redis_pipeline(claim)
        if previous is not None and previous.decode() != job.id:
            ctx.metrics.alerts_suppressed.inc()
            continue  # the same alert was raised within the suppression window
        if kind == OFFLINE_ALERT:
            # Before the webhook, whatever it answers; by the alert's time, so that a firing
            # retried after its resolve does not mark the machine offline again.

            def mark(p: Any, m: str = machine, a: Any = alert, r: bool = resolved) -> None:
                _mark_offline(p, m, a, resolved=r, ttl=ctx.settings.cache_ttl_s)

            await ctx.redis_pipeline(mark)
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

        # No MULTI: the history and the machine's channel lie in other hash slots (Cluster).
        await ctx.redis_pipeline(build)
        other = alert_seen(machine, kind if resolved else f"{kind}:resolved")

        def unfold(pipe: Any, k: str = other) -> None:
            pipe.delete(k)

        await ctx.redis_pipeline(unfold)
        ctx.metrics.alerts_delivered.inc()
        try:
            delivered.append(PointGroup(job.id, (alert_line(alert),)))
        except UNBUILDABLE:  # a type InfluxDB cannot hold as a tag: delivered all the same
            ctx.metrics.alert_points_dropped.inc()
    await _alert_points(ctx, delivered, deadline)
    return failed


async def _alert_points(
    ctx: Context, delivered: Sequence[PointGroup], deadline: float | None
) -> None:
    """The delivered alerts' points, for dashboards' annotations. Best effort: the alerts were
    delivered and recorded already, and retrying their jobs would deliver them twice, so a
    point InfluxDB cannot take (away, refusing) is counted and logged, not retried."""
    if ctx.influx is None or not delivered:
        return
    try:
        not_written = len(
            await ctx.write_points(delivered, measurement="alerts", deadline=deadline)
        )
    except SinkUnavailable as exc:
        not_written = len(delivered)
        log.warning("%d delivered alerts not written to InfluxDB: %s", not_written, exc)
    if not_written:
        ctx.metrics.alert_points_dropped.inc(not_written)


# KEYS[1]: latest_values(machine). ARGV: "firing" or "resolved", the alert's time (ms), the
# cache's TTL. A firing marks the machine offline unless a resolve of a later time came first;
# a resolve clears a mark of its time or before, and remembers its time.
MARK_OFFLINE = f"""
local at = tonumber(ARGV[2])
local online = tonumber(redis.call('HGET', KEYS[1], '{LATEST_ONLINE_FIELD}') or '-1')
if ARGV[1] == 'firing' then
  if at > online then redis.call('HSET', KEYS[1], '{LATEST_OFFLINE_FIELD}', at) end
else
  local offline = tonumber(redis.call('HGET', KEYS[1], '{LATEST_OFFLINE_FIELD}') or '-1')
  if at >= offline then redis.call('HDEL', KEYS[1], '{LATEST_OFFLINE_FIELD}') end
  if at > online then redis.call('HSET', KEYS[1], '{LATEST_ONLINE_FIELD}', at) end
end
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
"""


def _mark_offline(pipe: Any, machine: str, alert: Any, *, resolved: bool, ttl: int) -> None:
    """The time is when the ingestor took the NDEATH or the birth (``received_at``): a death
    is often the edge node's will, whose own timestamp is that of its connection."""
    at = alert.get("received_at")
    state = "resolved" if resolved else "firing"
    pipe.eval(MARK_OFFLINE, 1, latest_values(machine), state, at if isinstance(at, int) else 0, ttl)


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
