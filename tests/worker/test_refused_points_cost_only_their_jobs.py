"""A write InfluxDB refuses as bad data costs only the jobs that carry it: in a batch of good
realtime, SPC and tech jobs with poisoned ones mixed in (field type conflicts, which only
InfluxDB can see, and messages no point can be made of), every good point is written once
without a retry and with its Redis side effects, each poisoned job is one dead letter with
InfluxDB's answer and no side effect, and the worker goes on. Per-machine state expires after
``machine_ttl_s``, renewed by every message.

On a slow InfluxDB, finding the refused jobs ends by the batch's deadline (``ISOLATE_SHARE`` of
its timeout): the jobs written are acknowledged, no good job is dead-lettered, the rest are
retried, and the batch never times out. At InfluxDB's ``max-values-per-tag`` limit (which makes
1.8 drop a whole request) the jobs of known series are written and only the jobs that would add
one are retried, none dead-lettered.

Field types are fixed per shard (a week of the default retention policy): a point seeded
through InfluxDB's own API at ``OLD`` makes any job with another type at ``OLD`` a conflict,
while jobs at ``TS`` are not concerned."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conveyor_plant.keys import latest_values, spc_window, tech_config
from conveyor_worker import InfluxConfig, InfluxSink, SinkSettings, WorkerMetrics
from conveyor_worker import build_worker as make_worker
from redis.asyncio import Redis

from conveyor.local_servers import InfluxServer, influxd_binary
from reliable_queue import DeadLetter, QueueClient, Worker
from tests.helpers import eventually, worker_context
from tests.servers import require_binary
from tests.worker.conftest import message

pytestmark = pytest.mark.integration
TS = 1_750_000_000_000
OLD = TS - 30 * 86_400_000
OUT_OF_RANGE_MS = 10**17  # year 3170000: beyond InfluxDB's int64 nanoseconds
TTL = 3600
Started = tuple[Worker, WorkerMetrics]


@pytest.fixture
async def start(
    client: QueueClient, redis_url: str, influx: InfluxServer
) -> AsyncIterator[Callable[..., Any]]:
    """A worker of a default queue, with its metrics at hand."""
    started: list[Worker] = []
    contexts = contextlib.AsyncExitStack()

    async def run(
        queue: str, *, sink: InfluxSink | None = None, timeout_s: float | None = None
    ) -> Started:
        ctx = await contexts.enter_async_context(
            worker_context(
                client,
                redis_url,
                influx=sink or InfluxSink(InfluxConfig(url=influx.url, bucket=influx.bucket)),
                settings=SinkSettings(machine_ttl_s=TTL),
            )
        )
        worker = make_worker(
            client=client, queue=queue, ctx=ctx, concurrency=1, batch_size=200, drain_timeout=5
        )
        assert worker is not None
        if timeout_s is not None:  # as `conveyor work` does
            worker.default_timeout_s = timeout_s
            ctx.timed_by = worker
        await worker.start()
        started.append(worker)
        return worker, ctx.metrics

    async with contexts:  # closed once every worker has stopped
        yield run
        for worker in started:
            await worker.stop()


def write_raw(influx: InfluxServer, line: str) -> None:
    """One point through InfluxDB's own (1.x) write API, bypassing Conveyor."""
    url = f"{influx.url}/write?db={influx.database}&precision=ms"
    with urllib.request.urlopen(url, data=line.encode(), timeout=10) as resp:  # noqa: S310
        assert resp.status == 204


def poisoned(kind: str, machine: str, doc: dict[str, Any], **sample: Any) -> dict[str, Any]:
    """A job as the ingestor makes it, then changed behind ingest validation's back."""
    job = message(kind, machine, doc)
    (job["samples"][0] if "samples" in job else job).update(sample)
    return job


async def settled(client: QueueClient, queue: str, *, done: int, dead: int) -> None:
    async def check() -> bool:
        stats = await client.queue_stats(queue)
        return stats.completed >= done and stats.failed >= dead

    await eventually(check, timeout=20, what=f"{done} jobs of {queue} done, {dead} dead")
    stats = await client.queue_stats(queue)
    assert (stats.completed, stats.failed, stats.retried) == (done, dead, 0)


def letters(found: list[DeadLetter]) -> dict[str, DeadLetter]:
    return {letter.id: letter for letter in found}


def rejected(metrics: WorkerMetrics, measurement: str) -> float | None:
    return metrics.registry.get_sample_value(
        "conveyor_worker_points_rejected_total", {"measurement": measurement}
    )


