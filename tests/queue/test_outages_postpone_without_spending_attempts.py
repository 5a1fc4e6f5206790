"""An outage of a service the handler needs (``raise Postpone``) is not the job's failure: the
job is tried again later with its attempts kept, and the worker claims nothing meanwhile (the
outage would fail those jobs too), for as long as the queue's ``outage_max_s`` after the job's
first postponement. Past it, outages count as attempts, so a job that breaks the service every
time still reaches its dead letter."""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from reliable_queue import Job, JobHandler, Postpone, QueueClient, Worker
from reliable_queue.keys import QueueKeys
from tests.helpers import eventually

pytestmark = pytest.mark.integration


async def work_until(
    client: QueueClient, handle: JobHandler, done: Callable[[], Awaitable[bool]], what: str
) -> Worker:
    """A worker of queue ``sink`` (concurrency 1) running ``handle`` until ``done``; stopped."""
    worker = client.worker("sink", handle, concurrency=1)
    await worker.start()
    try:
        await eventually(done, timeout=60, what=what)
    finally:
        await worker.stop()
    return worker


def job_is(client: QueueClient, job_id: str, state: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await client.job_state("sink", job_id) == state

    return check


async def test_a_job_rides_out_an_outage_longer_than_its_retries(
    client: QueueClient, raw_redis: Redis
) -> None:
    """An outage through 4 tries (after which the default policy dead-letters a failing job):
    the job completes at its fifth try, still at attempt 1, and the tries came farther and
    farther apart (the worker's pause doubles from 1 s, jittered down to half)."""
    tries: list[tuple[int, float]] = []

    async def handle(job: Job) -> None:
        tries.append((job.attempt, time.monotonic()))
        if len(tries) <= 4:
            raise Postpone("influxdb:8086 refused the connection")

    await client.enqueue("sink", {"n": 1}, job_id="j1")
    what = "the job finished after the outage"
    worker = await work_until(client, handle, job_is(client, "j1", "finished"), what)
    assert [attempt for attempt, _ in tries] == [1] * 5  # no try spent an attempt
    assert worker.counters.postponed == 4
    assert (worker.counters.failed, worker.counters.dead_lettered) == (0, 0)
    assert await client.dead_letter_count("sink") == 0
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(tries)]
    assert all(gap >= 0.5 * 2**i - 0.05 for i, gap in enumerate(gaps)), gaps
    # Nothing is left of the outage in Redis once the job is done.
    assert await raw_redis.exists(QueueKeys.for_queue("sink").outages) == 0


async def test_the_worker_claims_nothing_while_an_outage_pauses_it(client: QueueClient) -> None:
    """A job queued while the worker pauses for an outage waits for the pause's end, though
    the worker has a free slot (the outage would fail it too); the postponed job kept its place
    in line, before it."""
    tried: dict[str, float] = {}
    order: list[str] = []

    async def handle(job: Job) -> None:
        tried.setdefault(job.id, time.monotonic())
        order.append(job.id)
        if order == ["first"]:
            await client.enqueue("sink", {"n": 2}, job_id="second")
            raise Postpone("influxdb:8086 refused the connection", delay=2.0)

    await client.enqueue("sink", {"n": 1}, job_id="first")

    async def both_done() -> bool:
        return (await client.queue_stats("sink")).completed == 2

    await work_until(client, handle, both_done, "both jobs completed")
    assert tried["second"] - tried["first"] >= 2.0 - 0.05, tried
    assert order == ["first", "first", "second"]


async def test_past_the_outage_budget_outages_count_as_attempts(
    client: QueueClient, raw_redis: Redis
) -> None:
    """With ``outage_max_s`` 0 every outage is a failed attempt: the default 3 retries
    (shortened here), then a dead letter that quotes the outage."""
    await client.set_policy("sink", outage_max_s=0, backoff_base_s=0.1, max_retries=2)
    attempts: list[int] = []

    async def handle(job: Job) -> None:
        attempts.append(job.attempt)
        raise Postpone("InfluxDB at http://influxdb:8086 answered HTTP 401: unauthorized")

    await client.enqueue("sink", {"n": 1}, job_id="j1")
    what = "the job dead-lettered after its attempts"
    worker = await work_until(client, handle, job_is(client, "j1", "dead"), what)
    assert attempts == [1, 2, 3]
    assert worker.counters.postponed == 0
    [letter] = await client.dead_letters("sink")
    assert letter.reason == "retries_exhausted"
    assert letter.attempts == 3
    assert "answered HTTP 401" in letter.error
    assert await raw_redis.exists(QueueKeys.for_queue("sink").outages) == 0


async def test_a_job_postponed_past_its_budget_starts_spending_attempts(
    client: QueueClient,
) -> None:
    """The budget runs from a job's first postponement: postponed while within it, an
    attempt per try once past it."""
    await client.set_policy("sink", outage_max_s=2, backoff_base_s=0.1, max_retries=1)
    tries: list[tuple[int, float]] = []

    async def handle(job: Job) -> None:
        tries.append((job.attempt, time.monotonic()))
        raise Postpone("redis:6379 did not answer", delay=0.3)

    await client.enqueue("sink", {"n": 1}, job_id="j1")
    what = "the job dead-lettered once past its budget"
    worker = await work_until(client, handle, job_is(client, "j1", "dead"), what)
    first = tries[0][1]
    within = [attempt for attempt, at in tries if at - first < 1.9]
    assert len(within) >= 3, tries  # postponed every 0.3 s while within the budget
    assert set(within) == {1}, tries  # its attempt kept
    assert [attempt for attempt, _ in tries][-2:] == [1, 2], tries  # then 2 attempts, dead
    assert worker.counters.postponed == len(tries) - 2


def test_a_postponements_delay_is_bounded() -> None:
    for delay in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="delay is seconds from 0 up"):
            Postpone("away", delay=delay)
