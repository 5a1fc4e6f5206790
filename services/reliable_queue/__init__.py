"""reliable_queue: a Redis-backed reliable job queue for asyncio.

Priorities, leases that return a crashed worker's jobs, retries with exponential backoff (an
outage of a service a handler needs postpones jobs without spending their attempts), job
timeouts, dead letters, live concurrency and statistics; every queue in one Redis Cluster slot.

    async with QueueClient.from_url("redis://localhost:6379") as client:
        await client.enqueue("alerts", {"machine": "m1"}, priority=10)
        stop = await client.start_worker("alerts", handle, concurrency=2)
        ...
        await stop()
"""

from reliable_queue.backoff import Backoff
from reliable_queue.claims import QueueOwner
from reliable_queue.client import QueueClient
from reliable_queue.connection import connect
from reliable_queue.dead_letters import DeadLetter, NewDeadLetter
from reliable_queue.errors import (
    InvalidJob,
    InvalidQueueName,
    JobTimeout,
    PermanentError,
    Postpone,
    QueueUnavailable,
    ReliableQueueError,
    Retry,
    UsageError,
)
from reliable_queue.job import PRIORITY_MAX, PRIORITY_MIN, Job
from reliable_queue.keys import validate_queue_name
from reliable_queue.policy import QueuePolicy
from reliable_queue.producing import NewJob
from reliable_queue.stats import QueueStats
from reliable_queue.working import BatchHandler, JobHandler, StopCallable, Worker

__all__ = [
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "Backoff",
    "BatchHandler",
    "DeadLetter",
    "InvalidJob",
    "InvalidQueueName",
    "Job",
    "JobHandler",
    "JobTimeout",
    "NewDeadLetter",
    "NewJob",
    "PermanentError",
    "Postpone",
    "QueueClient",
    "QueueOwner",
    "QueuePolicy",
    "QueueStats",
    "QueueUnavailable",
    "ReliableQueueError",
    "Retry",
    "StopCallable",
    "UsageError",
    "Worker",
    "connect",
    "validate_queue_name",
]
