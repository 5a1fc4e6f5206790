"""The chart's NetworkPolicies, evaluated by the Kubernetes rules (policies add up; a pod
selected for a direction is denied what no rule allows; a peer with a namespaceSelector and a
podSelector needs both) against the pods the chart and the operator make and against
attackers: a pod of the release's namespace without the right labels, and a pod of another
namespace with copied labels. Enforcement itself is proven on kind (tests/kind)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.cluster.chart import Doc, by_kind, render

pytestmark = pytest.mark.cluster
NS = "conveyor"


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)


Endpoint = Pod | str  # a pod, or an address outside the cluster's pods


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def peer_matches(peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if isinstance(other, Pod):
            return False  # pod IPs are not modelled: no chart rule names them by address
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif other.namespace != policy_ns:
        return False
    return selects(peer.get("podSelector") or {}, other.labels)


def port_matches(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in ports
    )


def allowed(
    policies: list[Doc], pod: Pod, other: Endpoint, port: int, direction: str, protocol: str
) -> bool:
    key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and selects(p["spec"]["podSelector"], pod.labels)
        and direction in p["spec"]["policyTypes"]
    ]
    if not selecting:
        return True  # not isolated in this direction
    return any(
        port_matches(rule, port, protocol)
        and (
            peers not in rule
            or any(peer_matches(peer, p["metadata"]["namespace"], other) for peer in rule[peers])
        )
        for p in selecting
        for rule in p["spec"].get(key) or []
    )


def connects(
    policies: list[Doc], client: Endpoint, server: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    out = not isinstance(client, Pod) or allowed(policies, client, server, port, "Egress", protocol)
    into = not isinstance(server, Pod) or allowed(
        policies, server, client, port, "Ingress", protocol
    )
    return out and into


def release_pods(docs: list[Doc]) -> dict[str, Pod]:
    pods = {
        d["metadata"]["name"].removeprefix("conveyor-"): Pod(
            NS, d["spec"]["template"]["metadata"]["labels"]
        )
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    }
    from conveyor_operator.rendering import WorkerDefaults, render_deployment

    mq = {
        "metadata": {"name": "mqtt-realtime", "namespace": NS, "uid": "u"},
        "spec": {"queue": "mqtt_realtime"},
    }
    worker = render_deployment(
        mq, replicas=1, defaults=WorkerDefaults(image="conveyor:test", release="conveyor")
    )
    pods["worker"] = Pod(NS, worker["spec"]["template"]["metadata"]["labels"])
    return pods


DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
API_SERVER = "172.18.0.2"  # a control plane node, outside the pod network
INTERNET = "203.0.113.7"


@pytest.fixture(scope="module")
def chart() -> tuple[list[Doc], dict[str, Pod]]:
    docs = render("influx.url=http://influx.example:8086")
    return by_kind(docs, "NetworkPolicy"), release_pods(docs)


def test_redis_admits_the_release_and_its_workers_only(
    chart: tuple[list[Doc], dict[str, Pod]],
) -> None:
    policies, pods = chart
    redis = pods["redis"]
    for client in ("operator", "ingestor", "gateway", "worker"):
        assert connects(policies, pods[client], redis, 6379), client
    for client in ("mosquitto", "uninstall"):
        assert not connects(policies, pods[client], redis, 6379), client
    stranger = Pod(NS, {"app": "debug"})
    copycat = Pod("tenant", dict(pods["gateway"].labels))
    copied_worker = Pod("tenant", dict(pods["worker"].labels))
    for attacker in (stranger, copycat, copied_worker):
        assert not connects(policies, attacker, redis, 6379), attacker
    assert not connects(policies, pods["gateway"], redis, 6380)


def test_the_in_chart_influxdb_admits_the_workers_and_the_gateway_only() -> None:
    docs = render("influxdb.enabled=true")
    policies, pods = by_kind(docs, "NetworkPolicy"), release_pods(docs)
    influxdb = pods["influxdb"]
    for client in ("worker", "gateway"):
        assert connects(policies, pods[client], influxdb, 8086), client
    for client in ("operator", "ingestor", "redis", "mosquitto", "uninstall"):
        assert not connects(policies, pods[client], influxdb, 8086), client
    stranger = Pod(NS, {"app": "debug"})
    copied_worker = Pod("tenant", dict(pods["worker"].labels))
    for attacker in (stranger, copied_worker):
        assert not connects(policies, attacker, influxdb, 8086), attacker
    assert not connects(policies, pods["worker"], influxdb, 8088)  # backups: the pod's own
    assert not connects(policies, influxdb, INTERNET, 443)  # it reaches nothing
    assert not connects(policies, pods["worker"], INTERNET, 8086)  # its writes go to it only


def test_the_broker_admits_the_ingestor_and_labelled_mqtt_clients_of_the_namespace(
    chart: tuple[list[Doc], dict[str, Pod]],
) -> None:
    policies, pods = chart
    broker = pods["mosquitto"]
    simulator = Pod(NS, {"run": "simulator", "conveyor.io/mqtt-client": "true"})
    # The ingestors on their own listener (ready before publishers are let in), publishers on
    # 1883: neither on the other's.
    assert connects(policies, pods["ingestor"], broker, 1884)
    assert not connects(policies, pods["ingestor"], broker, 1883)
    assert connects(policies, simulator, broker, 1883)
    assert not connects(policies, simulator, broker, 1884)
    for client in ("worker", "gateway", "operator", "redis"):
        for port in (1883, 1884):
            assert not connects(policies, pods[client], broker, port), (client, port)
    assert not connects(policies, Pod(NS, {"run": "debug"}), broker, 1883)
    assert not connects(policies, Pod("tenant", dict(simulator.labels)), broker, 1883)
    assert not connects(policies, INTERNET, broker, 1883)


def test_extra_mqtt_clients_come_from_values() -> None:
    docs = render("networkPolicy.mqttClients[0].ipBlock.cidr=10.20.0.0/16")
    policies, pods = by_kind(docs, "NetworkPolicy"), release_pods(docs)
    assert connects(policies, "10.20.3.4", pods["mosquitto"], 1883)
    assert not connects(policies, INTERNET, pods["mosquitto"], 1883)


def test_each_component_reaches_only_what_it_needs(
    chart: tuple[list[Doc], dict[str, Pod]],
) -> None:
    policies, pods = chart
    for name, pod in pods.items():
        if name not in ("redis", "mosquitto"):
            assert connects(policies, pod, DNS, 53, "UDP"), name
            assert connects(policies, pod, DNS, 53, "TCP"), name
    for name in ("operator", "uninstall"):
        assert connects(policies, pods[name], API_SERVER, 443), name
        assert connects(policies, pods[name], API_SERVER, 6443), name
    for name in ("ingestor", "gateway", "worker", "redis", "mosquitto"):
        assert not connects(policies, pods[name], API_SERVER, 6443), name
    assert connects(policies, pods["worker"], "198.51.100.9", 8086)  # influx.url's port
    for name, pod in pods.items():
        assert not connects(policies, pod, INTERNET, 80), name
        assert not connects(policies, pod, INTERNET, 25), name
    assert not connects(policies, pods["redis"], DNS, 53, "UDP")
    assert not connects(policies, pods["gateway"], pods["mosquitto"], 1883)


def test_probes_metrics_and_the_gateway_stay_reachable(
    chart: tuple[list[Doc], dict[str, Pod]],
) -> None:
    policies, pods = chart
    prometheus = Pod("monitoring", {"app": "prometheus"})
    for name in ("operator", "ingestor", "worker"):
        assert connects(policies, prometheus, pods[name], 8080), name
        assert not connects(policies, prometheus, pods[name], 9999), name
    assert connects(policies, INTERNET, pods["gateway"], 8000)
    assert not connects(policies, prometheus, pods["redis"], 6379)


def test_the_gateway_can_be_narrowed_to_its_ingress() -> None:
    docs = render(
        "networkPolicy.gatewayFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=ingress",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
    )
    policies, pods = by_kind(docs, "NetworkPolicy"), release_pods(docs)
    ingress, prometheus = Pod("ingress", {"app": "nginx"}), Pod("monitoring", {"app": "prom"})
    assert connects(policies, ingress, pods["gateway"], 8000)
    assert connects(policies, prometheus, pods["gateway"], 8000)  # its metrics
    assert not connects(policies, Pod("tenant"), pods["gateway"], 8000)
    assert not connects(policies, ingress, pods["ingestor"], 8080)


def test_workers_egress_can_be_opened_for_webhooks() -> None:
    docs = render(
        "networkPolicy.workerEgress[0].to[0].ipBlock.cidr=192.0.2.0/24",
        "networkPolicy.workerEgress[0].ports[0].port=443",
    )
    policies, pods = by_kind(docs, "NetworkPolicy"), release_pods(docs)
    assert connects(policies, pods["worker"], "192.0.2.10", 443)
    assert not connects(policies, pods["worker"], INTERNET, 443)
    assert not connects(policies, pods["worker"], "198.51.100.9", 8086)  # no influx.url here


def test_an_external_redis_and_broker_are_reached_on_their_urls_ports() -> None:
    docs = render(
        "redis.enabled=false",
        "redis.url=rediss://redis.example:6380/0",
        "redis.existingSecret=redis",
        "mqtt.enabled=false",
        "mqtt.brokerUrl=mqtts://broker.example",
    )
    policies, pods = by_kind(docs, "NetworkPolicy"), release_pods(docs)
    assert connects(policies, pods["worker"], "198.51.100.20", 6380)
    assert not connects(policies, pods["worker"], "198.51.100.20", 6379)
    assert connects(policies, pods["ingestor"], "198.51.100.21", 8883)
    assert not connects(policies, pods["gateway"], "198.51.100.21", 8883)
