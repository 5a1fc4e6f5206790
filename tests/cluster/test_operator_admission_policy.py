"""The chart's ValidatingAdmissionPolicy on a real kube-apiserver: a Deployment applied as the
operator's ServiceAccount (`kubectl --as`, as a stolen token would) is refused unless it is a
worker Deployment as the operator renders it: a foreign image, a hostPath volume, another
ServiceAccount, a command override, a privileged or otherwise unconfined container (root, no
drop of ALL capabilities, Unconfined seccomp), an init container, a hostPort, a chosen node or
runtime, a priority class the installer did not allow, pod labels of another component or
release, an environment variable outside the operator's own and a MessageQueue's
APP_/WORKER_/ALERT_ names, or a foreign Secret are each refused with the policy's message; the
operator's own rendering (with the environment its worker_env gives, and a MessageQueue's
variables) is accepted; an image under operator.allowedImages is accepted, one that only looks
like it is not, and so is a priority class of worker.allowedPriorityClasses; and nobody but the
operator is bound by it. On pods, the operator may set the pod-deletion-cost annotation of the
release's worker pods and change nothing else, on no other pod."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cluster.chart import CHART
from tests.cluster.conftest import KubeCluster
from tests.helpers import wait_until

pytestmark = pytest.mark.cluster
WORKER_IMAGE = "conveyor:0.1.0"  # the chart's image at its appVersion
INFLUX_SECRET = "conveyor-influx"
MQ_ENV = (  # as a MessageQueue's spec.worker.env may set them
    {"name": "APP_MODE", "value": "strict"},
    {"name": "WORKER_INFLUX_BATCH", "value": "500"},
    {"name": "ALERT_WEBHOOK_URL", "value": "https://hooks.example/x"},
)


@pytest.fixture(scope="module")
def release(kube: KubeCluster, crd: KubeCluster) -> Iterator[tuple[KubeCluster, str]]:
    ns = f"vap-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    kube.helm(
        "install",
        "conveyor",
        str(CHART),
        "-n",
        ns,
        "--set",
        "operator.allowedImages={registry.example/team/,registry.example/tools/app}",
        "--set",
        "worker.allowedPriorityClasses={conveyor-alerts}",
        "--set",
        f"influx.existingSecret={INFLUX_SECRET}",
    )
    yield kube, ns
    kube.helm("uninstall", "conveyor", "-n", ns, check=False)
    kube.kubectl("delete", "namespace", ns, "--wait=false")


def worker(kube: KubeCluster, ns: str) -> dict[str, Any]:
    """The worker Deployment of the chart's `alerts` queue, rendered by the operator's code,
    with the environment the operator gives every worker (Redis and InfluxDB, both with a
    Secret) and variables of the MessageQueue."""
    from conveyor_operator.rendering import WorkerDefaults, render_deployment

    from conveyor.operator_command import OperatorSettings, worker_env
    from conveyor.settings import InfluxSettings, RedisSettings

    mq = kube.get("mq/alerts", "-n", ns)
    mq["spec"].setdefault("worker", {})["env"] = list(MQ_ENV)
    env = worker_env(
        OperatorSettings(redis_secret="conveyor-redis", influx_secret=INFLUX_SECRET),
        RedisSettings(url="redis://conveyor-redis:6379/0", password=None, cluster=False),
        InfluxSettings(url="http://influxdb:8086", org="-", bucket="conveyor/autogen"),
        log_format="json",
    )
    defaults = WorkerDefaults(
        image=WORKER_IMAGE,
        service_account="conveyor-worker",
        release="conveyor",
        env=tuple(env),
    )
    deployment = render_deployment(mq, replicas=0, defaults=defaults)
    deployment["metadata"]["name"] = f"w-{uuid.uuid4().hex[:6]}"
    return deployment


def apply_as_operator(kube: KubeCluster, ns: str, manifest: dict[str, Any]) -> tuple[bool, str]:
    done = kube.kubectl(
        "apply",
        "--server-side",
        "--field-manager",
        "conveyor-operator",
        "-n",
        ns,
        "-f",
        "-",
        stdin=json.dumps(manifest),
        check=False,
        as_user=f"system:serviceaccount:{ns}:conveyor-operator",
    )
    return done.returncode == 0, done.stderr


def refused(kube: KubeCluster, ns: str, manifest: dict[str, Any]) -> str:
    """The refusal's message; waits (bounded) for the API server to load a new policy."""

    def attempt() -> str:
        ok, err = apply_as_operator(kube, ns, manifest)
        if not ok:
            assert "denied request" in err, err  # refused by the policy, not by RBAC
            return err
        kube.kubectl("delete", "deployment", manifest["metadata"]["name"], "-n", ns)
        return ""

    return wait_until(
        attempt, timeout=30, interval=0.5, what="the admission policy to refuse the Deployment"
    )


