"""The chart's ValidatingAdmissionPolicy on a real kube-apiserver: a Deployment applied as the
operator's ServiceAccount (`kubectl --as`, as a stolen token would) is refused unless it is a
worker Deployment as the operator renders it: a foreign image, a hostPath volume, another
ServiceAccount, a command override, a privileged container or a foreign Secret are each
refused with the policy's message; the operator's own rendering is accepted; an image under
operator.allowedImages is accepted, one that only looks like it is not; and nobody but the
operator is bound by it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cluster.chart import CHART
from tests.cluster.conftest import KubeCluster

pytestmark = pytest.mark.cluster
WORKER_IMAGE = "conveyor:0.1.0"  # the chart's image at its appVersion


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
    )
    yield kube, ns
    kube.helm("uninstall", "conveyor", "-n", ns, check=False)
    kube.kubectl("delete", "namespace", ns, "--wait=false")


def worker(kube: KubeCluster, ns: str) -> dict[str, Any]:
    """The worker Deployment of the chart's `alerts` queue, rendered by the operator's code."""
    from conveyor_operator.rendering import WorkerDefaults, render_deployment

    mq = kube.get("mq/alerts", "-n", ns)
    secret = {"secretKeyRef": {"name": "conveyor-redis", "key": "redis-password"}}
    defaults = WorkerDefaults(
        image=WORKER_IMAGE,
        service_account="conveyor-worker",
        release="conveyor",
        env=({"name": "REDIS_PASSWORD", "valueFrom": secret},),
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
    deadline = time.monotonic() + 30
    while True:
        ok, err = apply_as_operator(kube, ns, manifest)
        if not ok:
            assert "denied request" in err, err  # refused by the policy, not by RBAC
            return err
        kube.kubectl("delete", "deployment", manifest["metadata"]["name"], "-n", ns)
        assert time.monotonic() < deadline, "the admission policy never refused it"
        time.sleep(0.5)


def container(d: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = d["spec"]["template"]["spec"]["containers"][0]
    return c


Change = Callable[[dict[str, Any]], None]
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
        lambda d: container(d)["env"].append(
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}
        ),
        "secrets by reference only from conveyor-redis",
    ),
    "unlabelled": (
        lambda d: d["metadata"]["labels"].pop("app.kubernetes.io/managed-by"),
        "labelled app.kubernetes.io/managed-by=conveyor-operator",
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
    ok, err = apply_as_operator(kube, ns, worker(kube, ns))
    assert ok, err
    for image in ("registry.example/team/app:1", "registry.example/tools/app@sha256:" + "a" * 64):
        allowed = worker(kube, ns)
        container(allowed)["image"] = image
        ok, err = apply_as_operator(kube, ns, allowed)
        assert ok, (image, err)


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
