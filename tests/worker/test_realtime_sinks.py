"""mqtt_realtime: points in InfluxDB, latest values in the Redis cache (a late older value
never replaces a newer one), updates on the live stream (one event per machine per batch);
acknowledged only once all of them took the batch."""

from __future__ import annotations

import json

import pytest
from conveyor_plant.keys import latest_units, latest_values, live_channel
from conveyor_worker import SinkSettings
from redis.asyncio import Redis

from conveyor.local_servers import InfluxServer
from reliable_queue import QueueClient
from tests.helpers import eventually
from tests.worker.conftest import StartWorker, message

pytestmark = pytest.mark.integration
TS = 1_750_000_000_000


async def test_points_cache_and_stream(
    client: QueueClient, influx: InfluxServer, start_worker: StartWorker, raw_redis: Redis
) -> None:
    pubsub = raw_redis.pubsub()
    await pubsub.psubscribe("conveyor:live:*")
    jobs = [
        message(
            "realtime",
            f"m{i % 2}",
            {"timestamp": TS + i, "values": {"temp": 20.0 + i, "run": True, "mode": "AUTO"}},
        )
        for i in range(50)
    ]
    await client.enqueue_many("mqtt_realtime", jobs)
    await start_worker("mqtt_realtime")

    async def written() -> bool:
        return (await client.queue_stats("mqtt_realtime")).completed == 50

    await eventually(written, timeout=20, what="50 jobs acknowledged")
    [series] = influx.query("SELECT count(value) FROM realtime WHERE signal='temp'")
    assert series["values"][0][1] == 50  # type: ignore[index]
    rows = influx.query(
        "SELECT value FROM realtime WHERE machine='m1' AND signal='temp' ORDER BY time DESC LIMIT 1"
    )
    assert rows[0]["values"][0][1] == 20.0 + 49  # type: ignore[index]
    flags = influx.query("SELECT flag, text FROM realtime WHERE signal='run' OR signal='mode'")
    assert flags  # booleans and strings land in their own fields

    latest = await raw_redis.hgetall(latest_values("m1"))
    assert json.loads(latest[b"temp"]) == 69.0
    assert latest[b"_ts"] == str(TS + 49).encode()
    assert 0 < await raw_redis.ttl(latest_values("m1")) <= 86_400

    # One event per machine per batch, with the newest value of each signal.
    events: list[dict[str, object]] = []

    async def newest_streamed() -> bool:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if msg is not None:
            events.append(json.loads(msg["data"]))
        return any(e["machine"] == "m1" and e["ts"] == TS + 49 for e in events)

    await eventually(
        newest_streamed,
        timeout=5,
        interval=0,
        what="the event of m1's newest value",
        detail=lambda: f"events: {events}",
    )
    await pubsub.aclose()
    assert 2 <= len(events) <= 50
    assert {e["kind"] for e in events} == {"realtime"}
    assert {e["machine"] for e in events} == {"m0", "m1"}
    last = [e for e in events if e["machine"] == "m1"][-1]
    assert last["ts"] == TS + 49
    assert last["values"] == {"temp": 69.0, "run": True, "mode": "AUTO"}


async def test_influx_outage_postpones_and_writes_each_point_once(
    client: QueueClient, influx: InfluxServer, start_worker: StartWorker
) -> None:
    """The jobs an outage fails wait, their attempts kept, and are written once when InfluxDB
    is back (tests/worker/test_influx_outage_costs_no_attempt.py: one longer than retries)."""
    worker = await start_worker("mqtt_realtime", batch_size=20)
    await client.enqueue_many(
        "mqtt_realtime",
        [message("realtime", "press", {"timestamp": TS + i, "temp": float(i)}) for i in range(100)],
    )

    async def first_written() -> bool:  # before the outage
        return (await client.queue_stats("mqtt_realtime")).completed == 100

    await eventually(first_written, timeout=20, what="the first 100 jobs written")
    influx.stop()
    try:
        await client.enqueue_many(
            "mqtt_realtime",
            [
                message("realtime", "press", {"timestamp": TS + i, "temp": float(i)})
                for i in range(100, 200)
            ],
        )
        await eventually(
            lambda: worker.counters.postponed > 0, timeout=10, what="a write refused by the outage"
        )
        stats = await client.queue_stats("mqtt_realtime")
        assert stats.retried == 0  # no attempt spent on the outage
        assert stats.completed < 200
    finally:
        influx.start()  # the session's InfluxDB, for the tests after this one

    async def drained() -> bool:
        s = await client.queue_stats("mqtt_realtime")
        return s.completed == 200

    await eventually(drained, timeout=30, what="every job written after InfluxDB returned")
    [series] = influx.query("SELECT count(value) FROM realtime")
    assert series["values"][0][1] == 200  # type: ignore[index]
    assert (await client.queue_stats("mqtt_realtime")).failed == 0


