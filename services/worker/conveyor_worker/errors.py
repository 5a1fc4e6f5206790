"""The worker's errors::

WorkerError
├── SinkUnavailable        a sink (InfluxDB, Redis) is away: the jobs are postponed, their
│   │                      attempts kept (a reliable_queue.Postpone)
│   └── InfluxLimitReached InfluxDB refused new series at one of its capacity limits (the
│                          jobs that would add them are found and retried, attempts spent)
├── WebhookFailed          an alert webhook answered with an error or not at all: the alert's
│                          attempt failed (retried, then dead-lettered)
└── PointsRejected         InfluxDB refused points as bad data (HTTP 400/413/422): the same
                           points will be refused again, so the jobs that carry them fail
                           permanently

An outage (connection refused, timeout, 5xx, 429, and 401/403/404, which are configuration
problems that affect every job alike) is a :class:`SinkUnavailable`: no job is to blame, so it
costs none an attempt for as long as the queue's ``outage_max_s`` (15 minutes by default) after
a job was first postponed. Only an answer about the data itself is a :class:`PointsRejected`.
InfluxDB 1.8 answers its capacity limits (``max-values-per-tag``, ``max-series-per-database``)
with a 400 partial write too, but those refuse legitimate new machines and signals as well as a
flood's: an :class:`InfluxLimitReached`, never a verdict on a job. A webhook is the alert's own
destination, not a shared sink: its failure is the attempt's.
"""

from __future__ import annotations

import re

from reliable_queue import Postpone

SHOWN_CHARS = 500
"""How much of a server's message an error (and so a dead letter or a log line) quotes."""


class WorkerError(Exception):
    """Root of the worker's errors."""


class SinkUnavailable(WorkerError, Postpone):
    """A sink did not take the data; trying later may succeed. The jobs are postponed."""


class InfluxLimitReached(SinkUnavailable):
    """InfluxDB is at a capacity limit and refuses new series until it is raised."""


class WebhookFailed(WorkerError):
    """An alert webhook did not accept the alert."""


class PointsRejected(WorkerError):
    """InfluxDB answered that it will not take (some of) the points written.

    ``detail`` is the server's whole message (InfluxDB 1.8 quotes the lines it could not
    parse); the error's text quotes at most :data:`SHOWN_CHARS` of it. InfluxDB 1.8 answers a
    *partial write* when it wrote the good points of the request and dropped the others.
    """

    def __init__(self, *, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(
            f"InfluxDB refused the points as bad data (HTTP {status}): {shown(detail)}"
        )

    @property
    def about_points(self) -> bool:
        """Whether the answer shows InfluxDB judged points: a *partial write* (1.8, 2.x), a line
        it could not parse, or a line number. A proxy's or a misrouted 400 shows none."""
        return bool(_ABOUT_POINTS.search(self.detail))


_ABOUT_POINTS = re.compile(r"partial write|unable to parse|\bline \d+|dropped=\d+")


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"
