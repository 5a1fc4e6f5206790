"""The kopf handlers, registered by ``build_registry`` (``conveyor operator`` runs them):

- startup: kopf's settings, and the clients every handler shares (``context.Operator``, in
  kopf's memo);
- create / resume / update of a MessageQueue's spec: the reconcile (``reconciling``);
- one autoscaler daemon per MessageQueue, for its life (``autoscaling``);
- delete: the Deployment goes with its owner (garbage collection); the Redis data is kept or
  deleted per deletionPolicy, and the claim released, only by the queue's owner, behind a
  finalizer that never blocks the deletion when Redis is gone: it posts a warning Event and
  lets go.

What the operator remembers of a MessageQueue (``context.QueueState``) lives in kopf's
per-object memo, shared by these handlers and gone with the MessageQueue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from conveyor_operator.alert_posting import post_alert
from conveyor_operator.applying import GROUP, PLURAL, VERSION, KubeApis
from conveyor_operator.autoscaling import STOP_GRACE_S, autoscale
from conveyor_operator.claiming import owner_of
from conveyor_operator.context import REDIS_ERRORS, Operator, OperatorConfig, QueueState
from conveyor_operator.queue_alerts import withdrawn
from conveyor_operator.reconciling import run_queue
from conveyor_operator.spec import MessageQueueSpec
from reliable_queue import QueueClient

__all__ = ["OperatorConfig", "build_registry"]

KEEP_DATA = MessageQueueSpec.model_fields["deletion_policy"].default


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """A registry of the operator's handlers, for ``kopf.operator``; one per operator, so that
    two operators in one process (tests) do not share one."""
    registry = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings, config)
        queues = QueueClient.from_url(config.redis_url, cluster=config.redis_cluster)
        memo["operator"] = Operator(config=config, queues=queues, apis=KubeApis())

    kopf.on.login(registry=registry)(login)
    kopf.on.cleanup(registry=registry)(cleanup)
    kopf.on.resume(*resource, registry=registry)(reconcile)
    kopf.on.create(*resource, registry=registry)(reconcile)
    kopf.on.update(*resource, field="spec", registry=registry)(reconcile)
    kopf.daemon(
        *resource,
        registry=registry,
        # Stopped (deleted, or a standby's pause): a poll in flight may finish, then it goes.
        cancellation_backoff=STOP_GRACE_S,
        cancellation_timeout=STOP_GRACE_S,
    )(autoscale)
    kopf.on.delete(*resource, registry=registry)(delete)
    return registry


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    settings.persistence.finalizer = f"{config.prefix}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=config.prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=config.prefix, key="last-handled-configuration"
    )
    # Namespaced: no cluster-wide scans of CRDs and namespaces, so a Role is enough.
    settings.scanning.disabled = not config.clusterwide
    # Events: the ones we post (Scaled, RedisUnavailable); kopf's own per-handler log lines
    # (every reconcile, every daemon start and stop) stay out of the log.
    settings.posting.level = logging.INFO
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Every API call has a deadline: a hung API server delays the operator, never wedges it.
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.connect_timeout = 10
    settings.peering.lifetime = config.peering_lifetime_s


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # In a pod: the ServiceAccount; elsewhere: KUBECONFIG (via the kubernetes client).
    return kopf.login_via_client(**kwargs)


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if "operator" in memo:
        await Operator.of(memo).queues.close()


async def reconcile(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
    await run_queue(Operator.of(memo), body, QueueState.of(memo), patch)


async def delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The Deployment goes with its owner (garbage collection); the Redis data is kept or
    deleted per deletionPolicy, and the claim released, only by the queue's owner. Never
    blocks the deletion when Redis is gone: a warning Event, and it lets go."""
    op, spec = Operator.of(memo), body["spec"]
    queues, state = op.queues, QueueState.known(memo)
    op.costs.forget(body["metadata"]["uid"])
    queue, me = spec["queue"], owner_of(body)
    op.config.metrics.forget(queue)
    if state is not None and state.alerts is not None:
        for change in withdrawn(state.alerts, "the MessageQueue was deleted"):
            await post_alert(op, body, queue, change)
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
