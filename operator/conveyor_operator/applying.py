"""The operator's own Kubernetes API calls (kopf makes the rest): reading and server-side
applying a queue's worker Deployment and PodDisruptionBudget, setting its worker pods'
deletion costs before a scale-in, writing the autoscaler's status of a MessageQueue, and
looking up a MessageQueue. It reads no pod and deletes
nothing: what it makes goes with its MessageQueue (owner references).

Every call carries a request timeout, so a hung API server delays a handler, never wedges it;
errors become kopf's retryable ``TemporaryError`` or, when the API refuses the object itself
(422), :class:`InvalidSpec`, which retrying cannot fix.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from conveyor_operator.deletion_costs import ANNOTATION
from conveyor_operator.rendering import deployment_name

GROUP, VERSION, PLURAL = "conveyor.io", "v1alpha1", "messagequeues"
FIELD_MANAGER = "conveyor-operator"
REQUEST_TIMEOUT = (5.0, 20.0)
"""(connect, read) seconds of every API call the operator makes itself."""


class InvalidSpec(Exception):
    """The spec cannot run: the installer does not allow it, or the API refused the worker
    Deployment made from it. The message says why."""


class KubeApis:
    """The API groups the operator calls, built once (in the startup handler)."""

    def __init__(self) -> None:
        self.apps = k8s.AppsV1Api()
        self.core = k8s.CoreV1Api()  # only to patch worker pods' deletion costs
        self.policy = k8s.PolicyV1Api()
        self.custom = k8s.CustomObjectsApi()


async def current_replicas(apis: KubeApis, body: Mapping[str, Any]) -> int | None:
    """The worker Deployment's replicas; None when it does not exist."""
    name, ns = deployment_name(body["metadata"]["name"]), body["metadata"]["namespace"]
    try:
        deployment = await asyncio.to_thread(
            apis.apps.read_namespaced_deployment, name, ns, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise kopf.TemporaryError(
            f"cannot read Deployment {ns}/{name}: {exc.reason}", delay=5
        ) from exc
    return int(deployment.spec.replicas or 0)


async def apply_deployment(apis: KubeApis, manifest: Mapping[str, Any]) -> None:
    """Server-side apply: creates it, or puts back whatever someone changed."""
    await _apply(apis.apps.patch_namespaced_deployment, "Deployment", manifest)


async def apply_disruption_budget(apis: KubeApis, manifest: Mapping[str, Any]) -> None:
    await _apply(
        apis.policy.patch_namespaced_pod_disruption_budget, "PodDisruptionBudget", manifest
    )


async def _apply(patch: Any, kind: str, manifest: Mapping[str, Any]) -> None:
    name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        await asyncio.to_thread(
            patch,
            name,
            ns,
            manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status == 422:  # Invalid: retrying the same spec cannot help
            raise InvalidSpec(f"the API refused it: {api_message(exc)}") from exc
        raise kopf.TemporaryError(
            f"cannot apply {kind} {ns}/{name}: {exc.reason}", delay=5
        ) from exc


async def set_deletion_cost(apis: KubeApis, namespace: str, pod: str, cost: str) -> None:
    """A merge patch of that one annotation (all the admission policy lets the operator change
    on a pod); a pod gone meanwhile is no error."""
    try:
        await asyncio.to_thread(
            apis.core.patch_namespaced_pod,
            pod,
            namespace,
            {"metadata": {"annotations": {ANNOTATION: cost}}},
            _content_type="application/merge-patch+json",
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


async def patch_status(apis: KubeApis, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    """A merge patch of the MessageQueue's status subresource, as kopf writes a handler's
    ``patch.status``; a MessageQueue gone meanwhile is no error."""
    name, ns = body["metadata"]["name"], body["metadata"]["namespace"]
    try:
        await asyncio.to_thread(
            apis.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            ns,
            PLURAL,
            name,
            {"status": dict(status)},
            _content_type="application/merge-patch+json",
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status != 404:
            raise kopf.TemporaryError(
                f"cannot write the status of MessageQueue {ns}/{name}: {api_message(exc)}"
            ) from exc


async def messagequeue_uid(apis: KubeApis, namespace: str, name: str) -> str | None:
    """The uid of MessageQueue ``namespace/name``; None if it does not exist. Raises
    ApiException for anything else (e.g. 403 outside the namespaces the operator may read)."""
    try:
        found: Any = await asyncio.to_thread(
            apis.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return str(found["metadata"]["uid"])


def api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)
