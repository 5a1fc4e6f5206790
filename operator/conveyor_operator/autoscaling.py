"""The autoscaler: one kopf daemon per MessageQueue, for its life (it stops when the
MessageQueue is deleted or a standby operator pauses, and starts again when it resumes). Each
poll checks the claim, reads the queue in Redis in one round trip, decides the replicas (and,
with maxConcurrency, the concurrency; ``scaling``), judges the queue's alerts
(``queue_alerts``), puts back the queue's policy if Redis holds another (lost, or changed by
hand), applies the Deployment (which also undoes any hand edit), and says why in status and,
when the count changes, in an Event. Before a scale-in, each worker pod's deletion cost is set
from the jobs it holds, so the idle pods go first (``deletion_costs``). When Redis cannot be
reached the replicas stay as they are and status says so. A MessageQueue waiting for its queue
claims it here once the owner has let go.

Then it sleeps the queue's own ``pollingIntervalSeconds``. kopf applies a daemon's ``patch``
only when the daemon returns, so each poll's status is written here
(``applying.patch_status``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from conveyor_operator.alert_posting import post_alert
from conveyor_operator.applying import InvalidSpec, current_replicas, patch_status
from conveyor_operator.claiming import claim
from conveyor_operator.context import REDIS_ERRORS, Operator, QueueState
from conveyor_operator.deletion_costs import scale_in_now
from conveyor_operator.policies import desired_policy, reassert_policy
from conveyor_operator.queue_alerts import RULES, Reading, firing_rules, judge, resumed
from conveyor_operator.reconciling import (
    apply_workers,
    refuse,
    run_queue,
    selector,
    spare_busy_pods,
    stop_workers,
)
from conveyor_operator.scaling import Observation, ScalingSpec, decide, plan_capacity
from conveyor_operator.spec import MessageQueueSpec
from conveyor_operator.status import conditions
from reliable_queue import QueueStats, UsageError

log = logging.getLogger(__name__)

API_ERRORS = (kopf.TemporaryError, InvalidSpec, ApiException, HTTPError, OSError)
"""What a call to the Kubernetes API may raise when it is refused or unreachable."""

DEFAULT_POLLING_INTERVAL_S = MessageQueueSpec.model_fields["polling_interval_seconds"].default
RECHECK_INTERVAL_S = 5.0
"""How often a long wait between polls reads the live spec's pollingIntervalSeconds again."""
STALE_RETRY_S = 1.0
"""After a poll made stale by a newer spec: how soon the next one comes."""
TRACEBACK_EVERY_S = 60.0
"""A poll failing the same unexpected way every time logs its traceback at most this often."""
STOP_GRACE_S = 5.0
"""When the daemon is stopped: how long a poll in flight may take to finish before it is
cancelled."""


