"""NetworkPolicies are enforced on the kind cluster (kind-netpol in the offline node image, see
tests/infra/kind/netpol; kindnet on kind's published node images), so the chart's policies hold
in the suite as they would on a plant's cluster. In two namespaces of the test's own, under the
restricted Pod Security Standard, clients connecting through Services, the servers on the state
node and the clients on the other worker (one beside the server): each connection crosses nodes,
and each node judges it for its own pods.

- pods on different nodes reach each other by their own addresses and through Services, and
  each node routes the others' pod ranges through them (the offline image's kind-netpol);
- a Redis server behind a default-deny ingress policy and a policy admitting one label of its
  namespace is reached by the labelled client, and by nobody else: not by an unlabelled pod
  beside it, not by a pod with the client's labels in another namespace (namespaceSelector);
  the kubelet's probes still reach it;
- an egress default-deny cuts a pod's outgoing connections, lets its DNS through where a rule
  allows it and not where none does, and leaves pods it does not select alone.

Each connection or lookup gives up after 3 s. The test waits for a policy by retrying until its
effect shows (a client cut off, then admitted), then asserts every outcome several times.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.kind.conftest import (
    REDIS_IMAGE,
    RESTRICTED_CONTAINER,
    RESTRICTED_POD,
    Kind,
    restricted_namespace,
)

pytestmark = [pytest.mark.kind, pytest.mark.timeout(900)]

PORT = 6379
ATTEMPT_S = 3  # a connection or lookup gives up after this long
REPEATS = 3  # each outcome is asserted this many times in a row
POLICY_WAIT_S = 90  # the longest a policy may take to show; tried with no pause between tries
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # the label the API server gives each namespace

# Run in a client pod by the Conveyor image's Python: connect, PING, say what came back.
CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3])) as s:
        s.sendall(b"PING\\r\\n")
        print("reached", s.recv(64).decode().strip())
except OSError as exc:
    print("blocked", type(exc).__name__)
"""
# A lookup in a thread, given up after the bound (the resolver's own retries take longer).
RESOLVE = """
import socket, sys, threading
found = []
def lookup():
    try:
        found.append(socket.gethostbyname(sys.argv[1]))
    except OSError:
        pass
worker = threading.Thread(target=lookup, daemon=True)
worker.start()
worker.join(float(sys.argv[2]))
print("resolved " + found[0] if found else "unresolved")
"""


@dataclass
class Namespaces:
    """The test's namespaces: ``home`` holds the server, ``other`` the open server."""

    home: str
    other: str
    server: str  # the ClusterIP of the home namespace's Redis
    open_server: str  # the ClusterIP of the other namespace's Redis, under no policy
    open_server_name: str


def pod(name: str, image: str, labels: dict[str, str], node: str, **extra: Any) -> Any:
    container = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": RESTRICTED_CONTAINER,
        **extra,
    }
    spec = {
        "securityContext": RESTRICTED_POD,
        "terminationGracePeriodSeconds": 1,
        "nodeSelector": {"kubernetes.io/hostname": node},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {**spec, "containers": [container]},
    }


def redis(name: str, node: str) -> list[Any]:
    server = pod(
        name,
        REDIS_IMAGE,
        {"app": name},
        node,
        # uid 999: redis in both the local image and the public one (whose entrypoint would
        # otherwise start as root).
        securityContext={**RESTRICTED_CONTAINER, "runAsUser": 999},
        command=["redis-server", "--protected-mode", "no", "--save", ""],
        ports=[{"containerPort": PORT}],
        readinessProbe={"tcpSocket": {"port": PORT}, "periodSeconds": 2, "failureThreshold": 2},
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": PORT, "targetPort": PORT}]},
    }
    return [server, service]


def client(name: str, image: str, labels: dict[str, str], node: str) -> Any:
    return pod(name, image, labels, node, command=["sleep", "infinity"])


def apply(kind: Kind, namespace: str, *objects: Any) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    kind.kubectl("apply", "-f", "-", stdin=json.dumps(listed), namespace=namespace)


def policy(name: str, spec: dict[str, Any]) -> Any:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def reaches(kind: Kind, namespace: str, pod: str, address: str) -> bool:
    out = kind.kubectl(
        *("exec", pod, "--", "python", "-c", CONNECT, address, str(PORT), str(ATTEMPT_S)),
        namespace=namespace,
        timeout=60,
    ).strip()
    assert out == "reached +PONG" or out.startswith("blocked"), out
    return out == "reached +PONG"


