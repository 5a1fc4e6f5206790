"""conveyor_worker: the processors of the default queues and the sinks they write to."""

from conveyor_worker.errors import PointsRejected, SinkUnavailable, WebhookFailed, WorkerError
from conveyor_worker.influx import InfluxConfig, InfluxSink
from conveyor_worker.metrics import WorkerMetrics
from conveyor_worker.processors import Context, SinkSettings, processor_for
from conveyor_worker.running import build_worker

__all__ = [
    "Context",
    "InfluxConfig",
    "InfluxSink",
    "PointsRejected",
    "SinkSettings",
    "SinkUnavailable",
    "WebhookFailed",
    "WorkerError",
    "WorkerMetrics",
    "build_worker",
    "processor_for",
]
