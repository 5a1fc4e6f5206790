"""conveyor_messages: what the ingestor and the worker agree on without importing each other.

The message contract (``contract``: the data of a job of each kind), the default queues
(``DEFAULT_QUEUES``: each queue's route, kind of message, priority, concurrency and
processor's sinks) and the kinds of message (``Kind``). It imports nothing of
Conveyor; every service and the CLI may import it.
"""

from conveyor_messages.queues import (
    DEFAULT_QUEUES,
    DefaultQueue,
    Kind,
    default_queue,
    queue_for_kind,
)

__all__ = ["DEFAULT_QUEUES", "DefaultQueue", "Kind", "default_queue", "queue_for_kind"]