def container(d: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = d["spec"]["template"]["spec"]["containers"][0]
    return c


def pod(d: dict[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = d["spec"]["template"]["spec"]
    return p


def pod_labels(d: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = d["spec"]["template"]["metadata"]["labels"]
    return labels


def env_entry(d: dict[str, Any], name: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [e for e in container(d)["env"] if e["name"] == name]
    [entry] = entries
    return entry


def pose_as_redis(d: dict[str, Any]) -> None:
    """Pod labels (and the selector, which must match them) of the release's Redis."""
    for labels in (pod_labels(d), d["spec"]["selector"]["matchLabels"]):
        labels.update(
            {"app.kubernetes.io/component": "redis", "app.kubernetes.io/instance": "conveyor"}
        )


def an_init_container(d: dict[str, Any]) -> None:
    """A native sidecar (an init container that keeps running) beside the worker."""
    pod(d)["initContainers"] = [{**container(d), "name": "sidecar", "restartPolicy": "Always"}]


Change = Callable[[dict[str, Any]], object]
ATTACKS: dict[str, tuple[Change, str]] = {
    "foreign image": (
        lambda d: container(d).update(image="evil.example/miner:1"),
        "is not allowed",
    ),
    "image next to an allowed prefix": (
        lambda d: container(d).update(image="registry.example/team-evil/app:1"),
        "is not allowed",
    ),
    "image beside an allowed repository": (
        lambda d: container(d).update(image="registry.example/tools/app-evil:1"),
        "is not allowed",
    ),
    "hostPath volume": (
        lambda d: d["spec"]["template"]["spec"]["volumes"].append(
            {"name": "host", "hostPath": {"path": "/"}}
        ),
        "no volume but their emptyDir",
    ),
    "another ServiceAccount": (
        lambda d: d["spec"]["template"]["spec"].update(serviceAccountName="default"),
        "run as the ServiceAccount conveyor-worker",
    ),
    "a mounted token": (
        lambda d: d["spec"]["template"]["spec"].update(automountServiceAccountToken=True),
        "automountServiceAccountToken false",
    ),
    "hostNetwork": (
        lambda d: d["spec"]["template"]["spec"].update(hostNetwork=True),
        "no host namespace",
    ),
    "privileged": (
        lambda d: container(d)["securityContext"].update(
            privileged=True,
            allowPrivilegeEscalation=True,  # the API refuses one without the other
        ),
        "are not privileged",
    ),
    "command override": (
        lambda d: container(d).update(command=["sh", "-c", "cat /etc/secrets"]),
        "no command override",
    ),
    "a foreign Secret": (
        lambda d: env_entry(d, "INFLUX_TOKEN").update(
            valueFrom={"secretKeyRef": {"name": "other", "key": "k"}}
        ),
        "secrets by reference only from conveyor-redis, conveyor-influx",
    ),
    "unlabelled": (
        lambda d: d["metadata"]["labels"].pop("app.kubernetes.io/managed-by"),
        "labelled app.kubernetes.io/managed-by=conveyor-operator",
    ),
    "pods posing as Redis": (pose_as_redis, "app.kubernetes.io/component=worker (no other"),
    "pods without the release label": (
        lambda d: pod_labels(d).pop("conveyor.io/release"),
        "labelled conveyor.io/release=conveyor",
    ),
    "pods of another release": (
        lambda d: pod_labels(d).update({"conveyor.io/release": "other"}),
        "labelled conveyor.io/release=conveyor",
    ),
    "pods not managed by the operator": (
        lambda d: pod_labels(d).pop("app.kubernetes.io/managed-by"),
        "and app.kubernetes.io/managed-by=conveyor-operator, so that",
    ),
    "an init container": (an_init_container, "no init or ephemeral containers"),
    "a chosen node": (lambda d: pod(d).update(nodeName="node-0"), "set no nodeName"),
    "a priority class": (
        lambda d: pod(d).update(priorityClassName="system-cluster-critical"),
        "no priorityClassName but one of worker.allowedPriorityClasses",
    ),
    "another runtime": (
        lambda d: pod(d).update(runtimeClassName="unconfined"),
        "set no nodeName or runtimeClassName",
    ),
    "a hostPort": (
        lambda d: container(d)["ports"][0].update(hostPort=8080),
        "have no hostPort",
    ),
    "privilege escalation": (
        lambda d: container(d)["securityContext"].update(allowPrivilegeEscalation=True),
        "set allowPrivilegeEscalation false",
    ),
    "an added capability": (
        lambda d: container(d)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        "add no capabilities",
    ),
    "capabilities kept": (
        lambda d: container(d)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
        "capabilities.drop holds ALL",
    ),
    "a container as root": (
        lambda d: container(d)["securityContext"].update(runAsUser=0),
        "worker containers run confined",
    ),
    "a container allowed root": (
        lambda d: container(d)["securityContext"].update(runAsNonRoot=False),
        "worker containers run confined",
    ),
    "a pod as root": (
        lambda d: pod(d)["securityContext"].update(runAsUser=0),
        "worker containers run confined",
    ),
    "a pod allowed root": (
        lambda d: pod(d)["securityContext"].update(runAsNonRoot=False),
        "and run as non-root",
    ),
    "an unconfined container": (
        lambda d: container(d)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "no Unconfined seccomp",
    ),
    "an unconfined pod": (
        lambda d: pod(d)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "no Unconfined seccomp",
    ),
    "LD_PRELOAD": (
        lambda d: container(d)["env"].append({"name": "LD_PRELOAD", "value": "/tmp/x.so"}),
        "worker env names are the operator's own",
    ),
    "PYTHONPATH": (
        lambda d: container(d)["env"].append({"name": "PYTHONPATH", "value": "/tmp"}),
        "worker env names are the operator's own",
    ),
    "a lower-case APP_ name": (
        lambda d: container(d)["env"].append({"name": "app_x", "value": "1"}),
        "worker env names are the operator's own",
    ),
    "a MessageQueue's name by reference": (
        lambda d: container(d)["env"].append(
            {
                "name": "APP_X",
                "valueFrom": {"secretKeyRef": {"name": "conveyor-redis", "key": "redis-password"}},
            }
        ),
        "by reference only REDIS_PASSWORD and INFLUX_TOKEN",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_operator_cannot_create_what_the_policy_refuses(
    release: tuple[KubeCluster, str], attack: str
) -> None:
    kube, ns = release
    change, message = ATTACKS[attack]
    manifest = worker(kube, ns)
    change(manifest)
    assert message in refused(kube, ns, manifest)


def test_the_operators_own_rendering_is_accepted(release: tuple[KubeCluster, str]) -> None:
    kube, ns = release
    probe = worker(kube, ns)
    probe["spec"]["template"]["spec"]["hostPID"] = True
    refused(kube, ns, probe)  # the policy is in force
    own = worker(kube, ns)
    names = {e["name"] for e in container(own)["env"]}
    assert {"INFLUX_TOKEN", "REDIS_PASSWORD", "APP_MODE"} <= names  # the whole set is tried
    ok, err = apply_as_operator(kube, ns, own)
    assert ok, err
    for image in ("registry.example/team/app:1", "registry.example/tools/app@sha256:" + "a" * 64):
        allowed = worker(kube, ns)
        container(allowed)["image"] = image
        ok, err = apply_as_operator(kube, ns, allowed)
        assert ok, (image, err)
    allowed = worker(kube, ns)
    pod(allowed)["priorityClassName"] = "conveyor-alerts"  # worker.allowedPriorityClasses
    ok, err = apply_as_operator(kube, ns, allowed)
    assert ok, err


def test_changing_a_worker_into_an_arbitrary_pod_is_refused(
    release: tuple[KubeCluster, str],
) -> None:
    kube, ns = release
    manifest = worker(kube, ns)
    ok, err = apply_as_operator(kube, ns, manifest)
    assert ok, err
    container(manifest)["image"] = "evil.example/miner:1"
    assert "is not allowed" in refused(kube, ns, manifest)


def test_only_the_operator_is_bound(release: tuple[KubeCluster, str]) -> None:
    kube, ns = release
    manifest = worker(kube, ns)
    container(manifest)["image"] = "evil.example/miner:1"
    refused(kube, ns, manifest)
    kube.kubectl("apply", "--server-side", "-n", ns, "-f", "-", stdin=json.dumps(manifest))


# --- Pods: the operator patches one annotation of worker pods, nothing else ---------------------

COST = "controller.kubernetes.io/pod-deletion-cost"


def a_pod(
    kube: KubeCluster,
    ns: str,
    labels: dict[str, str],
    *,
    annotated: bool = True,
    owner: dict[str, Any] | None = None,
) -> str:
    """A pod made by the test (as an admin), labelled as ``labels`` says."""
    name = f"p-{uuid.uuid4().hex[:6]}"
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if annotated:
        metadata["annotations"] = {"team": "line-3"}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "worker", "image": WORKER_IMAGE}]},
    }
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(manifest))
    return name


def patch_as_operator(
    kube: KubeCluster, ns: str, pod: str, patch: dict[str, Any], kind: str = "merge"
) -> str:
    """The API server's refusal ('' when the patch went through). A merge patch as the operator
    sends (``applying.set_deletion_cost``), as its ServiceAccount (kubectl patch would first
    read the pod, which the operator may not); ``kind`` "strategic-merge" for a container."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = config.new_client_from_config(config_file=str(kube.kubeconfig))
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{ns}:conveyor-operator")
    try:
        client.CoreV1Api(api).patch_namespaced_pod(
            pod, ns, patch, _content_type=f"application/{kind}-patch+json"
        )
    except ApiException as exc:
        message = str(json.loads(exc.body)["message"])
        assert "denied request" in message, message  # by the policy, not by RBAC
        return message
    finally:
        api.close()
    return ""


WORKER_POD = {
    "app.kubernetes.io/component": "worker",
    "app.kubernetes.io/managed-by": "conveyor-operator",
    "conveyor.io/release": "conveyor",
}


def test_the_operator_may_set_only_a_worker_pods_deletion_cost(
    release: tuple[KubeCluster, str],
) -> None:
    kube, ns = release
    worker_pod = a_pod(kube, ns, WORKER_POD)
    # The policy is in force (a new one takes the API server a moment to load).
    wait_until(
        lambda: patch_as_operator(kube, ns, worker_pod, {"metadata": {"labels": {"x": "y"}}}),
        timeout=30,
        interval=0.5,
        what="the admission policy to refuse a label change",
    )
    assert patch_as_operator(kube, ns, worker_pod, {"metadata": {"annotations": {COST: "3"}}}) == ""
    assert kube.get(f"pod/{worker_pod}", "-n", ns)["metadata"]["annotations"][COST] == "3"
    only_the_cost = "pod-deletion-cost annotation and nothing else"
    for patch in (
        {"metadata": {"labels": {"app.kubernetes.io/component": "redis"}}},
        {"metadata": {"annotations": {"team": "other"}}},
        {"metadata": {"annotations": {"team": None}}},
        {"metadata": {"annotations": {COST: "0", "extra": "1"}}},
        {"metadata": {"annotations": {COST: "0"}, "finalizers": ["example.com/hold"]}},
        {"spec": {"activeDeadlineSeconds": 5}},
    ):
        assert only_the_cost in patch_as_operator(kube, ns, worker_pod, patch), patch
    evil = {"spec": {"containers": [{"name": "worker", "image": "evil.example/miner:1"}]}}
    assert only_the_cost in patch_as_operator(kube, ns, worker_pod, evil, "strategic-merge")
    # A pod without annotations takes its first; an owned pod cannot be orphaned (its
    # ReplicaSet would start another, past maxReplicas).
    bare = a_pod(kube, ns, WORKER_POD, annotated=False)
    assert patch_as_operator(kube, ns, bare, {"metadata": {"annotations": {COST: "1"}}}) == ""
    kube.kubectl("create", "configmap", "owner", "-n", ns)
    uid = kube.get("configmap/owner", "-n", ns)["metadata"]["uid"]
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
    owned = a_pod(kube, ns, WORKER_POD, owner=ref)
    orphan = {"metadata": {"ownerReferences": None, "annotations": {COST: "1"}}}
    assert only_the_cost in patch_as_operator(kube, ns, owned, orphan)
    for labels in (
        {**WORKER_POD, "app.kubernetes.io/component": "redis"},
        {**WORKER_POD, "conveyor.io/release": "other"},
        {k: v for k, v in WORKER_POD.items() if k != "app.kubernetes.io/managed-by"},
    ):
        other = a_pod(kube, ns, labels)
        refusal = patch_as_operator(kube, ns, other, {"metadata": {"annotations": {COST: "1"}}})
        assert "may only change worker pods of release conveyor" in refusal, labels
