"""The kind workflow runs the suite that exists, with what the suite reads, on the two newest
Kubernetes minors the pinned kind version ships node images for, and on the oldest kept."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.helpers import KUBE_VERSION, ROOT


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


def minor(version: str) -> int:
    major, number = (int(n) for n in version.lstrip("v").split(".")[:2])
    assert major == 1, version
    return number


def test_the_newest_two_minors_and_the_oldest_kept() -> None:
    matrix = workflow()["jobs"]["e2e"]["strategy"]["matrix"]["include"]
    minors = [minor(m["kubernetes"]) for m in matrix]
    newest, second, oldest = minors
    assert newest == second + 1
    # The oldest kept is the release the chart tests render for.
    assert oldest == minor(KUBE_VERSION) < second
    # Each node image is the minor its job is named after, pinned by digest.
    for entry, m in zip(matrix, minors, strict=True):
        image, digest = entry["node_image"].split("@")
        assert minor(image.split(":")[1]) == m
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), entry
    # hack/tools.sh builds the newest for the offline run, as the workflow's newest.
    tools = (ROOT / "hack/tools.sh").read_text()
    built = re.search(r"^K8S_VERSION=\$\{CONVEYOR_K8S_VERSION:-(v[0-9.]+)\}$", tools, re.M)
    assert built, "hack/tools.sh sets K8S_VERSION=${CONVEYOR_K8S_VERSION:-vX.Y.Z}"
    assert minor(built.group(1)) == newest
