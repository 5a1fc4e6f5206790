"""A kind cluster with the Conveyor image loaded, for the end-to-end suite.

Runs where ``kind`` and a Docker engine are available: a developer's machine, or GitHub Actions
(.github/workflows/kind.yml, the two newest Kubernetes minors). ``KIND_CLUSTER`` names an
existing cluster to use; otherwise one is created (``KIND_NODE_IMAGE`` picks its node image)
and deleted afterwards. ``CONVEYOR_IMAGE`` names an image to load instead of building one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import ROOT

OFFLINE_REASON = (
    "kind cannot run on this machine yet: it is offline and kind needs a node image from a "
    "registry (the later kind issue builds one offline). The suite runs in GitHub Actions "
    "(.github/workflows/kind.yml) and anywhere kind and Docker are installed."
)


@dataclass
class Kind:
    name: str
    image: str
    timings: dict[str, float]

    def kubectl(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        cmd = ["kubectl", "--context", f"kind-{self.name}", "-n", "conveyor", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def helm(self, *args: str) -> str:
        cmd = ["helm", "--kube-context", f"kind-{self.name}", "-n", "conveyor", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)}: {done.stderr}")
        return done.stdout


def _run(*cmd: str, timeout: float = 1800) -> None:
    subprocess.run(cmd, check=True, timeout=timeout)


@pytest.fixture(scope="session")
def kind() -> Iterator[Kind]:
    missing = [t for t in ("kind", "docker", "kubectl", "helm") if shutil.which(t) is None]
    docker_up = (
        not missing and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    )
    if missing or not docker_up:
        pytest.skip(f"{OFFLINE_REASON} Missing here: {', '.join(missing) or 'a Docker engine'}.")
    timings: dict[str, float] = {}
    name = os.environ.get("KIND_CLUSTER", "")
    created = False
    started = time.monotonic()
    if not name:
        name = "conveyor-e2e"
        node = os.environ.get("KIND_NODE_IMAGE")
        _run(
            "kind",
            "create",
            "cluster",
            "--name",
            name,
            "--wait",
            "180s",
            *(("--image", node) if node else ()),
        )
        created = True
    timings["cluster up"] = time.monotonic() - started
    image = os.environ.get("CONVEYOR_IMAGE", "")
    started = time.monotonic()
    if not image:
        image = "conveyor:e2e"
        _run("docker", "build", "-t", image, str(ROOT))
    _run("kind", "load", "docker-image", image, "--name", name)
    timings["image built and loaded"] = time.monotonic() - started
    try:
        yield Kind(name, image, timings)
    finally:
        print("\nkind suite timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
        if created and not os.environ.get("KIND_KEEP"):
            _run("kind", "delete", "cluster", "--name", name)
