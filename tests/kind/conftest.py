"""A kind cluster with the Conveyor, Redis, Mosquitto and InfluxDB images loaded, for the
end-to-end suite.

Needs nothing from a registry: the node image is built here
(``tests/infra/kind/node-image.sh``: Kubernetes from the Go module proxy, Debian's containerd)
and so are the images the chart runs (``hack/images.sh conveyor services``).
``KIND_NODE_IMAGE`` picks another node image (GitHub Actions runs kind's published ones);
``KIND_CLUSTER`` names an existing cluster to use; ``CONVEYOR_IMAGE`` an image to load instead
of building one; ``KIND_KEEP=1`` keeps the cluster.
The cluster has three nodes (``tests/infra/kind/cluster.yaml``): a control plane, the state node
(Redis, Mosquitto, InfluxDB; their images are loaded only there) and a second worker; its start
time and memory are in the summary. The suite installs into the namespace ``conveyor``, which the
fixture creates under the ``restricted`` Pod Security Standard.
``CONVEYOR_K8S_VERSION`` picks the Kubernetes release of the node image, and of the kubectl
hack/tools.sh builds (default: the newest the Go module proxy serves; ``v1.34.4`` is kept
working too); the summary names the cluster's.
Without kind or a Docker engine the suite skips, saying what to run; in CI it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.helpers import ROOT

# The chart's in-release Redis, Mosquitto and InfluxDB: built here FROM the local Debian base
# unless named (GitHub Actions pulls the public redis, eclipse-mosquitto and influxdb images).
REDIS_IMAGE = os.environ.get("KIND_REDIS_IMAGE", "conveyor.local/redis:7.0")
MOSQUITTO_IMAGE = os.environ.get("KIND_MOSQUITTO_IMAGE", "conveyor.local/mosquitto:2.0")
INFLUXDB_IMAGE = os.environ.get("KIND_INFLUXDB_IMAGE", "conveyor.local/influxdb:1.8")
SERVICE_IMAGES = (REDIS_IMAGE, MOSQUITTO_IMAGE, INFLUXDB_IMAGE)
# The namespace the suite installs into, under the `restricted` Pod Security Standard: the
# API server refuses any pod there that could run as root, escalate or add capabilities.
NAMESPACE = "conveyor"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
# What `restricted` asks of every pod and container there (runAsNonRoot needs a numeric USER in
# the image: the Conveyor, Redis and Mosquitto images have one).
RESTRICTED_POD = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def restricted_overrides(container: str) -> str:
    """For ``kubectl run --override-type strategic --overrides``: its pod made restricted."""
    spec = {
        "securityContext": RESTRICTED_POD,
        "containers": [{"name": container, "securityContext": RESTRICTED_CONTAINER}],
    }
    return json.dumps({"spec": spec})


def restricted_namespace(name: str) -> str:
    """A Namespace manifest (JSON, for ``kubectl apply -f -``) enforcing ``restricted``."""
    return json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}
    )


CLUSTER_CONFIG = ROOT / "tests/infra/kind/cluster.yaml"


def state_node(cluster: str) -> str:
    """The worker that cluster.yaml labels conveyor.io/state (kind names workers in order)."""
    return f"{cluster}-worker"


def other_node(cluster: str) -> str:
    """The worker that runs only what can move."""
    return f"{cluster}-worker2"


def node_memory(cluster: str) -> dict[str, float]:
    """MiB each node container of the cluster uses now, by node name (``docker stats``)."""
    nodes = _run("kind", "get", "nodes", "--name", cluster).split()
    out = _run("docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *nodes)
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 1024**2}  # "0B": stopped
    used: dict[str, float] = {}
    for line in out.splitlines():
        node, usage = line.split(" ", 1)
        amount = usage.split("/")[0].strip()
        unit = next(u for u in units if amount.endswith(u))
        used[node] = float(amount.removesuffix(unit)) * units[unit]
    return used


def memory(cluster: str) -> str:
    """What the cluster's nodes use now, in all and each, for the summary."""
    used = node_memory(cluster)
    nodes = ", ".join(f"{n} {m:.0f}" for n, m in sorted(used.items()))
    return f"{sum(used.values()):.0f} MiB ({nodes})"


