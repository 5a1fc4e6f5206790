"""The default queues of the original design, written once.

Each default queue is fed by one MQTT route (a topic filter and the kind of message it carries)
and worked by one processor. Everything that knows the default queues reads this table:

- the ingestor's default routes (``conveyor_ingestor.DEFAULT_ROUTES``);
- the worker's processors (``conveyor_worker.processor_for``: a queue's processor is its kind's);
- ``conveyor work`` (a queue's default concurrency, whether it writes InfluxDB) and
  ``conveyor dev`` (the workers it starts).

What cannot import Python is checked against it by tests/unit/test_default_queues_are_written_
once.py: the chart's default MessageQueues (``queues`` in charts/conveyor/values.yaml, and the
chart README generated from it), the processors table of docs/workers.md and the routes shown
in docs/ingestor.md. Change a queue here first, then what that test names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["realtime", "spc", "tech", "alert"]
"""The kinds of message: each has its payload shapes (ingestor) and its processor (worker)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DefaultQueue:
    """One default queue, the route that feeds it and what its processor does."""

    name: str
    """The queue's name in Redis (``conveyor work --queue NAME``)."""
    priority: int
    """Default priority of its jobs: its MessageQueue's ``spec.priority`` in the chart, which
    the operator keeps in the queue's policy (``default_priority``; ``conveyor dev`` writes it
    too). The default route sets none, so this is the one that applies."""
    concurrency: int
    """Jobs (or batches) a worker runs at once unless told otherwise."""
    use: str
    """What it carries, in a few words."""
    topic_filter: str
    """MQTT filter of the default route into it; the machine id is the ``+`` level."""
    kind: Kind
    """The kind of message the route expects and the processor handles."""
    writes_influx: bool
    """Whether its processor writes points to InfluxDB."""
    batch_size: int
    """Jobs its processor takes per batch unless ``WORKER_BATCH_SIZE`` says otherwise: realtime
    values in InfluxDB-sized writes; alerts, delivered one after another, in small batches."""
    finished_records: int = 1000
    """Records of finished jobs the queue keeps, to look up (``conveyor`` job state, the
    gateway): its MessageQueue's ``spec.retention.finished.maxCount`` in the chart. None for
    realtime values: thousands arrive a second, so a record would be gone within the second,
    and keeping it costs Redis about 2 µs a message (``hack/bench.sh pipeline``)."""


DEFAULT_QUEUES: tuple[DefaultQueue, ...] = (
    DefaultQueue(
        name="alerts",
        priority=10,
        concurrency=1,
        use="critical machine alerts",
        topic_filter="+/alerts",
        kind="alert",
        writes_influx=False,
        batch_size=50,
    ),
    DefaultQueue(
        name="mqtt_realtime",
        priority=5,
        concurrency=3,
        use="realtime machine values",
        topic_filter="+/realtime",
        kind="realtime",
        writes_influx=True,
        batch_size=1000,
        finished_records=0,
    ),
    DefaultQueue(
        name="mqtt_spc",
        priority=3,
        concurrency=2,
        use="statistical process control samples",
        topic_filter="+/spc",
        kind="spc",
        writes_influx=True,
        batch_size=200,
    ),
    DefaultQueue(
        name="mqtt_tech",
        priority=1,
        concurrency=1,
        use="technical configuration",
        topic_filter="+/tech",
        kind="tech",
        writes_influx=True,
        batch_size=200,
    ),
)
"""In routing order (the first matching route wins; these filters never overlap)."""


def default_queue(name: str) -> DefaultQueue | None:
    """The default queue called ``name``, or None for any other queue."""
    return next((q for q in DEFAULT_QUEUES if q.name == name), None)


def queue_for_kind(kind: Kind) -> DefaultQueue:
    """The default queue that carries messages of ``kind`` (each kind has one)."""
    return next(q for q in DEFAULT_QUEUES if q.kind == kind)