async def test_a_late_older_message_does_not_replace_a_newer_value(
    client: QueueClient, influx: InfluxServer, start_worker: StartWorker, raw_redis: Redis
) -> None:
    # Jobs of one machine run in parallel and are retried: the cache keeps, per signal, the
    # value with the newest timestamp (seen in the image test: an older temp won).
    await start_worker("mqtt_realtime")
    newer = message("realtime", "late", {"timestamp": TS + 10, "values": {"temp": 30.0}})
    older = message(
        "realtime", "late", {"timestamp": TS + 5, "values": {"temp": 25.0, "pressure": 5.5}}
    )
    for n, job in enumerate((newer, older), start=1):
        await client.enqueue("mqtt_realtime", job)

        async def done(n: int = n) -> bool:
            return (await client.queue_stats("mqtt_realtime")).completed == n

        await eventually(done, timeout=20, what=f"job {n} done")
    latest = await raw_redis.hgetall(latest_values("late"))
    assert json.loads(latest[b"temp"]) == 30.0  # not the late 25.0
    assert json.loads(latest[b"pressure"]) == 5.5  # nothing newer for it: the late one counts
    assert latest[b"_ts"] == str(TS + 10).encode()


async def test_units_are_kept_beside_the_latest_values_and_streamed(
    client: QueueClient, start_worker: StartWorker, raw_redis: Redis
) -> None:
    """A message's units go to the machine's units hash and onto the stream; a later message
    without units keeps them; units that break the contract cost only themselves."""
    pubsub = raw_redis.pubsub()
    await pubsub.subscribe(live_channel("m1"))
    doc = {"timestamp": TS, "values": {"temp": 20.5, "mode": "AUTO"}, "units": {"temp": "°C"}}
    broken = message("realtime", "m1", {"timestamp": TS + 2, "values": {"temp": 21.5}})
    broken["units"] = {"temp": ["not", "text"], "rpm": None}  # a producer that breaks it
    jobs = [
        message("realtime", "m1", doc),
        message("realtime", "m1", {"timestamp": TS + 1, "values": {"temp": 21.0}}),
        broken,
    ]
    await client.enqueue_many("mqtt_realtime", jobs)
    await start_worker("mqtt_realtime", batch_size=1)

    async def written() -> bool:
        return (await client.queue_stats("mqtt_realtime")).completed == 3

    await eventually(written, timeout=20, what="the three jobs acknowledged")
    assert await raw_redis.hgetall(latest_units("m1")) == {b"temp": "°C".encode()}
    # Refreshed with the values, kept longer (the machine's TTL): a machine quiet for longer
    # than the cache keeps its units for its next values.
    ttl = await raw_redis.ttl(latest_units("m1"))
    assert await raw_redis.ttl(latest_values("m1")) < ttl <= SinkSettings().machine_ttl_s
    events: list[dict[str, object]] = []

    async def all_streamed() -> bool:
        # None for the subscription's own confirmation, too: asked again until both came.
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if msg is not None:
            events.append(json.loads(msg["data"]))
        return len(events) == 3

    await eventually(all_streamed, timeout=5, interval=0, what="the three events streamed")
    await pubsub.aclose()
    assert [e.get("units") for e in events] == [{"temp": "°C"}, None, None]
    assert json.loads((await raw_redis.hgetall(latest_values("m1")))[b"temp"]) == 21.5
