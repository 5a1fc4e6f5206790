"""The errors of the queue library.

Everything the library raises derives from :class:`ReliableQueueError`::

    ReliableQueueError
    ├── UsageError                 a caller's mistake; retrying the same call will not help
    │   ├── InvalidQueueName
    │   └── InvalidJob             a job that cannot be encoded or is out of range
    ├── QueueUnavailable           Redis unreachable, timed out or out of memory; retry later
    ├── Retry                      raised by a handler: retry this job (optionally after `delay`)
    ├── Postpone                   raised by a handler: a service it needs is away; try the job
    │                              again later without spending an attempt
    ├── PermanentError             raised by a handler: this job can never succeed; dead-letter it
    └── JobTimeout                 recorded by the worker: an attempt ran past the queue's timeout

Redis client errors are mapped to these at the boundary (``raise ... from exc``), so callers
never need to import ``redis`` to handle a failure.
"""

from __future__ import annotations


class ReliableQueueError(Exception):
    """Root of every error the queue library raises."""


class UsageError(ReliableQueueError, ValueError):
    """A call the library cannot carry out as written; fix the call."""


class InvalidQueueName(UsageError):
    """A queue name with characters that cannot be used."""


class InvalidJob(UsageError):
    """A job that cannot be enqueued (not JSON-serialisable, priority out of range, ...)."""


class QueueUnavailable(ReliableQueueError, ConnectionError):
    """Redis could not be reached, did not answer in time, or refused a write because it is
    at ``maxmemory`` (``noeviction``): nothing was written, and workers draining the queue free
    memory.

    Retryable. An ``enqueue`` that raised this may or may not have reached Redis: enqueue with
    an explicit ``job_id`` to make the retry idempotent.
    """


class Retry(ReliableQueueError):
    """Raised by a handler to ask for another attempt.

    ``delay`` (seconds) overrides the queue's backoff for this retry. The attempt still counts
    toward ``max_retries``.
    """

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Postpone(ReliableQueueError):
    """Raised by a handler when a service it needs is away (an outage, not the job's fault).

    The job goes back to pending at its place in line without spending an attempt, for as
    long as the queue's ``outage_max_s`` after its first postponement; past that, each
    postponement counts as a failed attempt (retried with backoff, then dead-lettered). The
    worker also claims nothing of the queue for a while (its outage pause, doubling with each
    outage in a row, up to 30 s): the outage would fail those jobs too. ``delay`` (seconds, at
    most 30) sets that pause, unless the worker is paused already.
    """

    def __init__(
        self, reason: str = "a service the handler needs is away", *, delay: float | None = None
    ) -> None:
        if delay is not None and not 0 <= delay < float("inf"):
            raise ValueError(f"a Postpone's delay is seconds from 0 up, not {delay!r}")
        super().__init__(reason)
        self.delay = delay


class PermanentError(ReliableQueueError):
    """Raised by a handler when a job can never succeed: it goes to dead letters at once."""


class JobTimeout(ReliableQueueError):
    """An attempt ran longer than its queue's timeout and was cancelled.

    The worker records it as the attempt's error: retried per the queue's policy like any
    failure; a job whose last attempt timed out is dead-lettered with reason ``timeout``.
    """

    def __init__(self, *, queue: str, timeout_s: float, batch: bool = False) -> None:
        what = "its batch" if batch else "the attempt"
        super().__init__(
            f"{what} ran longer than the timeout of {timeout_s:g}s on queue {queue!r} and was "
            f"cancelled; if the work needs longer, raise it (conveyor policy {queue} "
            "--timeout-s N, or spec.timeoutSeconds of its MessageQueue)"
        )
        self.queue = queue
        self.timeout_s = timeout_s
