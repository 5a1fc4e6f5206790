"""``conveyor work``: runs a handler given as module:function, drains on SIGTERM."""

from __future__ import annotations

import json

import pytest
import redis

from reliable_queue import QueueClient
from tests.helpers import eventually, run_cli, start_cli
from tests.servers import RedisServer

pytestmark = pytest.mark.integration


async def test_worker_processes_then_exits_cleanly_on_sigterm(
    client: QueueClient, redis_url: str
) -> None:
    ids = await client.enqueue_many("cli-work", [{"seconds": 0.01} for _ in range(50)])
    worker = start_cli(
        "work",
        "--queue",
        "cli-work",
        "--concurrency",
        "4",
        "--handler",
        "tests.queue.handlers:record",
        redis_url=redis_url,
    )
    r = redis.Redis.from_url(redis_url)
    try:

        async def done() -> bool:
            return int(r.llen("test:processed")) == 50

        await eventually(done, timeout=30, what="50 jobs processed")
    finally:
        code = worker.stop()
        r.close()
    assert code == 0, worker.output()
    logs = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    assert any(e["message"].startswith("worker started on queue cli-work") for e in logs)
    assert any(e["message"] == "worker on cli-work stopped" for e in logs)
    assert all(e.get("queue") == "cli-work" for e in logs if "worker" in e["message"])
    assert len(ids) == 50


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("nocolon", "write it as module:function"),
        ("no_such_module:f", "cannot import 'no_such_module'"),
        ("tests.queue.handlers:missing", "has no attribute 'missing'"),
        ("json:dumps", "must be an async function"),
    ],
)
def test_bad_handler_is_reported_before_start(redis_url: str, handler: str, message: str) -> None:
    out = run_cli("work", "--queue", "q", "--handler", handler, redis_url=redis_url)
    assert out.returncode == 2
    assert message in out.stderr


@pytest.mark.parametrize(
    ("queue", "expected"),
    [("alerts", 1), ("mqtt_realtime", 3), ("mqtt_spc", 2), ("mqtt_tech", 1), ("custom", 1)],
)
def test_default_concurrency_follows_the_queue(queue: str, expected: int) -> None:
    from conveyor.work_command import default_concurrency

    assert default_concurrency(queue) == expected


async def test_a_worker_started_before_its_redis_waits_for_it(own_redis: RedisServer) -> None:
    # Pods of one release start together (seen on kind): the worker waits for Redis.
    own_redis.stop()
    worker = start_cli(
        "work",
        "--queue",
        "late",
        "--handler",
        "tests.queue.handlers:record",
        redis_url=own_redis.url,
        REDIS_STARTUP_WAIT_S="60",
    )
    try:
        # The subject, told only by its log: it has no probes until Redis answers.
        await eventually(lambda: "waiting up to" in worker.output(), what="the worker waits")
        assert worker.proc.poll() is None, worker.output()
        own_redis.start()
        async with QueueClient.from_url(own_redis.url) as client:
            await client.enqueue("late", {"seconds": 0})
        r = redis.Redis.from_url(own_redis.url)

        async def done() -> bool:
            return int(r.llen("test:processed")) == 1

        await eventually(done, timeout=30, what="the job, once Redis is up")
        r.close()
    finally:
        assert worker.stop() == 0, worker.output()


def test_without_a_wait_a_missing_redis_is_reported_at_once(own_redis: RedisServer) -> None:
    own_redis.stop()
    out = run_cli("work", "--queue", "q", redis_url=own_redis.url, REDIS_STARTUP_WAIT_S="0")
    assert out.returncode == 3
    assert "check that Redis runs and REDIS_URL points at it" in out.stderr


def test_help_states_the_write_budget_the_worker_uses() -> None:
    """`conveyor work --help` writes the share out (importing the worker there would slow every
    command); it must be the one the processors use."""
    from conveyor_worker.processors import ISOLATE_SHARE

    out = run_cli("work", "--help")
    assert out.returncode == 0, out.stderr
    assert f"{ISOLATE_SHARE:.0%} of the batch's timeout" in " ".join(out.stdout.split())


@pytest.mark.parametrize(
    ("env", "expected"), [({}, 50), ({"WORKER_BATCH_SIZE": "7"}, 7)], ids=["queue's", "set"]
)
async def test_the_batch_size_is_the_queues_own_unless_set(
    redis_url: str, env: dict[str, str], expected: int
) -> None:
    worker = start_cli("work", "--queue", "alerts", redis_url=redis_url, **env)
    try:
        await eventually(
            lambda: "worker started on queue alerts" in worker.output(),
            timeout=30,
            what="the alerts worker started",
            detail=worker.output,
        )
    finally:
        worker.stop()
    assert f"with concurrency 1, batches of up to {expected}" in worker.output()
