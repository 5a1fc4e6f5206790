"""Redis memory per machine, per queued job and per dead letter stays within the budget
docs/architecture.md states (section "Memory budget", under "Bounds").

Machines go the real way: payloads through the ingest parser, jobs through real workers running
the built-in processors (realtime, tech, SPC) into a real Redis; what stays once the queues are
deleted is the plant state those machines cost. Figures are Redis ``used_memory`` deltas
(allocator bytes), averaged over thousands of items so the allocator's noise averages out.
Run with ``-s`` to see the table:

    CI=true python -m pytest tests/queue/test_memory_budget.py -s -q -p no:cacheprovider
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import pytest
from conveyor_ingestor import parse_message
from conveyor_worker import SinkSettings, build_worker
from redis.asyncio import Redis

from reliable_queue import NewDeadLetter, NewJob, QueueClient, Worker
from reliable_queue.dead_letters import DeadLetterCap
from reliable_queue.keys import QueueKeys
from tests.helpers import eventually, worker_context

pytestmark = pytest.mark.integration

MACHINES = 2000
SIGNALS = 10
TECH_KEYS = 20
CHARACTERISTICS = ("bore", "depth")
WINDOW = SinkSettings().spc_window
FULL_WINDOW_MACHINES = 5
JOBS = 10_000
LETTERS = 5_000
TS = 1_750_000_000_000

# The budget, as docs/architecture.md states it (bytes of Redis memory).
BUDGET_MACHINE = 16 * 1024
"""One machine of SIGNALS realtime signals, a tech config of TECH_KEYS keys and the
CHARACTERISTICS with full SPC windows (WORKER_SPC_WINDOW points each)."""
BUDGET_SPC_POINT = 80
"""One more point in an SPC window (one value; a subgroup adds about 20 bytes per value)."""


def budget_job(payload: float) -> float:
    """A queued job: its payload (the JSON the ingestor makes) as the allocator rounds it (up
    to a quarter more), and about 250 bytes of queue entries."""
    return 1.25 * payload + 256


def budget_letter(strings: float) -> float:
    """A dead letter: its payload and error text, rounded, and about 350 bytes of entries,
    metadata and ids."""
    return 1.25 * strings + 384


def _message(kind: Any, machine: str, doc: Any) -> dict[str, Any]:
    """A job as the ingestor makes it, through the real parser."""
    parsed = parse_message(
        kind,
        machine=machine,
        topic=f"{machine}/{kind}",
        payload=json.dumps(doc).encode(),
        received_at=TS,
    )
    return dict(parsed)


def _realtime(machine: str, n: int) -> dict[str, Any]:
    values = {f"signal_{s:02d}": 20.0 + s + n / 10 for s in range(SIGNALS)}
    return _message("realtime", machine, {"timestamp": TS + n, "values": values})


def _tech(machine: str) -> dict[str, Any]:
    config: dict[str, Any] = {f"param_{k:02d}": k * 1.5 for k in range(TECH_KEYS - 2)}
    config |= {"program": "P-4711-rev-B", "tool": "drill-12mm", "timestamp": TS}
    return _message("tech", machine, config)


def _spc(machine: str, points: int) -> dict[str, Any]:
    samples = [
        {"characteristic": c, "value": 10.0 + (i % 7) / 100, "timestamp": TS + i}
        for i in range(points)
        for c in CHARACTERISTICS
    ]
    return _message("spc", machine, samples)


async def _used(redis: Redis) -> int:
    """Allocator bytes, less the clients' buffers (a large enqueue leaves a query buffer that
    Redis shrinks later: not data)."""
    info = await redis.info("memory")
    return int(info["used_memory"]) - int(info["mem_clients_normal"])


async def _key_bytes(redis: Redis, *patterns: str) -> int:
    """MEMORY USAGE (every element counted) of the keys matching ``patterns``, summed."""
    keys = [k for p in patterns async for k in redis.scan_iter(match=p, count=1000)]
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(int(n or 0) for n in await pipe.execute())


async def _drain(client: QueueClient, queues: tuple[str, ...]) -> None:
    async def empty() -> bool:
        for q in queues:
            s = await client.queue_stats(q)
            if s.pending or s.processing or s.delayed:
                return False
        return True

    await eventually(empty, timeout=60, interval=0.05, what=f"{queues} drained")


async def _delete_queues(client: QueueClient, queues: tuple[str, ...]) -> None:
    for q in queues:
        await client.delete_queue(q)


async def test_redis_memory_per_machine_job_and_dead_letter_is_within_budget(
    client: QueueClient, redis_url: str, raw_redis: Redis
) -> None:
    started = time.monotonic()
    figures: dict[str, float] = {}
    queues = ("mqtt_realtime", "mqtt_tech", "mqtt_spc", "alerts")
    machines = [f"press-{m:05d}" for m in range(MACHINES)]

    # --- machines: one realtime, one tech and one SPC message each, by real workers ----------
    await client.ping()
    before = await _used(raw_redis)
    for queue, jobs in (
        ("mqtt_realtime", [_realtime(m, 0) for m in machines]),
        ("mqtt_tech", [_tech(m) for m in machines]),
        ("mqtt_spc", [_spc(m, 1) for m in machines]),
    ):
        await client.enqueue_many(queue, jobs)
    workers: list[Worker] = []
    async with worker_context(client, redis_url) as ctx:
        try:
            for queue in queues[:3]:
                worker = build_worker(
                    client=client,
                    queue=queue,
                    ctx=ctx,
                    concurrency=8,
                    batch_size=100,
                    drain_timeout=5,
                )
                assert worker is not None
                await worker.start()
                workers.append(worker)
            await _drain(client, queues[:3])
            await _delete_queues(client, queues)
            figures["per machine, 1-point SPC windows"] = per_machine_one_point = (
                await _used(raw_redis) - before
            ) / MACHINES
            figures["per machine, its keys' MEMORY USAGE"] = (
                await _key_bytes(raw_redis, "conveyor:*{press-*") / MACHINES
            )

            # --- SPC windows filled to WORKER_SPC_WINDOW points on a few machines ------------
            full = machines[:FULL_WINDOW_MACHINES]
            one_point = await _key_bytes(raw_redis, *(f"conveyor:spc:{{{m}}}:*" for m in full))
            await client.enqueue_many("mqtt_spc", [_spc(m, WINDOW - 1) for m in full])
            await _drain(client, ("mqtt_spc",))
        finally:
            for worker in workers:
                await worker.stop()
    await _delete_queues(client, queues)
    full_windows = await _key_bytes(raw_redis, *(f"conveyor:spc:{{{m}}}:*" for m in full))
    points = FULL_WINDOW_MACHINES * len(CHARACTERISTICS) * (WINDOW - 1)
    figures["per SPC window point"] = per_point = (full_windows - one_point) / points
    figures["per machine, full SPC windows"] = per_machine = (
        per_machine_one_point + len(CHARACTERISTICS) * (WINDOW - 1) * per_point
    )

    # --- queued jobs: realtime messages as the ingestor enqueues them -------------------------
    jobs = [_realtime(machines[i % MACHINES], i) for i in range(JOBS)]
    payload = sum(len(json.dumps(j, separators=(",", ":"))) for j in jobs) / JOBS
    before = await _used(raw_redis)
    await client.enqueue_many("budget_jobs", [NewJob(j) for j in jobs])
    assert (await client.queue_stats("budget_jobs")).pending == JOBS
    per_job = (await _used(raw_redis) - before) / JOBS
    figures["per queued job (payload bytes)"] = payload
    figures["per queued job"] = per_job
    await _delete_queues(client, ("budget_jobs",))

    # --- dead letters: rejected payloads as dead:ingest keeps them ---------------------------
    letters = [
        NewDeadLetter(
            data={
                "topic": f"{machines[i % MACHINES]}/realtime",
                "payload": f"{i:06d}" + "x" * 1018,
                "payload_bytes": 1024,
                "truncated": False,
                "received_at": TS,
            },
            reason="not_json",
            error="payload is not JSON: Expecting value at 0 (route +/realtime expects a "
            "realtime message)",
        )
        for i in range(LETTERS)
    ]
    letter_bytes = sum(len(json.dumps(d.data)) + len(d.error) for d in letters) / LETTERS
    cap = DeadLetterCap(max_bytes=1 << 40)  # no eviction; keeps the running byte total
    before = await _used(raw_redis)
    await client.add_dead_letters("budget_dead", letters, cap=cap)
    per_letter = (await _used(raw_redis) - before) / LETTERS
    counters = QueueKeys.for_queue("budget_dead").counters
    counted = int(cast(bytes, await raw_redis.hget(counters, "dead_bytes")))
    figures["per dead letter (payload + error bytes)"] = letter_bytes
    figures["per dead letter"] = per_letter
    figures["per dead letter, as the byte cap counts it"] = counted / LETTERS
    figures["seconds"] = time.monotonic() - started

    print("\nRedis memory budget (used_memory deltas, bytes):")
    for name, value in figures.items():
        print(f"  {name:45} {value:10,.0f}")

    assert per_machine <= BUDGET_MACHINE
    assert per_point <= BUDGET_SPC_POINT
    assert per_job <= budget_job(payload)
    assert per_letter <= budget_letter(letter_bytes)
    # The byte cap of dead:ingest counts at least what Redis really spends.
    assert counted / LETTERS >= per_letter * 0.97
