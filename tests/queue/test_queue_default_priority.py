"""A queue's default priority (its policy's ``default_priority``, a MessageQueue's
``spec.priority``) is what a job enqueued without a priority of its own takes, in every way it
can be enqueued; a job's own priority wins; a change applies to the next enqueue."""

from __future__ import annotations

import pytest

from reliable_queue import Job, NewJob, QueueClient, UsageError
from tests.helpers import eventually

pytestmark = pytest.mark.integration


async def _drain(client: QueueClient, queue: str, n: int) -> list[Job]:
    seen: list[Job] = []

    async def take(job: Job) -> None:
        seen.append(job)

    stop = await client.start_worker(queue, take, concurrency=1)
    await eventually(lambda: len(seen) == n, what=f"{n} jobs of {queue} processed")
    await stop()
    return seen


async def test_jobs_without_a_priority_take_the_queues_default(client: QueueClient) -> None:
    await client.set_policy("prio-default", default_priority=7)
    await client.enqueue("prio-default", {"how": "enqueue"}, job_id="one")
    await client.enqueue_many("prio-default", [{"how": "many"}], delay=0)
    await client.enqueue_many("prio-default", [NewJob({"how": "newjob"}, job_id="nj")])
    await client.enqueue("prio-default", {"how": "delayed"}, delay=0.05, job_id="later")
    await client.enqueue("prio-default", {"how": "own"}, priority=-2, job_id="own")
    jobs = await _drain(client, "prio-default", 5)
    assert {j.data["how"]: j.priority for j in jobs} == {
        "enqueue": 7,
        "many": 7,
        "newjob": 7,
        "delayed": 7,
        "own": -2,
    }


async def test_the_default_orders_jobs_against_explicit_priorities(client: QueueClient) -> None:
    await client.set_policy("prio-order", default_priority=5)
    await client.enqueue_many("prio-order", [{"p": "low"}] * 3, priority=1)
    await client.enqueue_many("prio-order", [{"p": "default"}] * 3)
    await client.enqueue_many("prio-order", [{"p": "high"}] * 3, priority=9)
    jobs = await _drain(client, "prio-order", 9)
    assert [j.data["p"] for j in jobs] == ["high"] * 3 + ["default"] * 3 + ["low"] * 3


async def test_a_queue_without_a_policy_defaults_to_zero_and_changes_apply(
    client: QueueClient,
) -> None:
    await client.enqueue("prio-live", {"n": 1}, job_id="before")
    await client.set_policy("prio-live", default_priority=-40)
    await client.enqueue("prio-live", {"n": 2}, job_id="after")
    jobs = await _drain(client, "prio-live", 2)
    assert {j.id: j.priority for j in jobs} == {"before": 0, "after": -40}


async def test_an_out_of_range_default_is_refused_with_the_field_named(
    client: QueueClient,
) -> None:
    with pytest.raises(UsageError, match="default_priority"):
        await client.set_policy("prio-bad", default_priority=5000)