def blocked(kind: Kind, namespace: str, pod: str, address: str) -> bool:
    return not reaches(kind, namespace, pod, address)


def resolves(kind: Kind, namespace: str, pod: str, name: str) -> str:
    out = kind.kubectl(
        *("exec", pod, "--", "python", "-c", RESOLVE, name, str(ATTEMPT_S)),
        namespace=namespace,
        timeout=60,
    ).strip()
    return out.removeprefix("resolved ") if out.startswith("resolved ") else ""


@pytest.fixture(scope="module")
def namespaces(kind: Kind) -> Iterator[Namespaces]:
    # On the offline node image kind-netpol enforces policies: ready means its rules are in.
    if kind.kubectl("get", "daemonset", "kind-netpol", namespace="kube-system", check=False):
        kind.kubectl(
            *("rollout", "status", "daemonset/kind-netpol", "--timeout=180s"),
            namespace="kube-system",
        )
    suffix = secrets.token_hex(3)
    home, other = f"np-{suffix}", f"np-{suffix}-other"
    for name in (home, other):
        kind.kubectl("apply", "-f", "-", stdin=restricted_namespace(name))
    # The servers on the state node (where the Redis image is), clients across on the other.
    there, here = kind.state_node, kind.other_node
    try:
        apply(
            kind,
            home,
            *redis("server", there),
            client("client", kind.image, {"role": "client"}, here),
            client("stranger", kind.image, {}, there),
        )
        apply(
            kind,
            other,
            *redis("open-server", there),
            client("outsider", kind.image, {"role": "client"}, here),
            client("dns-only", kind.image, {"role": "dns-only"}, here),
            client("sealed", kind.image, {"role": "sealed"}, here),
        )
        for name in (home, other):
            kind.kubectl(
                "wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s", namespace=name
            )

        def cluster_ip(namespace: str, service: str) -> str:
            return kind.kubectl(
                "get", "service", service, "-o", "jsonpath={.spec.clusterIP}", namespace=namespace
            )

        yield Namespaces(
            home=home,
            other=other,
            server=cluster_ip(home, "server"),
            open_server=cluster_ip(other, "open-server"),
            open_server_name=f"open-server.{other}.svc.cluster.local.",
        )
    finally:
        for name in (home, other):
            kind.kubectl("delete", "namespace", name, "--wait=false", check=False)


