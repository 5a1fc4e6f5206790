"""``conveyor apply-crds`` leaves alone a live CRD with fields the chart's lacks (a newer chart
of another release): which fields a live schema has that the file's does not."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from conveyor.crd_command import fields_missing
from tests.helpers import ROOT

CRD = ROOT / "charts/conveyor/crds/conveyor.io_messagequeues.yaml"


def chart_crd() -> dict[str, Any]:
    [crd] = [d for d in yaml.safe_load_all(CRD.read_text()) if d]
    return crd


def spec_of(crd: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    return spec


def test_the_same_or_an_older_live_crd_lacks_nothing() -> None:
    assert fields_missing(chart_crd(), chart_crd()) == []
    older = chart_crd()
    del spec_of(older)["properties"]["alerts"]
    assert fields_missing(older, chart_crd()) == []  # the chart's is newer: apply it


def test_a_newer_live_crd_names_what_applying_would_take_away() -> None:
    newer = chart_crd()
    spec_of(newer)["properties"]["future"] = {"type": "string"}
    worker = spec_of(newer)["properties"]["worker"]["properties"]
    worker["env"]["items"]["properties"]["note"] = {"type": "string"}  # inside a list
    version = copy.deepcopy(newer["spec"]["versions"][0])
    version["name"] = "v1beta1"
    newer["spec"]["versions"].append(version)
    assert fields_missing(newer, chart_crd()) == [
        "v1alpha1:spec.worker.env[].note",
        "v1alpha1:spec.future",
        "v1beta1",
    ]