async def test_poisoned_realtime_jobs_fail_alone(
    client: QueueClient, influx: InfluxServer, start: Callable[..., Any], raw_redis: Redis
) -> None:
    # `text` holds floats in TS's shard, `value` strings in OLD's: conflicts for the others.
    write_raw(influx, f"realtime,machine=seed,signal=s text=1.0 {TS}")
    write_raw(influx, f'realtime,machine=seed,signal=s value="x" {OLD}')
    good = [
        message("realtime", f"good-{i % 4}", {"timestamp": TS + i, "temp": 20.0 + i, "run": True})
        for i in range(40)
    ]
    poison = {
        "conflict": message("realtime", "bad-1", {"timestamp": TS + 1, "mode": "AUTO"}),
        "old-conflict": message("realtime", "bad-2", {"timestamp": OLD, "temp": 1.0}),
        "far-future": poisoned("realtime", "bad-3", {"temp": 1.0}, ts=OUT_OF_RANGE_MS),
        "no-time": poisoned("realtime", "bad-4", {"temp": 1.0}, ts="soon"),
    }
    jobs = [(f"good-{i}", job) for i, job in enumerate(good)]
    for at, (job_id, job) in zip((5, 20, 33, 39), poison.items(), strict=True):
        jobs.insert(at, (job_id, job))
    for job_id, job in jobs:
        await client.enqueue("mqtt_realtime", job, job_id=job_id)
    worker, metrics = await start("mqtt_realtime")

    await settled(client, "mqtt_realtime", done=40, dead=4)
    [series] = influx.query("SELECT count(value) FROM realtime WHERE machine =~ /^good/")
    assert series["values"][0][1] == 40  # type: ignore[index]
    assert not influx.query("SELECT * FROM realtime WHERE machine =~ /^bad/")
    dead = letters(await client.dead_letters("mqtt_realtime"))
    assert set(dead) == set(poison)
    assert all(letter.attempts == 1 and letter.reason == "permanent" for letter in dead.values())
    assert "field type conflict" in dead["conflict"].error
    assert "HTTP 400" in dead["conflict"].error
    assert "already exists as type string" in dead["old-conflict"].error
    assert "outside" in dead["far-future"].error  # InfluxDB's range: refused by it, or before
    assert "cannot make InfluxDB points" in dead["no-time"].error
    assert "soon" in dead["no-time"].error
    assert worker.counters.retried == 0
    assert rejected(metrics, "realtime") == 2  # the two points InfluxDB refused
    for machine in ("bad-1", "bad-2", "bad-3", "bad-4"):
        assert not await raw_redis.exists(latest_values(machine))  # no side effect
    assert await raw_redis.exists(latest_values("good-3"))

    await client.enqueue("mqtt_realtime", message("realtime", "good-0", {"temp": 1.0}))
    await settled(client, "mqtt_realtime", done=41, dead=4)  # and the worker goes on


async def test_a_refused_spc_point_judges_nothing_and_raises_no_alert(
    client: QueueClient, influx: InfluxServer, start: Callable[..., Any], raw_redis: Redis
) -> None:
    in_control = [10.0 + (0.05 if i % 2 else -0.05) * (1 + i % 3) for i in range(25)]
    jobs = [
        message("spc", "lathe", {"characteristic": "bore", "value": v, "timestamp": TS + i})
        for i, v in enumerate([*in_control, 10.9])
    ]
    # An outlier too, but InfluxDB refuses its point: no alert, and it leaves the window.
    write_raw(influx, f'spc,machine=seed,characteristic=c value="x" {OLD}')
    far = message("spc", "lathe", {"characteristic": "bore", "value": 50.0, "timestamp": OLD})
    for n, job in enumerate(jobs):
        await client.enqueue("mqtt_spc", job, job_id=f"spc-{n}")
    await client.enqueue("mqtt_spc", far, job_id="far")
    await start("mqtt_spc")

    await settled(client, "mqtt_spc", done=len(jobs), dead=1)
    [letter] = await client.dead_letters("mqtt_spc")
    assert letter.id == "far"
    assert "field type conflict" in letter.error
    assert (await client.queue_stats("alerts")).pending == 1  # 10.9's, not 50.0's
    window = [
        json.loads(e)["id"] for e in await raw_redis.lrange(spc_window("lathe", "bore"), 0, -1)
    ]
    assert len(window) == len(jobs)
    assert not any(point.startswith("far:") for point in window)
    assert 0 < await raw_redis.ttl(spc_window("lathe", "bore")) <= TTL
    [series] = influx.query("SELECT count(value) FROM spc")
    assert series["values"][0][1] == len(jobs)  # type: ignore[index]


async def test_tech_changes_around_a_refused_one_are_numbered_in_order(
    client: QueueClient, influx: InfluxServer, start: Callable[..., Any], raw_redis: Redis
) -> None:
    await raw_redis.set(
        tech_config("cnc-8"),
        json.dumps({"version": 1, "ts": TS, "config": {"fw": "2.0"}}),
        ex=100,
    )
    write_raw(influx, f"tech,machine=seed config=1.0 {OLD}")
    docs = [
        ("v1", message("tech", "cnc-9", {"fw": "1.0", "timestamp": TS})),
        ("evil", message("tech", "cnc-9", {"fw": "evil", "timestamp": OLD})),
        ("v2", message("tech", "cnc-9", {"fw": "1.1", "timestamp": TS + 2})),
        ("same", message("tech", "cnc-8", {"fw": "2.0", "timestamp": TS + 3})),
    ]
    for job_id, job in docs:
        await client.enqueue("mqtt_tech", job, job_id=job_id)
    await start("mqtt_tech")

    await settled(client, "mqtt_tech", done=3, dead=1)
    [letter] = await client.dead_letters("mqtt_tech")
    assert letter.id == "evil"
    assert "field type conflict" in letter.error
    current = json.loads(await raw_redis.get(tech_config("cnc-9")) or "null")
    assert (current["version"], current["config"]) == (2, {"fw": "1.1"})
    # (in TS's shard only: a query across shards of two field types returns one of them)
    rows = influx.query(
        "SELECT version, config FROM tech WHERE machine='cnc-9' AND time >= '2025-06-15T15:06:40Z'"
    )
    written: list[list[Any]] = rows[0]["values"]  # type: ignore[assignment]
    assert [(r[1], json.loads(r[2])["fw"]) for r in written] == [(1, "1.0"), (2, "1.1")]
    assert 0 < await raw_redis.ttl(tech_config("cnc-9")) <= TTL
    # a machine still sending the same configuration keeps it: the message renewed its age
    assert 100 < await raw_redis.ttl(tech_config("cnc-8")) <= TTL


