"""The worker's errors::

WorkerError
└── SinkUnavailable    a sink (InfluxDB, a webhook, Redis) failed: the job is retried
    └── WebhookFailed  an alert webhook answered with an error or not at all
"""

from __future__ import annotations


class WorkerError(Exception):
    """Root of the worker's errors."""


class SinkUnavailable(WorkerError):
    """A sink did not take the data; retrying later may succeed."""


class WebhookFailed(SinkUnavailable):
    """An alert webhook did not accept the alert."""
