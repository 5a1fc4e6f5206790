"""`helm install` on a real kube-apiserver: every object is accepted, the operator's
ServiceAccount can do what it needs and nothing more (each verb checked with `kubectl auth
can-i`), the uninstall hook's only what it needs, generated passwords survive an upgrade,
upgrade and uninstall are clean."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.cluster.chart import CHART
from tests.cluster.conftest import KubeCluster
from tests.helpers import KUBE_VERSION, ROOT

pytestmark = pytest.mark.cluster


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
        for i in kube.get("deploy,sts,svc,pdb,role,rolebinding,sa,cm,mq,netpol,secret", "-n", ns)[
            "items"
        ]
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
        "NetworkPolicy/conveyor-default-deny",
        "NetworkPolicy/conveyor-worker",
        "Secret/conveyor-redis",
        "Secret/conveyor-mqtt",
        "ServiceAccount/conveyor-worker",
    ):
        assert expected in names
    policy = f"conveyor-operator.{ns}"
    kube.kubectl("get", f"validatingadmissionpolicy/{policy}")
    kube.kubectl("get", f"validatingadmissionpolicybinding/{policy}")
    for sample in sorted((ROOT / "manifests" / "samples").glob("custom-*.yaml")):
        kube.kubectl("apply", "-n", ns, "-f", str(sample))


# Every verb the operator holds, with where its code uses it; and verbs it must not hold.
OPERATOR_VERBS = [
    ("list", "messagequeues.conveyor.io", True),  # kopf: the watch's initial listing
    ("watch", "messagequeues.conveyor.io", True),  # kopf: the watch
    ("patch", "messagequeues.conveyor.io", True),  # kopf: finalizer, progress annotations
    ("get", "messagequeues.conveyor.io", True),  # a read of one queue (claims' owners)
    ("patch", "messagequeues.conveyor.io/status", True),  # kopf: status via the subresource
    ("get", "deployments.apps", True),  # handlers._current_replicas
    ("create", "deployments.apps", True),  # server-side apply of a new worker Deployment
    ("patch", "deployments.apps", True),  # server-side apply (applying.py)
    ("get", "poddisruptionbudgets.policy", True),  # the worker PDB
    ("create", "poddisruptionbudgets.policy", True),  # server-side apply of the worker PDB
    ("patch", "poddisruptionbudgets.policy", True),
    ("create", "events", True),  # kopf.info / kopf.warn post core/v1 Events
    ("patch", "pods", True),  # applying.set_deletion_cost (only that, says the admission policy)
    # Not used by the operator's code:
    ("delete", "deployments.apps", False),  # owner references delete them with their queue
    ("update", "deployments.apps", False),
    ("list", "deployments.apps", False),
    ("watch", "deployments.apps", False),
    ("delete", "messagequeues.conveyor.io", False),  # the uninstall hook's, not the operator's
    ("update", "messagequeues.conveyor.io", False),
    ("create", "messagequeues.conveyor.io", False),
    ("update", "messagequeues.conveyor.io/scale", False),
    ("get", "messagequeues.conveyor.io/status", False),  # status is read with the object
    ("patch", "events", False),
    ("create", "events.events.k8s.io", False),
    ("patch", "kopfpeerings.kopf.dev", False),  # one replica: standalone, no peering
    ("get", "secrets", False),
    ("get", "configmaps", False),
    ("create", "pods", False),
    ("update", "pods", False),
    ("delete", "pods", False),
    ("get", "pods", False),  # the pods to patch are named by the workers' heartbeats
    ("list", "pods", False),
    ("watch", "pods", False),
    ("create", "pods/exec", False),
    ("patch", "pods/status", False),
    ("list", "namespaces", False),
    ("list", "nodes", False),
    ("create", "roles.rbac.authorization.k8s.io", False),
]


@pytest.mark.parametrize(("verb", "resource", "allowed"), OPERATOR_VERBS)
def test_operator_can_do_what_it_needs_and_no_more(
    release: tuple[KubeCluster, str], verb: str, resource: str, allowed: bool
) -> None:
    kube, ns = release
    who = f"system:serviceaccount:{ns}:conveyor-operator"
    # kubectl reads "kind/x" as an object named x: a subresource is asked with --subresource.
    kind, _, subresource = resource.partition("/")
    what = [kind, "--subresource", subresource] if subresource else [kind]
    done = kube.kubectl("auth", "can-i", verb, *what, "-n", ns, "--as", who, check=False)
    assert done.stdout.strip() == ("yes" if allowed else "no"), done.stderr
    elsewhere = kube.kubectl(
        "auth", "can-i", "create", "deployments.apps", "-n", "default", "--as", who, check=False
    )
    assert elsewhere.stdout.strip() == "no"  # namespaced by default


def test_the_operator_role_holds_only_the_verbs_listed_above(
    release: tuple[KubeCluster, str],
) -> None:
    kube, ns = release
    rules = kube.get("role/conveyor-operator", "-n", ns)["rules"]
    held = {
        (verb, as_kubectl_resource(group, resource))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert held == {(verb, resource) for verb, resource, allowed in OPERATOR_VERBS if allowed}


def as_kubectl_resource(group: str, resource: str) -> str:
    """("conveyor.io", "messagequeues/status") -> "messagequeues.conveyor.io/status"."""
    base, _, sub = resource.partition("/")
    name = f"{base}.{group}" if group else base
    return f"{name}/{sub}" if sub else name


def test_the_uninstall_hook_may_only_delete_messagequeues(
    release: tuple[KubeCluster, str],
) -> None:
    kube, ns = release
    # A pre-delete hook: its ServiceAccount exists only while helm uninstall runs.
    assert kube.kubectl("get", "sa/conveyor-uninstall", "-n", ns, check=False).returncode != 0
    rendered = kube.helm(
        "template",
        "conveyor",
        str(CHART),
        "-n",
        ns,
        "--kube-version",
        KUBE_VERSION,
        "-s",
        "templates/uninstall-rbac.yaml",
    )
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=rendered.stdout)
    who = f"system:serviceaccount:{ns}:conveyor-uninstall"
    for verb, resource, allowed in [
        ("list", "messagequeues.conveyor.io", True),
        ("delete", "messagequeues.conveyor.io", True),
        ("patch", "messagequeues.conveyor.io", True),  # the finalizer, past its timeout
        ("create", "messagequeues.conveyor.io", False),
        ("delete", "deployments.apps", False),
        ("get", "secrets", False),
        ("create", "pods", False),
        ("update", "pods", False),
        ("delete", "pods", False),
        ("get", "pods", False),
        ("list", "pods", False),
        ("watch", "pods", False),
        ("create", "pods/exec", False),
        ("patch", "pods/status", False),
    ]:
        done = kube.kubectl("auth", "can-i", verb, resource, "-n", ns, "--as", who, check=False)
        assert done.stdout.strip() == ("yes" if allowed else "no"), (verb, resource)
    done = kube.kubectl(
        "auth",
        "can-i",
        "delete",
        "messagequeues.conveyor.io",
        "-n",
        "default",
        "--as",
        who,
        check=False,
    )
    assert done.stdout.strip() == "no"


def test_upgrade_and_uninstall_are_clean(release: tuple[KubeCluster, str]) -> None:
    kube, ns = release
    passwords = {
        name: kube.get(f"secret/{name}", "-n", ns)["data"]
        for name in ("conveyor-redis", "conveyor-mqtt")
    }
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
    for name, data in passwords.items():  # looked up, not generated again
        assert kube.get(f"secret/{name}", "-n", ns)["data"] == data, name
    assert kube.kubectl("get", "deploy/conveyor-gateway", "-n", ns, check=False).returncode != 0
    kube.helm("uninstall", "conveyor", "-n", ns)
    left = kube.get(
        "all,pdb,role,rolebinding,sa,cm,mq,netpol,secret,job",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/instance=conveyor",
    )
    assert left["items"] == []
    policies = kube.kubectl("get", "validatingadmissionpolicy", "-o", "name").stdout
    assert f"conveyor-operator.{ns}" not in policies
