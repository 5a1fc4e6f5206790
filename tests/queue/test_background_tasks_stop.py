"""Background tasks that talk to Redis (the gateway's live stream and stats sampling, a
worker's heartbeat) end when stopped even when a cancellation is swallowed on the way, as
redis-py can do when it lands inside a Redis call: the cancellation is sent again until the
task has ended. (A gateway whose shutdown waited on such a task hung for good.)"""

from __future__ import annotations

import asyncio

from reliable_queue.cancelling import cancel_and_wait


async def test_a_task_that_swallows_its_cancellation_is_stopped_anyway() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # carries on, still marked as cancelling

    async def polite() -> None:
        await asyncio.sleep(10)

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(polite())]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(*tasks, again_after_s=0.05), timeout=5)
    assert swallowed == 1
    assert all(task.cancelled() for task in tasks)
