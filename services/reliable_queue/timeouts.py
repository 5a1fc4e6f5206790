"""Job timeouts: running a handler under its queue's timeout, and the end of its lease renewals.

An attempt that runs past the queue's ``timeout_s`` (or the worker's default) is cancelled and
recorded as failed with :class:`~reliable_queue.errors.JobTimeout`, and its slot goes to the
next job. A handler that does not stop once cancelled (it catches ``CancelledError`` and carries
on, or waits for a blocking thread) cannot be stopped by asyncio: its attempt is recorded as
timed out all the same, the log says so once, and its slot stays taken until it returns, so a
worker never runs more handlers at once than its concurrency.

A plain ``await asyncio.to_thread(...)`` is the exception that frees its slot anyway: it is
cancelled at once while its thread runs on, unseen by asyncio, so the slot takes the next job.
Threads of the default pool are few (``min(32, CPUs + 4)``: 6 on a 2-core pod), and a handful
of hung calls then stalls every ``to_thread`` and host-name lookup in the process. Give blocking
calls their own timeout (socket, HTTP client, database driver), and run them through
:func:`run_in_thread`, which keeps the slot taken until the thread returns.

A job's lease is renewed only until its timeout plus a grace: if the worker itself is wedged
(its timeout never fires, or recording the failure never ends) while its heartbeat still runs,
the lease lapses and the reaper gives the job back to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

CANCEL_WAIT_S = 1.0
"""How long a cancelled handler has to stop before it counts as ignoring cancellation."""


async def finish_within(call: asyncio.Future[Any], timeout: float | None) -> bool:
    """Wait for ``call``: True once it is done, False if ``timeout`` passed first (it is then
    cancelled and given :data:`CANCEL_WAIT_S` to stop; it may still be running).

    If the waiter is cancelled (the worker stops and cancels its handlers), ``call`` is
    cancelled too and given the same time to stop, and the cancellation goes on.
    """
    try:
        done, _ = await asyncio.wait({call}, timeout=timeout)
    except asyncio.CancelledError:
        call.cancel()
        await asyncio.wait({call}, timeout=CANCEL_WAIT_S)
        raise
    if done or not call.cancel():  # not cancellable: it finished just now
        return True
    await asyncio.wait({call}, timeout=CANCEL_WAIT_S)
    return False


async def run_in_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking call in a thread of the default pool; if cancelled, wait for the thread
    to return, then let the cancellation go on.

    A plain ``await asyncio.to_thread(...)`` gives up at once when cancelled while its thread
    runs on unseen, so a timed-out job's slot would take the next job while the old call still
    holds a thread. Through this helper the handler counts as ignoring cancellation: the
    timeout is recorded all the same, and the slot stays taken until the thread returns.
    Asyncio cannot stop a thread: give the call its own timeout (socket, HTTP, database).
    """
    work = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait({work})
        raise


Attempt = tuple[str, str]
"""One attempt at a job: its id and the token of that claim."""


@dataclass(slots=True)
class RenewalDeadlines:
    """Until when (monotonic seconds) each running attempt's lease may be renewed.

    Keyed by attempt, not by job id: a handler that ignored cancellation may return while the
    retry of its job already runs in another slot, and forgetting its own deadline must leave
    the retry's in place (else the retry's lease would be renewed forever).
    """

    _until: dict[Attempt, float] = field(default_factory=dict)
    _over: set[Attempt] = field(default_factory=set)

    def start(self, attempts: Iterable[Attempt], *, until: float = math.inf) -> None:
        for attempt in attempts:
            self._until[attempt] = until

    def forget(self, attempt: Attempt) -> None:
        self._until.pop(attempt, None)
        self._over.discard(attempt)

    def renewable(
        self, attempts: Iterable[Attempt], *, now: float
    ) -> tuple[list[Attempt], list[Attempt]]:
        """``(renew, newly_over)``: the attempts whose leases may still be renewed, and those
        that went past their deadline since the last call (to report once)."""
        renew: list[Attempt] = []
        newly_over: list[Attempt] = []
        for attempt in attempts:
            if self._until.get(attempt, math.inf) > now:
                renew.append(attempt)
            elif attempt not in self._over:
                self._over.add(attempt)
                newly_over.append(attempt)
        return renew, newly_over


def report_ignored_cancellation(queue: str, job_ids: list[str], timeout_s: float) -> None:
    """Say once, per handler call, that a handler did not stop when cancelled."""
    shown = ", ".join(job_ids[:5]) + (f" and {len(job_ids) - 5} more" if len(job_ids) > 5 else "")
    log.warning(
        "the handler on queue %s ignores cancellation: job %s ran past its %gs timeout and had "
        "not stopped %gs after being cancelled. The attempt is recorded as timed out, but its "
        "slot stays taken until the handler returns. Make the handler cancellable: do not "
        "swallow CancelledError, and give blocking calls (threads, sockets) their own timeout",
        queue,
        shown,
        timeout_s,
        CANCEL_WAIT_S,
        extra={"queue": queue, "job_id": job_ids[0], "timeout_s": timeout_s},
    )


def report_renewals_ended(queue: str, job_id: str, grace_s: float) -> None:
    log.warning(
        "job %s on %s is past its timeout plus %gs and still not settled (is the worker "
        "wedged?): its lease is no longer renewed, and the reaper returns the job to the queue "
        "when it lapses",
        job_id,
        queue,
        grace_s,
        extra={"queue": queue, "job_id": job_id},
    )
