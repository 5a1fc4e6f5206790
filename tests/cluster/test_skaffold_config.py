"""skaffold.yaml agrees with the chart: every value it sets exists in the schema, the chart
renders with them, and the port-forward names the gateway Service that the chart makes."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import require_tools
from tests.helpers import KUBE_VERSION, ROOT

pytestmark = pytest.mark.cluster


def skaffold() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    return doc


def schema_has(path: str) -> bool:
    node: dict[str, Any] = json.loads((ROOT / "charts/conveyor/values.schema.json").read_text())
    for part in path.split("."):
        node = node.get("properties", {}).get(part)  # type: ignore[assignment]
        if node is None:
            return False
    return True


def test_every_value_skaffold_sets_is_in_the_schema() -> None:
    doc = skaffold()
    [release] = doc["deploy"]["helm"]["releases"]
    keys = set(release["setValues"]) | set(release["setValueTemplates"])
    for profile in doc["profiles"]:
        keys |= {p["path"].rsplit("/", 1)[1] for p in profile.get("patches", [])}
    assert keys, "skaffold sets no values?"
    assert [k for k in keys if not schema_has(k)] == []
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    assert doc["build"]["artifacts"][0]["image"] == "conveyor"


def test_the_chart_renders_with_them_and_the_forward_finds_the_gateway() -> None:
    helm = require_tools() / "helm"
    doc = skaffold()
    [release] = doc["deploy"]["helm"]["releases"]
    sets = [f"{k}={v}" for k, v in release["setValues"].items()]
    sets += ["image.repository=conveyor", "image.tag=dev@sha256:" + "0" * 64]
    out = subprocess.run(
        [str(helm), "template", release["name"], str(ROOT / release["chartPath"])]
        + ["--namespace", release["namespace"], "--kube-version", KUBE_VERSION]
        + [arg for s in sets for arg in ("--set", s)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    objects = [o for o in yaml.safe_load_all(out) if o]
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    [forward] = doc["portForward"]
    service = services[forward["resourceName"]]
    assert forward["port"] in [p["port"] for p in service["spec"]["ports"]]
    images = {
        c["image"]
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert "conveyor:dev@sha256:" + "0" * 64 in images
