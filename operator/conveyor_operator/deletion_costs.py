"""Which worker pods a scale-in removes: the idle ones first, the busiest last.

When a ReplicaSet has more pods than it wants, Kubernetes removes first the pods that are not
scheduled, not running or not ready, then those with the lowest
``controller.kubernetes.io/pod-deletion-cost``, and only then looks at nodes and ages. Right
before the operator lowers a queue's replicas, it sets each worker pod's cost to the jobs the
pod's worker holds, read from the workers' heartbeats in Redis (``QueueClient.jobs_held``,
about a second old): idle pods cost 0 and go first. A removed pod still drains what it holds
(``conveyor work --drain-timeout``), so this spares work rather than saves it: fewer jobs wait
through a drain or, past the drain timeout, start over.

Costs are written only then, not every poll: Kubernetes asks not to update the annotation
often (each write is a pod update that the API server and every watcher of pods pay for), and
only the scale-in reads it. The pods are the ones the heartbeats name (no ``list`` on pods is
needed, so the operator reads no pod), and a cost this operator already wrote is not written
again. The ReplicaSet controller ranks pods from its own cache, which the patches reach within
moments of being accepted: when costs changed, the autoscaler applies the scale-in one poll
later (once per scale-in, ``scale_in_now``), so that the ranking sees them. A scale to zero
removes every pod and writes none. A change of ``spec.replicas`` (``kubectl scale``) is applied
by the reconcile at once, right after the costs, without that wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
MAX_COST = 2**31 - 1  # the annotation is an int32
TIMEOUT_S = 10.0
"""The whole step's bound: a scale-in waits at most this long for the costs."""


def pod_of(worker_id: str) -> str:
    """A worker id is ``<host name>:<pid>``; in a pod the host name is the pod's name."""
    host, sep, _ = worker_id.rpartition(":")
    return host if sep else worker_id


def wanted_costs(pod_prefix: str, held: Mapping[str, int]) -> dict[str, str]:
    """``{pod: cost}`` for the pods whose names start with ``pod_prefix`` (the Deployment's
    ``<name>-``), from ``held`` (worker id -> jobs held): a pod's cost is what its workers
    hold, within the annotation's bounds. Workers elsewhere (a laptop, another Deployment) are
    left out."""
    by_pod: Counter[str] = Counter()
    for worker, jobs in held.items():
        pod = pod_of(worker)
        if pod.startswith(pod_prefix):
            by_pod[pod] += max(jobs, 0)
    return {pod: str(min(jobs, MAX_COST)) for pod, jobs in by_pod.items()}


def scale_in_now(current: int, wanted: int, written: int, waited: bool) -> tuple[int, bool]:
    """The replicas to apply this poll of a scale-in (``0 < wanted < current``) after ``written``
    costs changed, and whether this scale-in has waited: the first poll that changed costs
    keeps ``current`` (the ReplicaSet controller ranks pods from its cache; a poll later it
    holds the new costs), later steps of the same scale-in go at once. The caller resets
    ``waited`` on a poll that does not scale in."""
    if written and not waited:
        return current, True
    return wanted, waited


class DeletionCosts:
    """What the operator wrote per queue (so an unchanged cost is not written again, and a
    restarted operator writes each pod once), and whether it has said that it may not."""

    def __init__(self) -> None:
        self._written: dict[str, dict[str, str]] = {}
        self._said_forbidden = False

    async def spare_busy_pods(
        self,
        key: str,
        pod_prefix: str,
        read_held: Callable[[], Awaitable[Mapping[str, int]]],
        patch: Callable[[str, str], Awaitable[None]],
    ) -> int | None:
        """Write the costs of ``key``'s pods that changed; how many. Best effort: None (and a
        warning, a missing permission said once) when Redis or the API cannot say or take
        them; the scale-in then goes ahead by the ReplicaSet's own ranking."""
        try:
            async with asyncio.timeout(TIMEOUT_S):
                wanted = wanted_costs(pod_prefix, await read_held())
                before = self._written.get(key, {})
                changes = {pod: c for pod, c in wanted.items() if before.get(pod) != c}
                await asyncio.gather(*(patch(pod, cost) for pod, cost in changes.items()))
        except Exception as exc:  # noqa: BLE001 - any failure leaves the ReplicaSet's ranking
            forbidden = getattr(exc, "status", None) == 403
            if not (forbidden and self._said_forbidden):
                self._said_forbidden |= forbidden
                log.warning(
                    "deletion costs of %s's pods not set (%s): the scale-in removes pods by "
                    "the ReplicaSet's own ranking, busy or not%s",
                    key,
                    describe(exc),
                    "; the operator needs patch on pods, which the chart grants with "
                    "admissionPolicy.enabled (said once)"
                    if forbidden
                    else "",
                )
            return None
        self._written[key] = wanted  # only the pods with live workers: bounded
        return len(changes)

    def forget(self, key: str) -> None:
        self._written.pop(key, None)


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT_S:g}s"
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason or exc}"
