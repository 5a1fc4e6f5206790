"""The kind workflow runs the suite that exists, with what the suite reads, on the two newest
Kubernetes minors the pinned kind version ships node images for."""

from __future__ import annotations

from typing import Any

import yaml

from tests.helpers import ROOT


def workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / ".github/workflows/kind.yml").read_text())
    return doc


def test_it_runs_the_kind_suite_against_the_cluster_it_creates() -> None:
    job = workflow()["jobs"]["e2e"]
    steps = {s.get("name", s.get("uses")): s for s in job["steps"]}
    cluster = steps["Create the kind cluster"]["with"]["cluster_name"]
    suite = steps["End-to-end suite"]
    assert suite["env"]["KIND_CLUSTER"] == cluster
    assert "tests/kind" in suite["run"]
    assert (ROOT / "tests/kind/test_conveyor_on_kind.py").is_file()
    assert suite["env"]["CONVEYOR_IMAGE"] in steps["Build the image"]["run"]


def test_two_consecutive_minors() -> None:
    minors = [m["kubernetes"] for m in workflow()["jobs"]["e2e"]["strategy"]["matrix"]["include"]]
    (major_a, a), (major_b, b) = (map(int, m.split(".")) for m in minors)
    assert (major_a, major_b) == (1, 1)
    assert a == b + 1
