"""Where the chart's pods run, per component (operator, ingestor, gateway, the in-chart Redis
and Mosquitto): nodeSelector, tolerations, affinity, topologySpreadConstraints,
priorityClassName, podAnnotations and podLabels reach each pod template, the chart's own labels
win over podLabels, and the ingestor replicas spread over nodes by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.chart import one, render

pytestmark = pytest.mark.cluster

PODS = {  # values key -> (kind, name) of the workload
    "operator": ("Deployment", "conveyor-operator"),
    "ingestor": ("StatefulSet", "conveyor-ingestor"),
    "gateway": ("Deployment", "conveyor-gateway"),
    "redis": ("StatefulSet", "conveyor-redis"),
    "mqtt": ("StatefulSet", "conveyor-mosquitto"),
    "influxdb": ("StatefulSet", "conveyor-influxdb"),
}
TOLERATION = {"key": "plant", "operator": "Equal", "value": "line-1", "effect": "NoSchedule"}
AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
            ]
        }
    }
}
SPREAD = {
    "maxSkew": 2,
    "topologyKey": "topology.kubernetes.io/zone",
    "whenUnsatisfiable": "DoNotSchedule",
}


def template(docs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    kind, name = PODS[key]
    pod: dict[str, Any] = one(docs, kind, name)["spec"]["template"]
    return pod


def test_each_component_takes_its_own_scheduling(tmp_path: Path) -> None:
    values = {
        key: {
            "nodeSelector": {"disk": key},
            "tolerations": [TOLERATION],
            "affinity": AFFINITY,
            "topologySpreadConstraints": [SPREAD],
            "priorityClassName": f"plant-{key}",
            "podAnnotations": {"example.com/owner": key},
            "podLabels": {"team": key, "app.kubernetes.io/component": "redis"},
        }
        for key in PODS
    }
    values["influxdb"]["enabled"] = True  # optional: off by default
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    docs = render(values=file)
    for key in PODS:
        pod = template(docs, key)
        spec, meta = pod["spec"], pod["metadata"]
        assert spec["nodeSelector"] == {"disk": key}, key
        assert spec["tolerations"] == [TOLERATION], key
        assert spec["affinity"] == AFFINITY, key
        assert SPREAD in spec["topologySpreadConstraints"], key
        assert spec["priorityClassName"] == f"plant-{key}", key
        assert meta["annotations"]["example.com/owner"] == key, key
        assert meta["labels"]["team"] == key, key
        if key != "redis":  # the chart's own label wins: no pod poses as Redis
            assert meta["labels"]["app.kubernetes.io/component"] != "redis", key
    assert "checksum/config" in template(docs, "mqtt")["metadata"]["annotations"]


def test_by_default_only_the_ingestors_spread() -> None:
    docs = render("influxdb.enabled=true")
    for key in PODS:
        spec = template(docs, key)["spec"]
        assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName"} & set(spec), key
        assert ("topologySpreadConstraints" in spec) == (key == "ingestor"), key
    ingestor = template(docs, "ingestor")
    [spread] = ingestor["spec"]["topologySpreadConstraints"]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"]) == (
        "kubernetes.io/hostname",
        "ScheduleAnyway",
    )
    assert spread["labelSelector"]["matchLabels"].items() <= ingestor["metadata"]["labels"].items()
    off = template(render("ingestor.spreadAcrossNodes=false"), "ingestor")["spec"]
    assert "topologySpreadConstraints" not in off
