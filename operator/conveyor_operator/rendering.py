"""A MessageQueue's worker Deployment and PodDisruptionBudget, rendered from its spec and the
operator's defaults.

Pure: the same MessageQueue and defaults always give the same manifest, so applying it again
is a no-op and someone's manual edit (drift) is put back by the next reconcile. Concurrency is
deliberately not in the pod template: it reaches running workers through the queue's policy in
Redis, and a template change would restart every pod.

Worker pods run as the release's worker ServiceAccount without a token (they never call the
Kubernetes API), carry the release's label (``conveyor.io/release``) so the release's
NetworkPolicies admit them to Redis, and get secrets only by reference (``secretKeyRef`` in
``WorkerDefaults.env``): nothing rendered here holds a secret value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GROUP_VERSION = "conveyor.io/v1alpha1"
RELEASE_LABEL = "conveyor.io/release"
"""Worker pods' label naming the Helm release whose NetworkPolicies admit them."""


@dataclass(frozen=True)
class WorkerDefaults:
    """What the chart gives the operator for every worker Deployment."""

    image: str
    resources: Mapping[str, Any] = field(default_factory=dict)
    drain_timeout_s: int = 20
    grace_period_s: int = 30
    env: Sequence[Mapping[str, Any]] = ()
    service_account: str = ""
    """The pods' ServiceAccount; empty: the namespace's ``default`` (tokens stay unmounted)."""
    release: str = ""
    """The Helm release, as the value of :data:`RELEASE_LABEL`; empty: no such label."""
    image_pull_secrets: Sequence[str] = ()
    image_pull_policy: str = ""
    """``imagePullPolicy`` of containers running :attr:`image` (a MessageQueue's own image keeps
    the cluster's default, ``Always`` for a ``:latest`` tag); empty: the cluster's default."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Extra labels on worker Deployments, budgets and pods (the chart's ``commonLabels``);
    never in selectors, and the operator's own labels win."""


# Kubernetes' own pattern for a resource quantity (500m, 1, 2Gi, 1e3).
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


def worker_problems(spec: Mapping[str, Any]) -> list[str]:
    """What in ``spec.worker`` the API would refuse but the CRD's schema cannot see (the
    resources are free-form there). Found here, they are reported in status with the field to
    fix, rather than as the API server's error on apply."""
    resources = (spec.get("worker") or {}).get("resources") or {}
    problems = []
    for key, values in resources.items():
        if key not in ("requests", "limits"):
            problems.append(f"spec.worker.resources.{key}: use requests and limits")
            continue
        for name, value in (values or {}).items():
            if not _QUANTITY.match(str(value)):
                problems.append(
                    f"spec.worker.resources.{key}.{name}: {value!r} is not a quantity "
                    "(e.g. 250m or 1 for cpu, 256Mi or 1Gi for memory)"
                )
    return problems


def deployment_name(mq_name: str) -> str:
    suffix = "-worker"
    return mq_name[: 63 - len(suffix)].rstrip("-") + suffix


def selector_labels(mq_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "conveyor",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/instance": mq_name[:63],
    }


def render_deployment(
    mq: Mapping[str, Any], *, replicas: int, defaults: WorkerDefaults
) -> dict[str, Any]:
    meta, spec = mq["metadata"], mq["spec"]
    worker = spec.get("worker") or {}
    name = meta["name"]
    labels = worker_labels(mq, defaults)
    args = ["work", "--queue", spec["queue"], "--drain-timeout", str(defaults.drain_timeout_s)]
    if worker.get("handler"):
        args += ["--handler", worker["handler"]]
    container: dict[str, Any] = {
        "name": "worker",
        "image": worker.get("image") or defaults.image,
        "args": args,
        "env": [*defaults.env, *(worker.get("env") or [])],
        "ports": [{"name": "http-probes", "containerPort": 8080}],
        # The probes of the chart's pods (conveyor.probes; a test holds them equal).
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http-probes"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http-probes"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "resources": dict(worker.get("resources") or defaults.resources),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # A writable /tmp on a read-only root filesystem.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }
    pod: dict[str, Any] = {
        # The workers never call the Kubernetes API: no token in their pods.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": max(defaults.grace_period_s, defaults.drain_timeout_s + 5),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if defaults.image_pull_policy and container["image"] == defaults.image:
        container["imagePullPolicy"] = defaults.image_pull_policy
    if defaults.service_account:
        pod["serviceAccountName"] = defaults.service_account
    if defaults.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in defaults.image_pull_secrets]
    if worker.get("nodeSelector"):
        pod["nodeSelector"] = dict(worker["nodeSelector"])
    if worker.get("tolerations"):
        pod["tolerations"] = list(worker["tolerations"])
    if worker.get("priorityClassName"):
        pod["priorityClassName"] = str(worker["priorityClassName"])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _owned_metadata(mq, labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(name)},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def render_disruption_budget(mq: Mapping[str, Any], *, defaults: WorkerDefaults) -> dict[str, Any]:
    """At most one worker pod of the queue evicted at a time (node drains, upgrades); a queue
    at zero or one replica is never blocked from draining."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _owned_metadata(mq, worker_labels(mq, defaults)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(mq["metadata"]["name"])},
        },
    }


def worker_labels(mq: Mapping[str, Any], defaults: WorkerDefaults) -> dict[str, str]:
    labels = {
        **defaults.labels,
        **selector_labels(mq["metadata"]["name"]),
        "app.kubernetes.io/part-of": "conveyor",
        "app.kubernetes.io/managed-by": "conveyor-operator",
        "conveyor.io/queue": mq["spec"]["queue"],
    }
    if defaults.release:
        labels[RELEASE_LABEL] = defaults.release[:63]
    return labels


def _owned_metadata(mq: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """Named after the MessageQueue and owned by it: deleting it deletes these (GC)."""
    meta = mq["metadata"]
    return {
        "name": deployment_name(meta["name"]),
        "namespace": meta["namespace"],
        "labels": dict(labels),
        "ownerReferences": [
            {
                "apiVersion": GROUP_VERSION,
                "kind": "MessageQueue",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