async def autoscale(
    body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    """The queue's autoscaler, one per MessageQueue: poll, write what the poll found into
    status, sleep. ``body`` is live: kopf keeps it current, so each poll sees the newest
    spec."""
    op, state = Operator.of(memo), QueueState.of(memo)
    state.restart()
    traced_at = -TRACEBACK_EVERY_S
    while not stopped:
        started, current = time.monotonic(), True
        patch = kopf.Patch()
        try:
            current = await poll(op, body, state, patch, started)
            if patch and current:
                await patch_status(op.apis, body, dict(patch.status))
        except API_ERRORS as exc:  # the API refused or was away: the next poll tries again
            op.config.metrics.errors.labels("api").inc()
            reason = getattr(exc, "reason", None) or exc
            log.warning("poll of MessageQueue %s: %s: %s", _name(body), type(exc).__name__, reason)
        except Exception as exc:  # a bug: said, counted, and the queue still polled
            op.config.metrics.errors.labels("poll").inc()
            if started - traced_at >= TRACEBACK_EVERY_S:
                traced_at = started
                log.exception("poll of MessageQueue %s failed", _name(body))
            else:
                log.error("poll of MessageQueue %s failed: %r", _name(body), exc)
        if current:
            await _sleep_interval(body, stopped, started)
        else:
            await stopped.wait(STALE_RETRY_S)


async def poll(
    op: Operator, body: kopf.Body, state: QueueState, patch: kopf.Patch, now: float
) -> bool:
    """One poll of the queue: read, decide, apply, and the status in ``patch``. False when a
    reconcile of a newer spec ran meanwhile, so what this poll decided is stale (and its
    status is not written): poll again soon."""
    queues, apis, config = op.queues, op.apis, op.config
    generation = body["metadata"].get("generation") or 0  # ``body`` is live: kept current
    if _deleting(body):
        return True  # the delete handler's now; the daemon is being stopped
    try:
        mq = MessageQueueSpec.parse(body["spec"])
    except UsageError:
        return True  # Ready=False, InvalidSpec: said by the reconcile; nothing to scale
    metrics, queue = config.metrics, mq.queue
    if state.waiting:  # for the queue's owner to let go, or for Redis to come back
        try:
            claimed = await claim(queues, apis, body)
        except REDIS_ERRORS as exc:
            metrics.errors.labels("redis").inc()
            note = f"queue not claimed, so no workers yet: {exc}"
            patch.status["conditions"] = conditions(body, ready=False, redis_ok=False, note=note)
            return True
        if claimed.mine:
            await run_queue(op, body, state, patch)  # its turn now
        else:
            refuse(body, patch, "QueueClaimed", claimed.refusal(queue))
        return True
    current = await current_replicas(apis, body)
    if current is None:  # being made by the create handler, or deleted by hand: (re)made
        await run_queue(op, body, state, patch)
        current = await current_replicas(apis, body)
        if current is None:
            return True  # refused (Ready=False says why) or not the queue's owner
    if _deleting(body):
        return True  # no claim made again after the delete handler released it
    started = time.perf_counter()
    try:
        claimed = await claim(queues, apis, body)  # re-made if Redis lost it
        if claimed.mine:
            stats = await queues.queue_stats(queue)
    except REDIS_ERRORS as exc:
        metrics.errors.labels("redis").inc()
        patch.status["conditions"] = conditions(body, ready=True, redis_ok=False, note=str(exc))
        return True  # keep the replicas: no flapping to zero while Redis is away
    if not claimed.mine:  # another took the queue while Redis had forgotten the claim
        state.waiting = True
        await stop_workers(op, body)
        refuse(body, patch, "QueueClaimed", claimed.refusal(queue))
        return True
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
    if generation < state.generation:
        return False  # a reconcile of a newer spec ran meanwhile: this poll's view is stale
    if _deleting(body):
        return True  # nothing written after the delete handler released the queue
    # Judged once no early return can keep the Alerting condition from being written.
    if state.alerts is None:
        state.alerts = resumed((body.get("status") or {}).get("conditions") or [])
    state.alerts, changes = judge(mq.alerts, reading, state.alerts)
    for change in changes:
        await post_alert(op, body, queue, change)
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
        differed = await reassert_policy(queues, queue, desired_policy(mq, concurrency=concurrency))
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
        written = await spare_busy_pods(op, body)
        replicas, state.costs_waited = scale_in_now(current, replicas, written, state.costs_waited)
        if replicas == current:
            note += "; the scale-in waits a poll for the pods' new deletion costs"
    else:
        state.costs_waited = False
    moved = replicas - current
    metrics.decisions.labels(queue, "up" if moved > 0 else "down" if moved < 0 else "hold").inc()
    metrics.desired.labels(queue).set(replicas)
    metrics.current.labels(queue).set(current)
    patch.status.update(
        {
            "depth": stats.pending,
            "processing": stats.processing,
            "oldestAgeSeconds": round(stats.oldest_pending_age_s, 3),
            "rate": round(obs.drain_rate, 3),
            "replicas": replicas,
            "selector": selector(body),
            "concurrency": concurrency,
        }
    )
    backlogged = stats.oldest_pending_age_s > config.backlogged_after_s
    scaling = replicas != current
    # Applied every poll, changed or not: server-side apply is a no-op when nothing
    # differs and puts back anything someone edited by hand (drift).
    try:
        await apply_workers(op, body, replicas)
    except InvalidSpec as exc:
        message = f"no worker Deployment: {exc}"
        patch.status["conditions"] = conditions(
            body, ready=False, blocked=("InvalidSpec", message), alerting=alerting
        )
        return True
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
    return True


def _observe(stats: QueueStats, state: QueueState, now: float) -> Observation:
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


async def _sleep_interval(body: kopf.Body, stopped: kopf.DaemonStopped, started: float) -> None:
    """Until ``pollingIntervalSeconds`` after ``started``, read again every few seconds from the
    live spec, so a shorter interval applied meanwhile counts from then on; at once when the
    daemon is stopped."""
    while not stopped:
        left = started + polling_interval(body) - time.monotonic()
        if left <= 0:
            return
        await stopped.wait(min(left, RECHECK_INTERVAL_S))


def polling_interval(body: kopf.Body) -> float:
    """The spec's pollingIntervalSeconds when it is a whole number of seconds, at least 1;
    otherwise (unset, or a spec the reconcile refused) the default."""
    interval = (body.get("spec") or {}).get("pollingIntervalSeconds")
    if isinstance(interval, int) and not isinstance(interval, bool) and interval >= 1:
        return float(interval)
    return float(DEFAULT_POLLING_INTERVAL_S)


def _deleting(body: kopf.Body) -> bool:
    return bool(body["metadata"].get("deletionTimestamp"))


def _name(body: kopf.Body) -> str:
    return f"{body['metadata'].get('namespace', '')}/{body['metadata']['name']}"
