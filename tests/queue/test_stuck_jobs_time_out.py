"""Job timeouts against a real Redis: an attempt running past the queue's timeout is cancelled,
counted as a failed attempt, retried per the policy and dead-lettered with reason ``timeout``,
and the worker takes the next job; a batch times out as a whole; a handler that ignores
cancellation is reported once and keeps its slot until it returns; a wedged worker stops
renewing the lease after the timeout plus a grace, so the reaper takes the job back, even when
the attempt before it returns late.

Lower time bounds are tight (they prove a cancellation came at the timeout, not before); upper
ones leave a loaded, shared CI runner several seconds."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Sequence

import pytest

from reliable_queue import Job, QueueClient
from reliable_queue.timeouts import run_in_thread
from tests.helpers import eventually, run_cli

pytestmark = pytest.mark.integration


async def _dead(client: QueueClient, queue: str, job_id: str) -> bool:
    return await client.job_state(queue, job_id) == "dead"


async def test_a_hanging_job_times_out_into_dead_letters_and_the_next_job_runs(
    client: QueueClient, redis_url: str
) -> None:
    set_by_cli = await asyncio.to_thread(
        run_cli,
        *("policy", "stuck", "--timeout-s", "2", "--max-retries", "1", "--backoff-base-s", "0.1"),
        redis_url=redis_url,
    )
    assert set_by_cli.returncode == 0, set_by_cli.stderr
    assert json.loads(set_by_cli.stdout)["timeout_s"] == 2.0
    attempts: list[float] = []
    finished: dict[str, float] = {}

    async def handler(job: Job) -> None:
        if job.data.get("hang"):
            attempts.append(time.monotonic())
            await asyncio.Event().wait()  # never returns; cancellable
        finished[job.id] = time.monotonic()

    # First in, first claimed; its retry goes back in line behind "next".
    await client.enqueue("stuck", {"hang": True}, job_id="hangs")
    await client.enqueue("stuck", {}, job_id="next")
    stop = await client.start_worker("stuck", handler, concurrency=1)
    try:
        await eventually(lambda: _dead(client, "stuck", "hangs"), timeout=25, what="dead letter")
    finally:
        await stop()

    assert len(attempts) == 2  # the first try and one retry, each cut at 2 s
    assert 1.9 <= attempts[1] - attempts[0] <= 8.0  # 2 s timeout + 0.1 s backoff, + slack
    # One slot: the next job ran once the stuck one was cancelled, not after its retries.
    assert attempts[0] + 1.9 <= finished["next"] < attempts[1]
    [letter] = await client.dead_letters("stuck")
    assert (letter.id, letter.reason, letter.attempts) == ("hangs", "timeout", 2)
    assert letter.error.startswith("JobTimeout: the attempt ran longer than the timeout of 2s")
    assert "conveyor policy stuck --timeout-s" in letter.error  # what to do
    stats = await client.queue_stats("stuck")
    assert (stats.completed, stats.retried, stats.dead_lettered) == (1, 1, 1)


async def test_a_batch_times_out_as_a_whole_under_the_workers_default(client: QueueClient) -> None:
    await client.set_policy("batched", max_retries=0)  # no timeout in the policy

    async def handler(jobs: Sequence[Job]) -> None:
        if any(j.data.get("hang") for j in jobs):
            await asyncio.Event().wait()

    await client.enqueue_many("batched", [{"hang": i == 1} for i in range(3)])
    stop = await client.start_worker("batched", handler, batch_size=3, timeout_s=0.5)
    try:

        async def all_dead() -> bool:
            return await client.dead_letter_count("batched") == 3

        await eventually(all_dead, timeout=10, what="the whole batch dead-lettered")
    finally:
        await stop()
    letters = await client.dead_letters("batched")
    assert {d.reason for d in letters} == {"timeout"}
    assert all("its batch ran longer than the timeout of 0.5s" in d.error for d in letters)


async def test_a_handler_ignoring_cancellation_keeps_its_slot_and_is_reported_once(
    client: QueueClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reliable_queue")
    await client.set_policy("deaf", timeout_s=1, max_retries=0)
    seen: dict[str, float] = {}
    release = threading.Event()

    async def handler(job: Job) -> None:
        if job.id != "deaf":
            seen["next started"] = time.monotonic()
            return
        try:  # blocking code in a thread, waited for even when cancelled: asyncio cannot stop it
            await run_in_thread(release.wait, 30)
        finally:  # cancelled: once the thread has returned
            seen["deaf returned"] = time.monotonic()

    await client.enqueue("deaf", {}, job_id="deaf", priority=1)
    await client.enqueue("deaf", {}, job_id="next")
    started = time.monotonic()
    stop = await client.start_worker("deaf", handler, concurrency=1)
    try:
        await eventually(lambda: _dead(client, "deaf", "deaf"), timeout=10, what="timed out")
        # Recorded after the timeout plus the second it had to stop, while it still runs...
        assert 1.9 <= time.monotonic() - started <= 7.0
        assert "deaf returned" not in seen
        await asyncio.sleep(0.3)  # a negative check: give a wrongly freed slot time to claim
        assert "next started" not in seen  # ...and its slot is still taken
        assert await client.job_state("deaf", "next") == "pending"
        release.set()

        async def next_ran() -> bool:
            return "next started" in seen

        await eventually(next_ran, timeout=10, what="the next job, once the handler returned")
    finally:
        release.set()
        await stop()
    assert seen["next started"] >= seen["deaf returned"]
    [letter] = await client.dead_letters("deaf")
    assert letter.reason == "timeout"
    reports = [r.getMessage() for r in caplog.records if "ignores cancellation" in r.getMessage()]
    assert len(reports) == 1, reports
    assert "queue deaf" in reports[0]
    assert "job deaf ran past its 1s timeout" in reports[0]
    assert "Make the handler cancellable" in reports[0]


async def test_a_wedged_worker_stops_renewing_the_lease_after_timeout_plus_grace(
    client: QueueClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="reliable_queue")
    await client.set_policy("wedged", timeout_s=0.5, lease_s=1, max_recoveries=5)

    async def hang(job: Job) -> None:
        await asyncio.Event().wait()

    worker = client.worker("wedged", hang, heartbeat_interval=0.1, drain_timeout=0.2)
    worker.options = dataclasses.replace(worker.options, timeout_grace=0.5)

    async def never_records(job: Job, exc: Exception) -> None:
        await asyncio.Event().wait()

    # The fault: recording the timed-out attempt never ends (a wedged worker) while the
    # heartbeat, which renews leases, goes on running.
    monkeypatch.setattr(worker, "_settle_failure", never_records)
    await worker.start()
    await client.enqueue("wedged", {}, job_id="w1")
    started = time.monotonic()
    try:

        async def running() -> bool:
            return await client.job_state("wedged", "w1") == "processing"

        await eventually(running, timeout=2, what="the job claimed")

        async def back_in_line() -> bool:
            return await client.job_state("wedged", "w1") == "pending"

        await eventually(back_in_line, timeout=12, what="the reaper returns the job")
        took = time.monotonic() - started
    finally:
        await worker.stop()
    # Renewed until 0.5 s + 0.5 s; its last lease of 1 s then lapses (renewals every 1/3 s).
    assert 1.5 <= took <= 8.5, took
    assert (await client.queue_stats("wedged")).recovered == 1
    ended = [r.getMessage() for r in caplog.records if "no longer renewed" in r.getMessage()]
    assert ended == [
        "job w1 on wedged is past its timeout plus 0.5s and still not settled (is the worker "
        "wedged?): its lease is no longer renewed, and the reaper returns the job to the queue "
        "when it lapses"
    ]


async def test_a_late_return_of_a_timed_out_attempt_leaves_its_retrys_lease_deadline(
    client: QueueClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="reliable_queue")
    monkeypatch.setattr("reliable_queue.timeouts.CANCEL_WAIT_S", 0.2)
    await client.set_policy(
        "twice", timeout_s=0.5, lease_s=1, max_retries=1, backoff_base_s=0.1, max_recoveries=5
    )
    retry_started = threading.Event()

    async def handler(job: Job) -> None:
        if job.attempt == 1:
            # Ignores cancellation: waits for its thread, which returns once the retry runs.
            await run_in_thread(retry_started.wait, 30)
            return
        retry_started.set()
        await asyncio.Event().wait()

    worker = client.worker("twice", handler, concurrency=2, heartbeat_interval=0.1)
    worker.options = dataclasses.replace(
        worker.options, timeout_grace=1.0, idle_block=0.1, drain_timeout=0.2
    )
    settle_failure = worker._settle_failure

    async def wedged_on_the_retry(job: Job, exc: Exception) -> None:
        if job.attempt == 1:
            await settle_failure(job, exc)
        else:
            await asyncio.Event().wait()

    # The first attempt times out and is retried in the other slot; its handler returns while
    # the retry runs. The retry times out too, and recording it never ends (a wedged worker):
    # its lease must still stop being renewed at its own timeout plus the grace.
    monkeypatch.setattr(worker, "_settle_failure", wedged_on_the_retry)
    await worker.start()
    await client.enqueue("twice", {}, job_id="t1")
    try:

        async def recovered() -> bool:
            return (await client.queue_stats("twice")).recovered == 1

        await eventually(recovered, timeout=15, what="the retry's lease lapsed and reaped")
    finally:
        await worker.stop()
    assert retry_started.is_set()
    ended = [r.getMessage() for r in caplog.records if "no longer renewed" in r.getMessage()]
    assert any(m.startswith("job t1 on twice is past its timeout") for m in ended), ended
