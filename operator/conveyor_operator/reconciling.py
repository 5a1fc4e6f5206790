"""The reconcile of one MessageQueue (create, resume, update of its spec, and a waiting queue's
turn): check the spec against what the installer allows, claim its Redis queue (one
MessageQueue per queue), apply its worker Deployment and PodDisruptionBudget (server-side
apply, so a hand edit is put back), write its whole policy into Redis where the workers read it
live (``policies``), and report in status. A queue owned by another MessageQueue gets no
workers and no policy: ``Ready=False``, reason ``QueueClaimed``.

Also the steps the autoscaler shares: applying and stopping the workers, refusing a spec, and
setting the worker pods' deletion costs before a scale-in (``deletion_costs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from conveyor_operator.applying import (
    InvalidSpec,
    apply_deployment,
    apply_disruption_budget,
    current_replicas,
    set_deletion_cost,
)
from conveyor_operator.claiming import claim
from conveyor_operator.context import REDIS_ERRORS, Operator, QueueState
from conveyor_operator.policies import desired_policy, reassert_policy
from conveyor_operator.rendering import (
    deployment_name,
    render_deployment,
    render_disruption_budget,
    selector_labels,
)
from conveyor_operator.spec import MessageQueueSpec
from conveyor_operator.status import conditions, ready_reason


async def run_queue(op: Operator, body: kopf.Body, state: QueueState, patch: kopf.Patch) -> None:
    """Check, claim, apply and write the policy: the whole reconcile of one MessageQueue."""
    spec, queues, apis = body["spec"], op.queues, op.apis
    state.concurrency = None  # the policy below resets it
    state.generation = max(state.generation, body["metadata"].get("generation") or 0)
    patch.status["observedGeneration"] = body["metadata"].get("generation")
    if problems := op.problems_of(spec):
        # Not retried: nothing changes until someone fixes the spec (an update).
        state.waiting = False
        refuse(body, patch, "InvalidSpec", "no worker Deployment: " + "; ".join(problems))
        return
    mq = MessageQueueSpec.parse(spec)  # it parses: problems_of found nothing
    try:
        claimed = await claim(queues, apis, body)
    except REDIS_ERRORS as exc:
        state.waiting = True  # the autoscaler tries again every poll
        note = f"queue not claimed, so no workers yet: {exc}"
        kopf.warn(body, reason="RedisUnavailable", message=note)
        patch.status["conditions"] = conditions(body, ready=False, redis_ok=False, note=note)
        return
    if not claimed.mine:
        state.waiting = True
        await stop_workers(op, body)
        refuse(body, patch, "QueueClaimed", claimed.refusal(mq.queue))
        return
    state.waiting = False
    current = await current_replicas(apis, body)
    replicas = current if current is not None else mq.min_replicas
    if mq.replicas is not None:
        replicas = mq.replicas
    if current is not None and 0 < replicas < current:
        await spare_busy_pods(op, body)
    try:
        await apply_workers(op, body, replicas)
    except InvalidSpec as exc:
        refuse(body, patch, "InvalidSpec", f"no worker Deployment: {exc}")
        return
    try:
        await reassert_policy(queues, mq.queue, desired_policy(mq))
        redis_ok = True
    except REDIS_ERRORS as exc:
        redis_ok = False
        kopf.warn(body, reason="RedisUnavailable", message=f"policy not written: {exc}")
    patch.status["selector"] = selector(body)
    patch.status["concurrency"] = mq.concurrency
    patch.status["conditions"] = conditions(body, ready=True, redis_ok=redis_ok)


async def apply_workers(op: Operator, body: kopf.Body, replicas: int) -> None:
    if problems := op.problems_of(body["spec"]):
        raise InvalidSpec("; ".join(problems))
    defaults = op.config.worker
    await apply_deployment(op.apis, render_deployment(body, replicas=replicas, defaults=defaults))
    await apply_disruption_budget(op.apis, render_disruption_budget(body, defaults=defaults))


async def stop_workers(op: Operator, body: kopf.Body) -> None:
    """The queue is another's: workers an earlier claim (or an operator from before claims)
    started go to zero. Scaled, not deleted: the operator holds no delete verb. A spec the
    installer does not allow is not rendered even at zero replicas: the chart's defaults
    stand in for its worker section."""
    if await current_replicas(op.apis, body):
        mq: Mapping[str, Any] = body
        if op.problems_of(body["spec"]):
            mq = {**body, "spec": {**body["spec"], "worker": {}}}
        manifest = render_deployment(mq, replicas=0, defaults=op.config.worker)
        await apply_deployment(op.apis, manifest)


async def spare_busy_pods(op: Operator, body: kopf.Body) -> int:
    """Before a scale-in: each worker pod's deletion cost from the jobs it holds, so that the
    idle pods go (``deletion_costs``). The number of pods whose cost changed."""
    queue, ns = body["spec"]["queue"], body["metadata"]["namespace"]

    async def patch(pod: str, cost: str) -> None:
        await set_deletion_cost(op.apis, ns, pod, cost)

    written = await op.costs.spare_busy_pods(
        body["metadata"]["uid"],
        deployment_name(body["metadata"]["name"]) + "-",
        lambda: op.queues.jobs_held(queue),
        patch,
    )
    if written is None:
        op.config.metrics.errors.labels("deletion_cost").inc()
    return written or 0


def refuse(body: kopf.Body, patch: kopf.Patch, reason: str, message: str) -> None:
    """Ready=False for ``reason``; an Event only when that is news."""
    if ready_reason(body) != (reason, message):
        kopf.warn(body, reason=reason, message=message)
    patch.status["conditions"] = conditions(body, ready=False, blocked=(reason, message))


def selector(body: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(body["metadata"]["name"]).items())
