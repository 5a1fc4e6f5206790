"""The chart's monitoring, opt-in: ServiceMonitors for the ingestor, gateway and operator (with
a Service for the operator's metrics), a PodMonitor that selects the worker pods the operator
renders, a PrometheusRule and a Grafana dashboard whose every query names only metrics the
code exports; none of them by default."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from conveyor_gateway.metrics import GatewayMetrics
from conveyor_ingestor.metrics import IngestMetrics
from conveyor_operator.metrics import OperatorMetrics
from conveyor_operator.rendering import WorkerDefaults, render_deployment
from conveyor_worker.metrics import WorkerMetrics
from prometheus_client import CollectorRegistry

from reliable_queue.working import WorkerCounters
from tests.cluster.chart import by_kind, one, render
from tests.helpers import ROOT

pytestmark = pytest.mark.cluster
ON = ("serviceMonitor.enabled=true", "prometheusRule.enabled=true", "grafanaDashboard.enabled=true")
NAME = re.compile(r"\b(conveyor_[a-z_]+)\b")


def exported() -> set[str]:
    """Every series name the operator, workers, ingestor and gateway expose."""
    registries: list[CollectorRegistry] = [
        OperatorMetrics().registry,
        IngestMetrics().registry,
        GatewayMetrics().registry,
    ]
    worker = WorkerMetrics()
    worker.watch(SimpleNamespace(queue="q", counters=WorkerCounters(), concurrency=1))  # type: ignore[arg-type]
    registries.append(worker.registry)
    names = set()
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def names_in(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in NAME.findall(expr)}


def test_nothing_by_default() -> None:
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not [d for d in by_kind(render(), "ConfigMap") if "conveyor.json" in d.get("data", {})]


def test_monitors_select_what_serves_metrics() -> None:
    docs = render(*ON)
    monitors = {d["metadata"]["name"]: d for d in by_kind(docs, "ServiceMonitor")}
    assert set(monitors) == {"conveyor-ingestor", "conveyor-gateway", "conveyor-operator"}
    service = one(docs, "Service", "conveyor-operator")
    operator = one(docs, "Deployment", "conveyor-operator")
    pod_labels = operator["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitors["conveyor-operator"]["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    [ports] = [c["ports"] for c in operator["spec"]["template"]["spec"]["containers"]]
    assert "http-probes" in {p["name"] for p in ports}

    [podmonitor] = by_kind(docs, "PodMonitor")
    mq = {
        "metadata": {"name": "orders", "namespace": "conveyor", "uid": "u"},
        "spec": {"queue": "o"},
    }
    defaults = WorkerDefaults(
        image="conveyor:0", service_account="conveyor-worker", release="conveyor"
    )
    worker = render_deployment(mq, replicas=1, defaults=defaults)["spec"]["template"]
    selector: dict[str, str] = podmonitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= worker["metadata"]["labels"].items()
    [endpoint] = podmonitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in worker["spec"]["containers"][0]["ports"]}


def test_alert_rules_and_dashboard_use_exported_metrics() -> None:
    docs = render(*ON, "prometheusRule.labels.release=kube-prometheus")
    [rule] = by_kind(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    rules: list[dict[str, Any]] = rule["spec"]["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == [
        "ConveyorQueueAlert",
        "ConveyorIngestorDisconnected",
        "ConveyorJobsDeadLettered",
    ]
    assert all('namespace="conveyor"' in r["expr"] for r in rules)
    assert "{{ $labels.queue }}" in rules[0]["annotations"]["summary"]  # left for Prometheus
    [dashboard_map] = [d for d in by_kind(docs, "ConfigMap") if "conveyor.json" in d["data"]]
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(dashboard_map["data"]["conveyor.json"])
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    unknown = (names_in(queries) | names_in([r["expr"] for r in rules])) - exported()
    assert not unknown, f"queries name metrics nothing exports: {sorted(unknown)}"
    assert len(names_in(queries)) >= 15, "the dashboard lost its panels"

    rules_off = render(
        *ON, "prometheusRule.ingestorDisconnectedFor=", "prometheusRule.queueAlerts=false"
    )
    [rule] = by_kind(rules_off, "PrometheusRule")
    assert [r["alert"] for r in rule["spec"]["groups"][0]["rules"]] == ["ConveyorJobsDeadLettered"]


def test_a_misspelt_metric_is_caught() -> None:
    assert names_in(["rate(conveyor_worker_procesed_total[1m])"]) - exported() == {
        "conveyor_worker_procesed_total"
    }


def test_the_plant_dashboard_ships_on_its_own_value() -> None:
    """``grafanaDashboard.plant`` adds the InfluxDB dashboard (its queries are run against
    InfluxDB in tests/dashboards); either dashboard ships without the other."""
    shipped = (ROOT / "charts" / "conveyor" / "dashboards" / "conveyor-plant.json").read_text()

    def dashboards(*values: str) -> dict[str, str]:
        maps = [
            d
            for d in by_kind(render(*values), "ConfigMap")
            if d["metadata"]["name"].endswith("-dashboard")
        ]
        return {k: v for m in maps for k, v in m["data"].items()}

    assert dashboards() == {}
    assert set(dashboards("grafanaDashboard.enabled=true")) == {"conveyor.json"}
    plant = dashboards("grafanaDashboard.plant=true")
    assert plant == {"conveyor-plant.json": shipped}
    assert set(dashboards("grafanaDashboard.enabled=true", "grafanaDashboard.plant=true")) == {
        "conveyor.json",
        "conveyor-plant.json",
    }
