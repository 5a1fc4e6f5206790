"""``conveyor queues | workers | enqueue | dlq | policy`` as a user runs them, on real Redis."""

from __future__ import annotations

import asyncio
import json

import pytest

from reliable_queue import Job, PermanentError, QueueClient
from tests.helpers import eventually, run_cli

pytestmark = pytest.mark.integration


def test_enqueue_prints_the_id_and_queues_shows_it(redis_url: str) -> None:
    out = run_cli(
        "enqueue", "mqtt_tech", '{"firmware": "2.1"}', "--priority", "3", redis_url=redis_url
    )
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    assert job_id.isalnum()

    table = run_cli("queues", redis_url=redis_url)
    assert table.returncode == 0
    header, row = table.stdout.splitlines()
    assert header.split()[:3] == ["QUEUE", "PENDING", "PROCESSING"]
    assert row.split()[:2] == ["mqtt_tech", "1"]

    doc = json.loads(run_cli("queues", "--json", redis_url=redis_url).stdout)
    assert doc["queues"]["mqtt_tech"]["pending"] == 1
    assert doc["workers"] == "stopped"


async def test_workers_shows_the_jobs_each_live_worker_holds(
    client: QueueClient, redis_url: str
) -> None:
    assert run_cli("workers", "cli-held", redis_url=redis_url).stdout.strip() == (
        "no live worker on cli-held"
    )
    started = asyncio.Event()
    release = asyncio.Event()

    async def hold(job: Job) -> None:
        started.set()
        await release.wait()

    worker = client.worker("cli-held", hold, heartbeat_interval=0.1, worker_id="line-3:12")
    await worker.start()
    try:
        await client.enqueue("cli-held", {"n": 1})
        await started.wait()

        def held() -> bool:
            out = run_cli("workers", "cli-held", "--json", redis_url=redis_url)
            return bool(json.loads(out.stdout) == {"line-3:12": 1})

        await eventually(held, what="conveyor workers to show line-3:12 holding 1 job")
        header, row = run_cli("workers", "cli-held", redis_url=redis_url).stdout.splitlines()
        assert (header.split(), row.split()) == (["WORKER", "JOBS", "HELD"], ["line-3:12", "1"])
    finally:
        release.set()
        await worker.stop()


def test_enqueue_with_bad_json_says_how_to_fix_it(redis_url: str) -> None:
    out = run_cli("enqueue", "q", "{temp: 1}", redis_url=redis_url)
    assert out.returncode == 2
    assert out.stderr.startswith("conveyor: error: DATA is not valid JSON")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"REDIS_PORT": "six"}, 2, "REDIS_PORT=six"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, 3, "check that Redis runs and REDIS_URL"),
    ],
)
def test_bad_configuration_is_one_line_not_a_traceback(
    env: dict[str, str], code: int, message: str
) -> None:
    out = run_cli("queues", **env)
    assert out.returncode == code
    assert message in out.stderr
    assert "Traceback" not in out.stderr


async def test_dlq_list_replay_purge(client: QueueClient, redis_url: str) -> None:
    async def reject(job: Job) -> None:
        raise PermanentError(f"bad reading {job.data['v']}")

    stop = await client.start_worker("spc", reject)
    await client.enqueue_many("spc", [{"v": v} for v in range(3)])

    async def three_dead() -> bool:
        return await client.dead_letter_count("spc") == 3

    await eventually(three_dead, what="three dead letters")
    await stop()

    listing = run_cli("dlq", "list", "dead:spc", redis_url=redis_url)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[0].split() == [
        "JOB_ID",
        "FAILED_AT",
        "REASON",
        "ATTEMPTS",
        "ERROR",
    ]
    assert "PermanentError: bad reading" in listing.stdout

    doc = json.loads(run_cli("dlq", "list", "spc", "--json", redis_url=redis_url).stdout)
    assert doc["total"] == 3
    first = doc["items"][0]
    assert {"id", "data", "attempts", "error", "reason", "enqueued_at", "failed_at"} <= set(first)

    replay = run_cli("dlq", "replay", "spc", first["id"], redis_url=redis_url)
    assert replay.stdout.strip() == "replayed 1 dead letter(s)"
    assert await client.job_state("spc", first["id"]) == "pending"

    assert run_cli("dlq", "replay", "spc", redis_url=redis_url).returncode == 2  # ids or --all
    assert run_cli("dlq", "replay", "spc", "--all", redis_url=redis_url).stdout.strip() == (
        "replayed 2 dead letter(s)"
    )
    assert (await client.queue_stats("spc")).pending == 3
    assert (
        run_cli("dlq", "purge", "spc", redis_url=redis_url).stdout.strip()
        == "purged 0 dead letter(s)"
    )


def test_policy_shows_and_changes_live_settings(redis_url: str) -> None:
    shown = json.loads(run_cli("policy", "alerts", redis_url=redis_url).stdout)
    assert (shown["max_retries"], shown["backoff_base_s"], shown["lease_s"]) == (3, 2.0, 30.0)
    changed = run_cli(
        "policy", "alerts", "--concurrency", "4", "--lease-s", "10", redis_url=redis_url
    )
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["concurrency"] == 4
    bad = run_cli("policy", "alerts", "--lease-s", "0", redis_url=redis_url)
    assert bad.returncode == 2
    assert "lease_s" in bad.stderr


async def test_policy_timeout_is_cleared_with_zero(client: QueueClient, redis_url: str) -> None:
    await client.set_policy("alerts", timeout_s=2.5)  # set with --timeout-s 2.5: tests/queue
    cleared = run_cli("policy", "alerts", "--timeout-s", "0", redis_url=redis_url)
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["timeout_s"] is None
    assert (await client.get_policy("alerts")).timeout_s is None