def node_routes(node: str) -> set[tuple[str, str]]:
    """The pod routes kind-netpol set on a node container: (pod range, via)."""
    out = subprocess.run(
        ["docker", "exec", node, "ip", "-4", "route", "show", "proto", "77"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {(f[0], f[2]) for f in (line.split() for line in out.splitlines()) if f[1:2] == ["via"]}


def test_pods_on_different_nodes_reach_each_other(kind: Kind, namespaces: Namespaces) -> None:
    other = namespaces.other
    pods = {p["metadata"]["name"]: p for p in kind.get("pods", namespace=other)["items"]}
    server, outsider = pods["open-server"], pods["outsider"]
    assert server["spec"]["nodeName"] != outsider["spec"]["nodeName"], "placed on one node"
    nodes = {n["metadata"]["name"]: n for n in kind.get("nodes")["items"]}
    assert len(nodes) == 3, sorted(nodes)
    for p in (server, outsider):  # each pod addressed from its own node's range
        node_range = ipaddress.ip_network(nodes[p["spec"]["nodeName"]]["spec"]["podCIDR"])
        assert ipaddress.ip_address(p["status"]["podIP"]) in node_range, (p["status"], node_range)
    # No policy here yet: pod to pod across nodes, by its own address and through its Service.
    for address in (server["status"]["podIP"], namespaces.open_server):
        wait_until(
            partial(reaches, kind, other, "outsider", address),
            what=f"a pod on {outsider['spec']['nodeName']} to reach {address} across nodes",
            timeout=60,
            interval=0,
        )
    if not kind.kubectl("get", "daemonset", "kind-netpol", namespace="kube-system", check=False):
        return  # kindnet (kind's published node images) routes its own way
    internal = {
        name: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
        for name, n in nodes.items()
    }
    for name in nodes:
        expected = {(nodes[o]["spec"]["podCIDR"], internal[o]) for o in nodes if o != name}
        assert node_routes(name) == expected, f"{name}'s pod routes"


def test_only_the_labelled_client_of_the_namespace_reaches_the_server(
    kind: Kind, namespaces: Namespaces
) -> None:
    home, other, server = namespaces.home, namespaces.other, namespaces.server
    clients = [(home, "client"), (home, "stranger"), (other, "outsider")]
    # With no policy yet, everyone gets through: a failure below is the policies' doing.
    for namespace, name in clients:
        wait_until(
            partial(reaches, kind, namespace, name, server),
            what=f"{name} to reach the server",
            timeout=60,
            interval=0,
        )

    applied = time.monotonic()
    deny_all = {"podSelector": {}, "policyTypes": ["Ingress"]}
    apply(kind, home, policy("default-deny", deny_all))
    wait_until(
        partial(blocked, kind, home, "client", server),
        what="default-deny to cut the client off",
        timeout=POLICY_WAIT_S,
        interval=0,
    )
    denied_after = time.monotonic() - applied

    applied = time.monotonic()
    labelled_here = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME: home}},
        "podSelector": {"matchLabels": {"role": "client"}},
    }
    allow = {
        "podSelector": {"matchLabels": {"app": "server"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [labelled_here], "ports": [{"protocol": "TCP", "port": PORT}]}],
    }
    apply(kind, home, policy("clients-to-server", allow))
    wait_until(
        partial(reaches, kind, home, "client", server),
        what="the allow policy to admit the client",
        timeout=POLICY_WAIT_S,
        interval=0,
    )
    allowed_after = time.monotonic() - applied

    for _ in range(REPEATS):
        assert reaches(kind, home, "client", server), "the labelled client was refused"
        assert not reaches(kind, home, "stranger", server), "an unlabelled pod got through"
        assert not reaches(kind, other, "outsider", server), (
            "a pod with the client's labels in another namespace got through"
        )
    # The kubelet's probes are not pods' traffic: the server stayed ready behind default-deny.
    ready = kind.kubectl(
        "get",
        "pod",
        "server",
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        namespace=home,
    )
    assert ready == "True", "the server's readiness probe was cut off by the policies"
    kind.timings["policy shown"] = max(denied_after, allowed_after)
    kind.notes.append(
        f"network policies: default-deny seen {denied_after:.1f}s after apply, the allow policy "
        f"{allowed_after:.1f}s after (each try up to {ATTEMPT_S}s)"
    )


def test_egress_default_deny_lets_out_only_the_dns_it_allows(
    kind: Kind, namespaces: Namespaces
) -> None:
    other, target, name = namespaces.other, namespaces.open_server, namespaces.open_server_name
    for pod_name in ("dns-only", "sealed", "outsider"):
        wait_until(
            partial(reaches, kind, other, pod_name, target),
            what=f"{pod_name} to reach it",
            timeout=60,
            interval=0,
        )
    for pod_name in ("dns-only", "sealed"):
        wait_until(
            partial(resolves, kind, other, pod_name, name),
            what=f"{pod_name} to resolve it",
            timeout=60,
            interval=0,
        )

    dns = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {NAMESPACE_NAME: "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    dns_only = {
        "podSelector": {"matchLabels": {"role": "dns-only"}},
        "policyTypes": ["Egress"],
        "egress": [dns],
    }
    sealed = {"podSelector": {"matchLabels": {"role": "sealed"}}, "policyTypes": ["Egress"]}
    apply(kind, other, policy("dns-only", dns_only), policy("sealed", sealed))
    for pod_name in ("dns-only", "sealed"):
        wait_until(
            partial(blocked, kind, other, pod_name, target),
            what=f"{pod_name} to be cut off",
            timeout=POLICY_WAIT_S,
            interval=0,
        )

    for _ in range(REPEATS):
        assert not reaches(kind, other, "dns-only", target), "egress default-deny let it out"
        assert resolves(kind, other, "dns-only", name) == target, "the allowed DNS was cut off"
        assert resolves(kind, other, "sealed", name) == "", "DNS got out with no rule allowing it"
        assert reaches(kind, other, "outsider", target), "a pod no policy selects was cut off"
