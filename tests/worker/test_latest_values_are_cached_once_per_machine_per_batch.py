"""The realtime processor's Redis side, against a real Redis: per machine of a batch, one cache
call with the newest value of each signal (a late older value in the same batch, or one already
cached, never wins) and one live-stream event; a script Redis lost (a restart, SCRIPT FLUSH) is
loaded again."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conveyor_plant.keys import latest_times, latest_values
from conveyor_worker import Context
from conveyor_worker.processors import process_realtime
from redis.asyncio import Redis

from reliable_queue import Job, QueueClient
from tests.helpers import eventually, worker_context
from tests.worker.conftest import message

pytestmark = pytest.mark.integration
TS = 1_750_000_000_000


def job(n: int, data: dict[str, Any]) -> Job:
    return Job(
        id=f"j{n}", queue="mqtt_realtime", data=data, priority=5, attempt=1, enqueued_at=0, token=""
    )


async def events_of(raw_redis: Redis, jobs: list[Job], ctx: Context) -> list[dict[str, Any]]:
    pubsub = raw_redis.pubsub()
    await pubsub.psubscribe("conveyor:live:*")
    assert await process_realtime(ctx, jobs) == {}
    events: list[dict[str, Any]] = []

    async def quiet() -> bool:  # 0.3 s without an event after the first: no more than expected
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3)
        if msg is not None:
            events.append(json.loads(msg["data"]))
        return msg is None and bool(events)

    await eventually(
        quiet, timeout=3, interval=0, what="the live stream quiet", detail=lambda: f"{events}"
    )
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    return events


async def test_newest_value_per_signal_in_one_call_and_one_event_per_machine(
    client: QueueClient, redis_url: str, raw_redis: Redis
) -> None:
    await raw_redis.hset(latest_values("a"), mapping={"old": "1.0"})
    await raw_redis.hset(latest_times("a"), mapping={"old": str(TS + 100)})
    jobs = [
        job(1, message("realtime", "a", {"timestamp": TS + 10, "values": {"t": 3.0, "p": 1}})),
        job(2, message("realtime", "b", {"timestamp": TS + 1, "values": {"t": 7.0}})),
        job(3, message("realtime", "a", {"timestamp": TS + 5, "values": {"t": 2.0, "old": 9}})),
        job(4, message("realtime", "a", {"timestamp": TS + 10, "values": {"p": 2, "s": "ON"}})),
    ]
    async with worker_context(client, redis_url) as ctx:
        events = await events_of(raw_redis, jobs, ctx)
    assert sorted(e["machine"] for e in events) == ["a", "b"], events
    [a] = [e for e in events if e["machine"] == "a"]
    assert a == {
        "kind": "realtime",
        "machine": "a",
        "ts": TS + 10,
        "values": {"t": 3.0, "p": 2, "old": 9, "s": "ON"},  # equal times: the later job's
    }
    cached = await raw_redis.hgetall(latest_values("a"))
    assert {k: json.loads(v) for k, v in cached.items()} == {
        b"t": 3.0,
        b"p": 2,
        b"old": 1.0,  # cached at TS + 100: newer than this batch's
        b"s": "ON",
        b"_ts": TS + 10,
    }
    assert 0 < await raw_redis.ttl(latest_times("a")) <= 86_400
    assert await raw_redis.hget(latest_values("b"), "t") == b"7.0"


async def test_a_script_redis_lost_is_loaded_again(
    client: QueueClient, redis_url: str, raw_redis: Redis
) -> None:
    first = message("realtime", "r", {"timestamp": TS, "values": {"t": 1.0}})
    second = message("realtime", "r", {"timestamp": TS + 1, "values": {"t": 2.0}})
    async with worker_context(client, redis_url) as ctx:
        await events_of(raw_redis, [job(1, first)], ctx)
        await raw_redis.script_flush()
        events = await events_of(raw_redis, [job(2, second)], ctx)
    assert events[-1]["values"] == {"t": 2.0}
    assert await raw_redis.hget(latest_values("r"), "t") == b"2.0"
