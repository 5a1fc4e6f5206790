"""The kopf handlers: thin, they read and write; the decisions are in ``scaling``, the checks in
``allowances`` and ``claiming``, the manifests in ``rendering`` and the API calls in
``applying``.

- create / resume / update of a MessageQueue: check the spec against what the installer allows,
  claim its Redis queue (one MessageQueue per queue), apply its worker Deployment and
  PodDisruptionBudget (server-side apply, so a hand edit is put back), write its whole policy
  into Redis where the workers read it live (``policies``), and report in status. A queue owned
  by another MessageQueue gets no workers and no policy: ``Ready=False``, reason
  ``QueueClaimed``.
- a timer per MessageQueue (every second, acting every pollingIntervalSeconds): check the claim,
  read the queue in Redis in one round trip, decide the replicas (and, with maxConcurrency, the
  concurrency), put back the queue's policy if Redis holds another (lost, or changed by hand),
  apply the Deployment (which also undoes any hand edit), and say why in status and, when the
  count changes, in an Event. Before a scale-in, each worker pod's deletion cost is set from
  the jobs it holds, so the idle pods go first (``deletion_costs``).
  When Redis cannot be reached the replicas stay as they are and status says so. A MessageQueue
  waiting for its queue claims it here once the owner has let go.
- delete: the Deployment goes with its owner (garbage collection); the Redis data is kept or
  deleted per deletionPolicy, and the claim released, only by the queue's owner, behind a
  finalizer that never blocks the deletion when Redis is gone: it posts a warning Event and
  lets go.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from conveyor_messages import queue_for_kind

from conveyor_operator.allowances import Allowances, spec_problems
from conveyor_operator.applying import (
    GROUP,
    PLURAL,
    VERSION,
    InvalidSpec,
    KubeApis,
    apply_deployment,
    apply_disruption_budget,
    current_replicas,
    set_deletion_cost,
)
from conveyor_operator.claiming import claim, owner_of
from conveyor_operator.deletion_costs import DeletionCosts, scale_in_now
from conveyor_operator.metrics import OperatorMetrics
from conveyor_operator.policies import desired_policy, policy_problems, reassert_policy
from conveyor_operator.queue_alerts import (
    RULES,
    AlertMemory,
    Reading,
    Transition,
    firing_rules,
    judge,
    resumed,
    withdrawn,
)
from conveyor_operator.rendering import (
    WorkerDefaults,
    deployment_name,
    render_deployment,
    render_disruption_budget,
    selector_labels,
    worker_problems,
)
from conveyor_operator.scaling import Memory, Observation, ScalingSpec, decide, plan_capacity
from conveyor_operator.spec import MessageQueueSpec
from conveyor_operator.status import conditions, ready_reason
from reliable_queue import (
    QueueClient,
    QueueStats,
    QueueUnavailable,
    ReliableQueueError,
    UsageError,
)

log = logging.getLogger(__name__)

REDIS_ERRORS = (QueueUnavailable, ReliableQueueError)
KEEP_DATA = MessageQueueSpec.model_fields["deletion_policy"].default


@dataclass
class OperatorConfig:
    redis_url: str
    worker: WorkerDefaults
    allowances: Allowances | None = None
    """Default: the operator's worker image only, no tolerations or node selectors."""
    redis_cluster: bool = False
    prefix: str = "conveyor.io"
    backlogged_after_s: float = 300.0
    clusterwide: bool = False
    peering_lifetime_s: int = 15
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    alerts_queue: str = queue_for_kind("alert").name
    """Where queue alerts go, beside machine alerts (the alerts worker delivers them)."""

    def __post_init__(self) -> None:
        env = frozenset(str(e["name"]) for e in self.worker.env)
        if self.allowances is None:
            self.allowances = Allowances(worker_image=self.worker.image, operator_env=env)
        else:
            self.allowances = dataclasses.replace(self.allowances, operator_env=env)