class SlowInflux(InfluxSink):
    """A real InfluxDB behind a slow network: each write takes ``latency`` seconds more."""

    latency = 0.1

    async def write(self, lines: Sequence[str]) -> None:
        await asyncio.sleep(self.latency)
        await super().write(lines)


async def test_a_slow_influxdb_retries_what_it_had_no_time_to_settle(
    client: QueueClient, influx: InfluxServer, start: Callable[..., Any]
) -> None:
    write_raw(influx, f"realtime,machine=seed,signal=s text=1.0 {TS}")
    poison = {f"poison-{i}" for i in range(0, 100, 10)}  # a string where InfluxDB has a float
    for i in range(100):
        job_id = f"poison-{i}" if f"poison-{i}" in poison else f"good-{i}"
        doc = {"timestamp": TS + i, "mode": "AUTO"} if job_id in poison else {"temp": float(i)}
        await client.enqueue("mqtt_realtime", message("realtime", f"m{i % 5}", doc), job_id=job_id)
    sink = SlowInflux(InfluxConfig(url=influx.url, bucket=influx.bucket))
    # deadline 0.8 s: 10 bad jobs among 100 need ~50 writes, 4 at once, of 0.1 s each
    worker, _ = await start("mqtt_realtime", sink=sink, timeout_s=1.0)

    async def first_attempt_settled() -> bool:
        stats = await client.queue_stats("mqtt_realtime")
        return stats.completed + stats.failed + stats.retried == 100

    await eventually(first_attempt_settled, timeout=10, what="the first attempt of 100 jobs")
    stats = await client.queue_stats("mqtt_realtime")
    assert worker.counters.timed_out == 0  # the batch ended before its timeout
    assert stats.completed > 0  # the clean parts found in time are written and acknowledged
    assert stats.retried > 0  # the rest: neither written nor refused alone yet
    dead = await client.dead_letters("mqtt_realtime")
    assert {letter.id for letter in dead} <= poison  # no good job is dead-lettered
    assert all(letter.reason == "permanent" for letter in dead)
    [series] = influx.query("SELECT count(value) FROM realtime WHERE machine =~ /^m/")
    assert series["values"][0][1] >= stats.completed  # type: ignore[index]


@pytest.fixture
def limited_influx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InfluxServer]:
    """An InfluxDB 1.8 of its own that takes at most 3 values per tag."""
    binary = influxd_binary() or require_binary("influxd", install="hack/tools.sh influxd")
    monkeypatch.setenv("INFLUXDB_DATA_MAX_VALUES_PER_TAG", "3")  # influxd's config override
    server = InfluxServer(binary, tmp_path / "influxdb").start()
    yield server
    server.stop()


async def test_at_a_series_limit_only_new_series_are_retried(
    client: QueueClient, limited_influx: InfluxServer, start: Callable[..., Any]
) -> None:
    for machine in ("k0", "k1", "k2"):  # the machine tag is full
        write_raw(limited_influx, f"realtime,machine={machine},signal=temp value=1.0 {OLD}")
    jobs = [
        (f"known-{i}", message("realtime", f"k{i % 3}", {"timestamp": TS + i, "temp": 1.0}))
        for i in range(30)
    ]
    jobs.insert(7, ("rogue-1", message("realtime", "rogue-1", {"temp": 1.0})))
    jobs.insert(20, ("rogue-2", message("realtime", "rogue-2", {"temp": 1.0})))
    for job_id, job in jobs:
        await client.enqueue("mqtt_realtime", job, job_id=job_id)
    sink = InfluxSink(InfluxConfig(url=limited_influx.url, bucket=limited_influx.bucket))
    await start("mqtt_realtime", sink=sink)

    async def settled() -> bool:
        stats = await client.queue_stats("mqtt_realtime")
        return (stats.completed, stats.retried) == (30, 2)

    await eventually(settled, timeout=10, what="30 known jobs written, 2 new ones retried")
    assert await client.dead_letters("mqtt_realtime") == []  # never refused as bad data
    [series] = limited_influx.query("SELECT count(value) FROM realtime")
    assert series["values"][0][1] == 3 + 30  # type: ignore[index]