@dataclass
class Kind:
    name: str
    image: str
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def state_node(self) -> str:
        return state_node(self.name)

    @property
    def other_node(self) -> str:
        return other_node(self.name)

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        namespace: str = NAMESPACE,
        stdin: str | None = None,
    ) -> str:
        cmd = ["kubectl", "--context", f"kind-{self.name}", "-n", namespace, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done.stdout

    def get(self, *args: str, namespace: str = NAMESPACE) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json", namespace=namespace))

    def helm(self, *args: str, check: bool = True) -> str:
        cmd = ["helm", "--kube-context", f"kind-{self.name}", "-n", "conveyor", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)}: {done.stderr}")
        return done.stdout


def server_version(cluster: str) -> str:
    """The cluster's Kubernetes release (v1.37.2)."""
    out = _run("kubectl", "--context", f"kind-{cluster}", "version", "-o", "json")
    return str(json.loads(out)["serverVersion"]["gitVersion"])


def _run(*cmd: str, timeout: float = 2700) -> str:
    """Runs a build or cluster command, its progress on the test's output; returns stdout."""
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited with {done.returncode}")
    return done.stdout


def _timed(timings: dict[str, float], what: str, *cmd: str) -> str:
    started = time.monotonic()
    out = _run(*cmd)
    timings[what] = time.monotonic() - started
    return out


REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("kind suite")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def kind() -> Iterator[Kind]:
    missing = [t for t in ("kind", "docker", "kubectl", "helm") if shutil.which(t) is None]
    if not missing and subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing.append("a running Docker engine")
    if missing:
        reason = (
            f"the kind suite needs {', '.join(missing)}: run hack/tools.sh kind k8s and "
            "hack/images.sh docker (hack/test.sh does both)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    timings: dict[str, float] = {}
    notes: list[str] = []
    image = os.environ.get("CONVEYOR_IMAGE", "")
    steps = [] if image else ["conveyor"]
    if any(i.startswith("conveyor.local/") for i in SERVICE_IMAGES):
        steps.append("services")
    if steps:
        _timed(timings, "images built", "bash", str(ROOT / "hack/images.sh"), *steps)
    image = image or "conveyor:dev"
    name = os.environ.get("KIND_CLUSTER", "")
    created = False
    if not name:
        node = os.environ.get("KIND_NODE_IMAGE", "")
        if not node:
            out = _timed(
                timings, "node image", "bash", str(ROOT / "tests/infra/kind/node-image.sh")
            )
            node = out.split()[-1]
        name = "conveyor-e2e"
        subprocess.run(["kind", "delete", "cluster", "--name", name], capture_output=True)
        started = time.monotonic()
        _run(
            *("kind", "create", "cluster", "--name", name, "--image", node),
            *("--config", str(CLUSTER_CONFIG), "--wait", "180s"),
        )
        created = True
    try:
        if created:  # --wait waits for the control plane; the workers join meanwhile
            _run(
                *("kubectl", "--context", f"kind-{name}", "wait", "--for=condition=Ready"),
                *("nodes", "--all", "--timeout=180s"),
            )
            timings["cluster up"] = time.monotonic() - started
        notes.append(f"Kubernetes {server_version(name)}")
        workers = f"{state_node(name)},{other_node(name)}"
        _timed(
            timings,
            "images loaded",
            *("kind", "load", "docker-image", image, "--name", name, "--nodes", workers),
        )
        _timed(
            timings,
            "store images loaded",
            *("kind", "load", "docker-image", *SERVICE_IMAGES),
            *("--name", name, "--nodes", state_node(name)),
        )
        notes.append(f"cluster memory, started: {memory(name)}")
        cluster = Kind(name, image, timings, notes)
        cluster.kubectl("apply", "-f", "-", stdin=restricted_namespace(NAMESPACE))
        yield cluster
    finally:
        try:
            notes.append(f"cluster memory, at the end: {memory(name)}")
        except AssertionError as e:  # the cluster is broken: the failure says so already
            notes.append(f"cluster memory, at the end: unread ({e})")
        # Shown in the run's summary (pytest_terminal_summary below), not only with -s.
        timed = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        REPORT.extend([*notes, f"timings: {timed}"])
        if created and not os.environ.get("KIND_KEEP"):
            _run("kind", "delete", "cluster", "--name", name)
