"""A real Kubernetes control plane for the cluster tests: kwokctl's binary runtime with etcd,
kube-apiserver, kube-controller-manager and kube-scheduler built by hack/tools.sh, nodes and
pods simulated by kwok. Nothing is downloaded: every binary is passed by path."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.local_servers import tools_dir

TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kwokctl",
    "kubectl",
    "helm",
)


@dataclass
class KubeCluster:
    name: str
    kubeconfig: Path
    env: dict[str, str]

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, as_user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(tools_dir() / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        if as_user:
            cmd += ["--as", as_user]
        done = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, env=self.env, timeout=120
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(tools_dir() / "helm"), "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {done.stderr}")
        return done


def require_tools() -> Path:
    bin_dir = tools_dir()
    missing = [t for t in TOOLS if not os.access(bin_dir / t, os.X_OK)]
    if missing:
        message = f"{', '.join(missing)} not built: run hack/tools.sh k8s"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return bin_dir


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    bin_dir = require_tools()
    workdir = tmp_path_factory.mktemp("kwok")
    name = f"conveyor-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KWOK_WORKDIR": str(workdir), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    kubeconfig = workdir / "kubeconfig"
    kwokctl = str(bin_dir / "kwokctl")
    create = [
        kwokctl,
        "create",
        "cluster",
        "--name",
        name,
        "--runtime",
        "binary",
        "--kubeconfig",
        str(kubeconfig),
        "--kube-authorization",
        "--wait",
        "3m",
        "--etcd-binary",
        str(bin_dir / "etcd"),
        "--kube-apiserver-binary",
        str(bin_dir / "kube-apiserver"),
        "--kube-controller-manager-binary",
        str(bin_dir / "kube-controller-manager"),
        "--kube-scheduler-binary",
        str(bin_dir / "kube-scheduler"),
        "--kwok-controller-binary",
        str(bin_dir / "kwok"),
    ]
    done = subprocess.run(create, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"kwokctl create cluster failed:\n{done.stdout}\n{done.stderr}")
    cluster = KubeCluster(name, kubeconfig, env)
    try:
        subprocess.run(
            [kwokctl, "scale", "node", "--name", name, "--replicas", "2"],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
        yield cluster
    finally:
        subprocess.run(
            [kwokctl, "delete", "cluster", "--name", name],
            capture_output=True,
            env=env,
            timeout=120,
        )


CRD = (
    Path(__file__).resolve().parents[2]
    / "manifests"
    / "crd"
    / "bases"
    / "conveyor.io_messagequeues.yaml"
)


@pytest.fixture(scope="session")
def crd(kube: KubeCluster) -> KubeCluster:
    """The cluster with the MessageQueue CRD established."""
    kube.kubectl("apply", "--server-side", "-f", str(CRD))
    kube.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/messagequeues.conveyor.io"
    )
    return kube
