"""What the chart's MessageQueues have the operator write, for runs without an operator
(``conveyor dev``, the pipeline benchmark): each default queue's priority and its records of
finished jobs (``conveyor_messages.DEFAULT_QUEUES``; a test keeps the chart's values equal)."""

from __future__ import annotations

from conveyor_messages import DEFAULT_QUEUES

from reliable_queue import QueueClient


async def write_default_policies(client: QueueClient) -> None:
    for q in DEFAULT_QUEUES:
        await client.set_policy(
            q.name, default_priority=q.priority, done_max_count=q.finished_records
        )
