"""The kopf handlers: thin, they read and write; the decisions are in ``scaling`` and the
manifests in ``rendering``.

- create / resume / update of a MessageQueue: apply its worker Deployment (server-side apply,
  so a hand edit is put back), write its policy into Redis where the workers read it live,
  and report in status.
- a timer per MessageQueue (every second, acting every pollingIntervalSeconds): read the queue
  in Redis in one round trip, decide the replicas, apply the Deployment (which also undoes any
  hand edit), and say why in status and, when the count changes, in an Event. When Redis cannot
  be reached the replicas stay as they are and status says so.
- delete: the Deployment goes with its owner (garbage collection); the Redis data is kept or
  deleted per deletionPolicy, behind a finalizer that never blocks the deletion when Redis is
  gone: it posts a warning Event and lets go.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from conveyor_operator.metrics import OperatorMetrics
from conveyor_operator.rendering import (
    WorkerDefaults,
    deployment_name,
    queue_policy,
    render_deployment,
    selector_labels,
    worker_problems,
)
from conveyor_operator.scaling import Memory, Observation, ScalingSpec, decide, plan_capacity
from reliable_queue import QueueClient, QueueStats, QueueUnavailable, ReliableQueueError

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "conveyor.io", "v1alpha1", "messagequeues"


class InvalidSpec(Exception):
    """The API refused the worker Deployment made from this spec; the message says why."""


@dataclass
class OperatorConfig:
    redis_url: str
    worker: WorkerDefaults
    redis_cluster: bool = False
    prefix: str = "conveyor.io"
    backlogged_after_s: float = 300.0
    clusterwide: bool = False
    peering_lifetime_s: int = 15
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)


@dataclass
class _QueueState:
    memory: Memory = field(default_factory=Memory)
    last_poll: float = 0.0
    last_counts: tuple[float, int, int] | None = None  # (time, enqueued, completed)
    concurrency: int | None = None  # raised above spec.concurrency by plan_capacity, if so


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    states: dict[str, _QueueState] = {}
    resource = (GROUP, VERSION, PLURAL)

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
        settings.watching.server_timeout = 60
        settings.peering.lifetime = config.peering_lifetime_s
        memo["queues"] = QueueClient.from_url(config.redis_url, cluster=config.redis_cluster)
        memo["apps"] = k8s.AppsV1Api()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the ServiceAccount; elsewhere: KUBECONFIG (via the kubernetes client).
        return kopf.login_via_client(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        await memo["queues"].close()

    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, field="spec", registry=registry)
    async def reconcile(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
        spec = body["spec"]
        current = await _current_replicas(memo["apps"], body)
        replicas = current if current is not None else max(spec.get("minReplicas", 0), 0)
        if spec.get("replicas") is not None:
            replicas = spec["replicas"]
        patch.status["observedGeneration"] = body["metadata"].get("generation")
        if body["metadata"].get("uid") in states:  # the policy below resets the concurrency
            states[body["metadata"]["uid"]].concurrency = None
        try:
            await _apply(memo["apps"], body, replicas, config.worker)
        except InvalidSpec as exc:
            # Not retried: nothing changes until someone fixes the spec (an update).
            message = f"no worker Deployment: {exc}"
            kopf.warn(body, reason="InvalidSpec", message=message)
            patch.status["conditions"] = _conditions(body, ready=False, invalid=message)
            return
        try:
            await memo["queues"].set_policy(spec["queue"], **queue_policy(spec))
            redis_ok = True
        except (QueueUnavailable, ReliableQueueError) as exc:
            redis_ok = False
            kopf.warn(body, reason="RedisUnavailable", message=f"policy not written: {exc}")
        patch.status["selector"] = _selector(body)
        patch.status["concurrency"] = spec.get("concurrency")
        patch.status["conditions"] = _conditions(body, ready=True, redis_ok=redis_ok)

    @kopf.timer(*resource, interval=1.0, registry=registry)
    async def autoscale(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
        spec = body["spec"]
        state = states.setdefault(body["metadata"]["uid"], _QueueState())
        now = time.monotonic()
        if now - state.last_poll < spec.get("pollingIntervalSeconds", 5):
            return
        state.last_poll = now
        current = await _current_replicas(memo["apps"], body)
        if current is None:
            return  # the create handler has not made the Deployment yet
        metrics, queue = config.metrics, spec["queue"]
        started = time.perf_counter()
        try:
            stats = await memo["queues"].queue_stats(queue)
        except (QueueUnavailable, ReliableQueueError) as exc:
            metrics.errors.labels("redis").inc()
            patch.status["conditions"] = _conditions(
                body, ready=True, redis_ok=False, note=str(exc)
            )
            return  # keep the replicas: no flapping to zero while Redis is away
        metrics.poll_seconds.observe(time.perf_counter() - started)
        obs = _observe(stats, state, now)
        scaling_spec = _scaling_spec(spec)
        decision = decide(scaling_spec, obs, current, state.memory)
        state.memory = decision.memory
        replicas, concurrency = decision.replicas, spec.get("concurrency", 1)
        if spec.get("maxConcurrency") and not scaling_spec.paused and spec.get("replicas") is None:
            plan = plan_capacity(
                decision.replicas,
                current,
                base_concurrency=concurrency,
                max_concurrency=spec["maxConcurrency"],
                max_replicas=scaling_spec.max_replicas,
            )
            replicas, concurrency = plan.replicas, plan.concurrency
        before = state.concurrency or spec.get("concurrency", 1)
        if concurrency != before:
            try:
                await memo["queues"].set_policy(queue, concurrency=concurrency)
            except (QueueUnavailable, ReliableQueueError) as exc:
                metrics.errors.labels("redis").inc()
                concurrency = before
                log.warning("concurrency of %s not changed: %s", queue, exc)
            else:
                state.concurrency = concurrency
                kopf.info(
                    body,
                    reason="Concurrency",
                    message=f"Set concurrency of {queue} from {before} to {concurrency} (at most "
                    f"{spec['maxConcurrency']}) on {replicas} replicas: {decision.reason}",
                )
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
            await _apply(memo["apps"], body, replicas, config.worker)
        except InvalidSpec as exc:
            message = f"no worker Deployment: {exc}"
            patch.status["conditions"] = _conditions(body, ready=False, invalid=message)
            return
        if scaling:
            patch.status["lastScaleTime"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            message = (
                f"Scaled {spec['queue']} from {current} to {replicas} replicas: {decision.reason}"
            )
            kopf.info(body, reason="Scaled", message=message)
        patch.status["conditions"] = _conditions(
            body,
            ready=True,
            redis_ok=True,
            scaling=scaling,
            backlogged=backlogged,
            note=decision.reason,
        )

    @kopf.on.delete(*resource, registry=registry)
    async def delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        spec = body["spec"]
        states.pop(body["metadata"]["uid"], None)
        if spec.get("deletionPolicy", "Retain") != "Delete":
            return
        try:
            await asyncio.wait_for(memo["queues"].delete_queue(spec["queue"]), 10)
        except (QueueUnavailable, ReliableQueueError, TimeoutError) as exc:
            kopf.warn(
                body,
                reason="RedisUnavailable",
                message=f"the data of queue {spec['queue']} was not deleted ({exc}); "
                "delete it by hand once Redis is back",
            )

    return registry


def _scaling_spec(spec: Mapping[str, Any]) -> ScalingSpec:
    down = spec.get("scaleDown") or {}
    return ScalingSpec(
        min_replicas=spec.get("minReplicas", 0),
        max_replicas=spec.get("maxReplicas", 10),
        target_per_replica=spec.get("targetDepthPerReplica", 1000),
        activation_depth=spec.get("activationDepth", 0),
        polling_interval_s=spec.get("pollingIntervalSeconds", 5),
        stabilization_s=down.get("stabilizationWindowSeconds", 60),
        cooldown_s=down.get("cooldownSeconds", 300),
        max_step=down.get("maxStep", 4),
        paused=spec.get("paused", False),
        manual_replicas=spec.get("replicas"),
    )


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


def _selector(body: kopf.Body) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(body["metadata"]["name"]).items())


async def _current_replicas(apps: k8s.AppsV1Api, body: kopf.Body) -> int | None:
    name, ns = deployment_name(body["metadata"]["name"]), body["metadata"]["namespace"]
    try:
        deployment = await asyncio.to_thread(apps.read_namespaced_deployment, name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise kopf.TemporaryError(
            f"cannot read Deployment {ns}/{name}: {exc.reason}", delay=5
        ) from exc
    return int(deployment.spec.replicas or 0)


async def _apply(
    apps: k8s.AppsV1Api, body: kopf.Body, replicas: int, defaults: WorkerDefaults
) -> None:
    """Server-side apply: creates it, or puts back whatever someone changed."""
    if problems := worker_problems(body["spec"]):
        raise InvalidSpec("; ".join(problems))
    manifest = render_deployment(body, replicas=replicas, defaults=defaults)
    name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        await asyncio.to_thread(
            apps.patch_namespaced_deployment,
            name,
            ns,
            manifest,
            field_manager="conveyor-operator",
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    except ApiException as exc:
        if exc.status == 422:  # Invalid: retrying the same spec cannot help
            raise InvalidSpec(f"the API refused it: {_api_message(exc)}") from exc
        raise kopf.TemporaryError(
            f"cannot apply Deployment {ns}/{name}: {exc.reason}", delay=5
        ) from exc


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)


def _conditions(
    body: kopf.Body,
    *,
    ready: bool,
    redis_ok: bool = True,
    scaling: bool = False,
    backlogged: bool = False,
    note: str = "",
    invalid: str | None = None,
) -> list[dict[str, str]]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}

    def cond(kind: str, status: bool, reason: str, message: str) -> dict[str, str]:
        value = "True" if status else "False"
        since = (
            old.get(kind, {}).get("lastTransitionTime")
            if old.get(kind, {}).get("status") == value
            else None
        )
        return {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since or now,
        }

    if invalid is not None:
        ready_reason, ready_message = "InvalidSpec", invalid
    elif redis_ok:
        ready_reason, ready_message = "Reconciled", "worker Deployment applied"
    else:
        ready_reason = "RedisUnavailable"
        ready_message = f"Redis unreachable; replicas kept: {note}"
    return [
        cond("Ready", ready and redis_ok and invalid is None, ready_reason, ready_message),
        cond("Scaling", scaling, "Scaled" if scaling else "Steady", note),
        cond("Backlogged", backlogged, "OldJobsWaiting" if backlogged else "Flowing", note),
        cond(
            "RedisUnavailable",
            not redis_ok,
            "RedisDown" if not redis_ok else "RedisUp",
            note if not redis_ok else "",
        ),
    ]