@dataclass
class _QueueState:
    memory: Memory = field(default_factory=Memory)
    last_poll: float = 0.0
    last_counts: tuple[float, int, int] | None = None  # (time, enqueued, completed)
    concurrency: int | None = None  # raised above spec.concurrency by plan_capacity, if so
    waiting: bool = False  # no workers: the queue is another's, or the claim was not checked
    alerts: AlertMemory | None = None  # None: not yet read back from status (resumed)
    generation: int = 0  # the newest spec a reconcile has seen: a timer with an older is stale
    costs_waited: bool = False  # this scale-in waited a poll for new deletion costs


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    states: dict[str, _QueueState] = {}
    costs = DeletionCosts()
    resource = (GROUP, VERSION, PLURAL)
    assert config.allowances is not None  # set by __post_init__
    allowances: Allowances = config.allowances

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = f"{config.prefix}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=config.prefix
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=config.prefix, key="last-handled-configuration"
        )
        # Namespaced: no cluster-wide scans of CRDs and namespaces, so a Role is enough.
        settings.scanning.disabled = not config.clusterwide
        # Events: the ones we post (Scaled, RedisUnavailable); kopf's own per-handler log
        # lines (a timer run every second per queue) stay out of the log.
        settings.posting.level = logging.INFO
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        # Every API call has a deadline: a hung API server delays the operator, never wedges it.
        settings.networking.request_timeout = 30
        settings.networking.connect_timeout = 10
        settings.watching.server_timeout = 60
        settings.watching.client_timeout = 90
        settings.watching.connect_timeout = 10
        settings.peering.lifetime = config.peering_lifetime_s
        memo["queues"] = QueueClient.from_url(config.redis_url, cluster=config.redis_cluster)
        memo["apis"] = KubeApis()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the ServiceAccount; elsewhere: KUBECONFIG (via the kubernetes client).
        return kopf.login_via_client(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        await memo["queues"].close()

    def problems_of(spec: Mapping[str, Any]) -> list[str]:
        """What in the spec the installer does not allow, or the API would refuse."""
        return spec_problems(spec, allowances) + worker_problems(spec) + policy_problems(spec)

    async def apply_workers(apis: KubeApis, body: kopf.Body, replicas: int) -> None:
        if problems := problems_of(body["spec"]):
            raise InvalidSpec("; ".join(problems))
        await apply_deployment(
            apis, render_deployment(body, replicas=replicas, defaults=config.worker)
        )
        await apply_disruption_budget(apis, render_disruption_budget(body, defaults=config.worker))

    async def spare_busy_pods(apis: KubeApis, queues: QueueClient, body: kopf.Body) -> int:
        """Before a scale-in: each worker pod's deletion cost from the jobs it holds, so that
        the idle pods go (``deletion_costs``). The number of pods whose cost changed."""
        queue, ns = body["spec"]["queue"], body["metadata"]["namespace"]

        async def patch(pod: str, cost: str) -> None:
            await set_deletion_cost(apis, ns, pod, cost)

        written = await costs.spare_busy_pods(
            body["metadata"]["uid"],
            deployment_name(body["metadata"]["name"]) + "-",
            lambda: queues.jobs_held(queue),
            patch,
        )
        if written is None:
            config.metrics.errors.labels("deletion_cost").inc()
        return written or 0

    async def stop_workers(apis: KubeApis, body: kopf.Body) -> None:
        """The queue is another's: workers an earlier claim (or an operator from before claims)
        started go to zero. Scaled, not deleted: the operator holds no delete verb. A spec the
        installer does not allow is not rendered even at zero replicas: the chart's defaults
        stand in for its worker section."""
        if await current_replicas(apis, body):
            mq: Mapping[str, Any] = body
            if problems_of(body["spec"]):
                mq = {**body, "spec": {**body["spec"], "worker": {}}}
            manifest = render_deployment(mq, replicas=0, defaults=config.worker)
            await apply_deployment(apis, manifest)

    async def raise_alert(
        body: kopf.Body, queues: QueueClient, queue: str, change: Transition
    ) -> None:
        """An Event on the MessageQueue and an alert job beside the machines' alerts."""
        rule, firing = change.rule, change.state == "firing"
        if firing:
            kopf.warn(body, reason=rule.reason, message=f"{queue}: {change.message}")
        else:
            kopf.info(body, reason="AlertResolved", message=f"{queue}: {change.message}")
        now_ms = int(time.time() * 1000)
        meta = body["metadata"]
        alert = {
            "machine": f"queue/{queue}",
            "topic": "",
            "received_at": now_ms,
            "kind": "alert",
            "ts": now_ms,
            "type": rule.alert_type,
            "severity": "warning" if firing else "info",
            "message": f"queue {queue}: {change.message}",
            "details": {
                "state": change.state,
                "queue": queue,
                "messagequeue": f"{meta.get('namespace', '')}/{meta['name']}",
                "value": change.value,
                "threshold": change.threshold,
                "for_s": change.for_s,
            },
        }
        try:
            await queues.enqueue(config.alerts_queue, alert)
        except REDIS_ERRORS as exc:  # the Event and the condition say it all the same
            config.metrics.errors.labels("redis").inc()
            log.warning("queue alert on %s not enqueued on %s: %s", queue, config.alerts_queue, exc)

    def refuse(body: kopf.Body, patch: kopf.Patch, reason: str, message: str) -> None:
        """Ready=False for ``reason``; an Event only when that is news."""
        if ready_reason(body) != (reason, message):
            kopf.warn(body, reason=reason, message=message)
        patch.status["conditions"] = conditions(body, ready=False, blocked=(reason, message))

    async def run_queue(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch) -> None:
        """Check, claim, apply and write the policy: the whole reconcile of one MessageQueue."""
        spec, queues, apis = body["spec"], memo["queues"], memo["apis"]
        state = states.setdefault(body["metadata"]["uid"], _QueueState())
        state.concurrency = None  # the policy below resets it
        state.generation = max(state.generation, body["metadata"].get("generation") or 0)
        patch.status["observedGeneration"] = body["metadata"].get("generation")
        if problems := problems_of(spec):
            # Not retried: nothing changes until someone fixes the spec (an update).
            state.waiting = False
            refuse(body, patch, "InvalidSpec", "no worker Deployment: " + "; ".join(problems))
            return
        mq = MessageQueueSpec.parse(spec)  # it parses: problems_of found nothing
        try:
            claimed = await claim(queues, apis, body)
        except REDIS_ERRORS as exc:
            state.waiting = True  # the timer tries again every poll
            note = f"queue not claimed, so no workers yet: {exc}"
            kopf.warn(body, reason="RedisUnavailable", message=note)
            patch.status["conditions"] = conditions(body, ready=False, redis_ok=False, note=note)
            return
        if not claimed.mine:
            state.waiting = True
            await stop_workers(apis, body)
            refuse(body, patch, "QueueClaimed", claimed.refusal(mq.queue))
            return
        state.waiting = False
        current = await current_replicas(apis, body)
        replicas = current if current is not None else mq.min_replicas
        if mq.replicas is not None:
            replicas = mq.replicas
        if current is not None and 0 < replicas < current:
            await spare_busy_pods(apis, queues, body)
        try:
            await apply_workers(apis, body, replicas)
        except InvalidSpec as exc:
            refuse(body, patch, "InvalidSpec", f"no worker Deployment: {exc}")
            return
        try:
            await reassert_policy(queues, mq.queue, desired_policy(mq))
            redis_ok = True
        except REDIS_ERRORS as exc:
            redis_ok = False
            kopf.warn(body, reason="RedisUnavailable", message=f"policy not written: {exc}")
        patch.status["selector"] = _selector(body)
        patch.status["concurrency"] = mq.concurrency
        patch.status["conditions"] = conditions(body, ready=True, redis_ok=redis_ok)

    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, field="spec", registry=registry)
    async def reconcile(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
        await run_queue(body, memo, patch)

    @kopf.timer(*resource, interval=1.0, registry=registry)
    async def autoscale(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
        queues, apis = memo["queues"], memo["apis"]
        try:
            mq = MessageQueueSpec.parse(body["spec"])
        except UsageError:
            return  # Ready=False, InvalidSpec: said by the reconcile; nothing to scale
        state = states.setdefault(body["metadata"]["uid"], _QueueState())
        now = time.monotonic()
        if now - state.last_poll < mq.polling_interval_seconds:
            return
        if (body["metadata"].get("generation") or 0) < state.generation:
            return  # a body older than the spec the last reconcile applied: wait for the new
        if state.last_poll and now - state.last_poll > 3 * mq.polling_interval_seconds:
            # Back from a pause (a standby taking over again): what it remembers is old.
            state.alerts, state.last_counts = None, None
        state.last_poll = now
        metrics, queue = config.metrics, mq.queue
        if state.waiting:  # for the queue's owner to let go, or for Redis to come back
            try:
                claimed = await claim(queues, apis, body)
            except REDIS_ERRORS as exc:
                metrics.errors.labels("redis").inc()
                note = f"queue not claimed, so no workers yet: {exc}"
                patch.status["conditions"] = conditions(
                    body, ready=False, redis_ok=False, note=note
                )
                return
            if claimed.mine:
                await run_queue(body, memo, patch)  # its turn now
            else:
                refuse(body, patch, "QueueClaimed", claimed.refusal(queue))
            return
        current = await current_replicas(apis, body)
        if current is None:
            return  # the create handler has not made the Deployment yet, or cannot
        started = time.perf_counter()
        try:
            claimed = await claim(queues, apis, body)  # re-made if Redis lost it
            if claimed.mine:
                stats = await queues.queue_stats(queue)
        except REDIS_ERRORS as exc:
            metrics.errors.labels("redis").inc()
            patch.status["conditions"] = conditions(body, ready=True, redis_ok=False, note=str(exc))
            return  # keep the replicas: no flapping to zero while Redis is away
        if not claimed.mine:  # another took the queue while Redis had forgotten the claim
            state.waiting = True
            await stop_workers(apis, body)
            refuse(body, patch, "QueueClaimed", claimed.refusal(queue))
            return
        metrics.poll_seconds.observe(time.perf_counter() - started)
        rates_known = state.last_counts is not None
        obs = _observe(stats, state, now)
        metrics.depth.labels(queue).set(stats.pending)
        metrics.processing.labels(queue).set(stats.processing)
        metrics.oldest_age.labels(queue).set(stats.oldest_pending_age_s)
        metrics.dead_letters.labels(queue).set(stats.failed)
        metrics.drain_rate.labels(queue).set(obs.drain_rate)
        metrics.arrival_rate.labels(queue).set(obs.arrival_rate)
        reading = Reading(
            now=now,
            pending=stats.pending,
            oldest_age_s=stats.oldest_pending_age_s,
            dead_letters=stats.failed,
            drain_rate=obs.drain_rate,
            rates_known=rates_known,
        )
        scaling_spec = ScalingSpec.of(mq)
        decision = decide(scaling_spec, obs, current, state.memory)
        state.memory = decision.memory
        replicas, concurrency = decision.replicas, mq.concurrency
        if mq.max_concurrency and not scaling_spec.paused and mq.replicas is None:
            plan = plan_capacity(
                decision.replicas,
                current,
                base_concurrency=concurrency,
                max_concurrency=mq.max_concurrency,
                max_replicas=scaling_spec.max_replicas,
            )
            replicas, concurrency = plan.replicas, plan.concurrency
        if (body["metadata"].get("generation") or 0) < state.generation:
            return  # a reconcile of a newer spec ran meanwhile: this poll's view is stale
        # Judged once no early return can keep the Alerting condition from being written.
        if state.alerts is None:
            state.alerts = resumed((body.get("status") or {}).get("conditions") or [])
        state.alerts, changes = judge(mq.alerts, reading, state.alerts)
        for change in changes:
            await raise_alert(body, queues, queue, change)
        firing = firing_rules(state.alerts)
        metrics.alerting.judged(
            queue,
            {rule.alert_type: rule in firing for rule in RULES},
            fresh_for_s=3 * mq.polling_interval_seconds,
        )
        alerting = [(rule.reason, rule.describe(reading)) for rule in firing]
        before = state.concurrency or mq.concurrency
        # The whole policy, every poll (one small hash): Redis may have lost it, or someone
        # changed it by hand. Concurrency is this poll's decision, so it never fights the plan.
        try:
            differed = await reassert_policy(
                queues, queue, desired_policy(mq, concurrency=concurrency)
            )
        except REDIS_ERRORS as exc:
            metrics.errors.labels("redis").inc()
            concurrency = before
            log.warning("policy of %s not written: %s", queue, exc)
        else:
            state.concurrency = concurrency
            if concurrency != before:
                kopf.info(
                    body,
                    reason="Concurrency",
                    message=f"Set concurrency of {queue} from {before} to {concurrency} (at most "
                    f"{mq.max_concurrency}) on {replicas} replicas: {decision.reason}",
                )
            if restored := [f for f in differed if f != "concurrency" or concurrency == before]:
                kopf.info(
                    body,
                    reason="PolicyRestored",
                    message=f"Put back the policy of {queue} from the spec: {', '.join(restored)} "
                    "differed in Redis (it was down or lost its data, or someone ran conveyor "
                    "policy on this managed queue)",
                )
        note = decision.reason
        if 0 < replicas < current:
            written = await spare_busy_pods(apis, queues, body)
            replicas, state.costs_waited = scale_in_now(
                current, replicas, written, state.costs_waited
            )
            if replicas == current:
                note += "; the scale-in waits a poll for the pods' new deletion costs"
        else:
            state.costs_waited = False
        moved = replicas - current
        metrics.decisions.labels(
            queue, "up" if moved > 0 else "down" if moved < 0 else "hold"
        ).inc()
        metrics.desired.labels(queue).set(replicas)
        metrics.current.labels(queue).set(current)
        patch.status.update(
            {
                "depth": stats.pending,
                "processing": stats.processing,
                "oldestAgeSeconds": round(stats.oldest_pending_age_s, 3),
                "rate": round(obs.drain_rate, 3),
                "replicas": replicas,
                "selector": _selector(body),
                "concurrency": concurrency,
            }
        )
        backlogged = stats.oldest_pending_age_s > config.backlogged_after_s
        scaling = replicas != current
        # Applied every poll, changed or not: server-side apply is a no-op when nothing
        # differs and puts back anything someone edited by hand (drift).
        try:
            await apply_workers(apis, body, replicas)
        except InvalidSpec as exc:
            message = f"no worker Deployment: {exc}"
            patch.status["conditions"] = conditions(
                body, ready=False, blocked=("InvalidSpec", message), alerting=alerting
            )
            return
        if scaling:
            patch.status["lastScaleTime"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            message = f"Scaled {queue} from {current} to {replicas} replicas: {decision.reason}"
            kopf.info(body, reason="Scaled", message=message)
        patch.status["conditions"] = conditions(
            body,
            ready=True,
            redis_ok=True,
            scaling=scaling,
            backlogged=backlogged,
            note=note,
            alerting=alerting,
        )

    @kopf.on.delete(*resource, registry=registry)
    async def delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        spec, queues = body["spec"], memo["queues"]
        state = states.pop(body["metadata"]["uid"], None)
        costs.forget(body["metadata"]["uid"])
        queue, me = spec["queue"], owner_of(body)
        config.metrics.forget(queue)
        if state is not None and state.alerts is not None:
            for change in withdrawn(state.alerts, "the MessageQueue was deleted"):
                await raise_alert(body, queues, queue, change)
        wipe = spec.get("deletionPolicy", KEEP_DATA) == "Delete"
        try:
            async with asyncio.timeout(10):
                owner = await queues.queue_owner(queue)
                if not me.same_as(owner):  # another's queue (or nobody's): none of our business
                    if wipe:
                        kopf.info(
                            body,
                            reason="QueueKept",
                            message=f"queue {queue} is not this MessageQueue's "
                            f"(owner: {owner or 'none'}): nothing of it deleted",
                        )
                    return
                if wipe:
                    await queues.delete_queue(queue)
                await queues.release_queue(queue, me)
        except (*REDIS_ERRORS, TimeoutError) as exc:
            kopf.warn(
                body,
                reason="RedisUnavailable",
                message=f"queue {queue}: "
                + ("its data was not deleted and " if wipe else "")
                + f"its claim was not released ({exc}); another MessageQueue takes it over "
                "once it sees this one is gone"
                + ("; delete the data by hand once Redis is back" if wipe else ""),
            )

    return registry


def _observe(stats: QueueStats, state: _QueueState, now: float) -> Observation:
    arrival = drain = 0.0
    if state.last_counts is not None:
        then, enqueued, completed = state.last_counts
        span = max(now - then, 1e-3)
        arrival = max(0.0, (stats.enqueued - enqueued) / span)
        drain = max(0.0, (stats.completed + stats.dead_lettered - completed) / span)
    state.last_counts = (now, stats.enqueued, stats.completed + stats.dead_lettered)
    return Observation(
        now=now,
        pending=stats.pending,
        processing=stats.processing,
        arrival_rate=arrival,
        drain_rate=drain,
    )


def _selector(body: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(body["metadata"]["name"]).items())
