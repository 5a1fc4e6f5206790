"""The default queues of the original design: name, priority and worker concurrency.

The chart's default MessageQueues and ``conveyor dev`` both start from these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueDefaults:
    name: str
    priority: int
    concurrency: int
    use: str


DEFAULT_QUEUES = (
    QueueDefaults("alerts", 10, 1, "critical machine alerts"),
    QueueDefaults("mqtt_realtime", 5, 3, "realtime machine values"),
    QueueDefaults("mqtt_spc", 3, 2, "statistical process control samples"),
    QueueDefaults("mqtt_tech", 1, 1, "technical configuration"),
)
