"""`helm install` on a real kube-apiserver: every object is accepted, the operator's
ServiceAccount can do what it needs and nothing more, upgrade and uninstall are clean."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.cluster.conftest import KubeCluster
from tests.helpers import ROOT

pytestmark = pytest.mark.cluster
CHART = ROOT / "charts" / "conveyor"


@pytest.fixture
def release(kube: KubeCluster, crd: KubeCluster) -> Iterator[tuple[KubeCluster, str]]:
    ns = f"rel-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    kube.helm("install", "conveyor", str(CHART), "-n", ns)
    yield kube, ns
    kube.helm("uninstall", "conveyor", "-n", ns, check=False)
    kube.kubectl("delete", "namespace", ns, "--wait=false")


def test_every_object_is_accepted(release: tuple[KubeCluster, str]) -> None:
    kube, ns = release
    names = {
        f"{i['kind']}/{i['metadata']['name']}"
        for i in kube.get("deploy,sts,svc,pdb,role,rolebinding,sa,cm,mq", "-n", ns)["items"]
    }
    for expected in (
        "Deployment/conveyor-operator",
        "Deployment/conveyor-gateway",
        "StatefulSet/conveyor-ingestor",
        "StatefulSet/conveyor-redis",
        "StatefulSet/conveyor-mosquitto",
        "Service/conveyor-gateway",
        "PodDisruptionBudget/conveyor-ingestor",
        "Role/conveyor-operator",
        "ServiceAccount/conveyor-operator",
        "MessageQueue/alerts",
        "MessageQueue/mqtt-realtime",
        "MessageQueue/mqtt-spc",
        "MessageQueue/mqtt-tech",
    ):
        assert expected in names
    for sample in sorted((ROOT / "manifests" / "samples").glob("custom-*.yaml")):
        kube.kubectl("apply", "-n", ns, "-f", str(sample))


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("watch", "messagequeues.conveyor.io", True),
        ("patch", "messagequeues.conveyor.io/status", True),
        ("update", "messagequeues.conveyor.io/scale", True),
        ("create", "deployments.apps", True),
        ("delete", "deployments.apps", True),
        ("create", "events", True),
        ("patch", "kopfpeerings.kopf.dev", True),
        ("get", "secrets", False),
        ("create", "pods", False),
        ("delete", "messagequeues.conveyor.io", True),  # the uninstall hook runs as it
        ("create", "messagequeues.conveyor.io", False),
        ("list", "nodes", False),
        ("create", "roles.rbac.authorization.k8s.io", False),
    ],
)
def test_operator_can_do_what_it_needs_and_no_more(
    release: tuple[KubeCluster, str], verb: str, resource: str, allowed: bool
) -> None:
    kube, ns = release
    who = f"system:serviceaccount:{ns}:conveyor-operator"
    done = kube.kubectl("auth", "can-i", verb, resource, "-n", ns, "--as", who, check=False)
    assert done.stdout.strip() == ("yes" if allowed else "no"), done.stderr
    elsewhere = kube.kubectl(
        "auth", "can-i", "create", "deployments.apps", "-n", "default", "--as", who, check=False
    )
    assert elsewhere.stdout.strip() == "no"  # namespaced by default


def test_upgrade_and_uninstall_are_clean(release: tuple[KubeCluster, str]) -> None:
    kube, ns = release
    kube.helm(
        "upgrade",
        "conveyor",
        str(CHART),
        "-n",
        ns,
        "--set",
        "ingestor.replicas=3",
        "--set",
        "gateway.enabled=false",
    )
    assert kube.get("sts/conveyor-ingestor", "-n", ns)["spec"]["replicas"] == 3
    assert kube.kubectl("get", "deploy/conveyor-gateway", "-n", ns, check=False).returncode != 0
    kube.helm("uninstall", "conveyor", "-n", ns)
    left = kube.get(
        "all,pdb,role,rolebinding,sa,cm,mq", "-n", ns, "-l", "app.kubernetes.io/instance=conveyor"
    )
    assert left["items"] == []
