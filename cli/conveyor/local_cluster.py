"""A real Kubernetes control plane on this machine, for the cluster tests and the autoscaling
benchmark (``hack/bench.sh autoscale``): kwokctl's binary runtime with etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built by hack/tools.sh, nodes and pods simulated by
kwok. Nothing is downloaded: every binary is passed by path."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
MESSAGEQUEUE_CRD = Path("manifests") / "crd" / "bases" / "conveyor.io_messagequeues.yaml"


def missing_tools() -> list[str]:
    return [t for t in TOOLS if not os.access(tools_dir() / t, os.X_OK)]


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

    def install_crd(self, path: Path) -> None:
        """Apply a CRD and wait until it is served."""
        self.kubectl("apply", "--server-side", "-f", str(path))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(path))

    def delete(self) -> None:
        subprocess.run(
            [str(tools_dir() / "kwokctl"), "delete", "cluster", "--name", self.name],
            capture_output=True,
            env=self.env,
            timeout=120,
        )


def start_cluster(workdir: Path, *, nodes: int = 2) -> KubeCluster:
    """``kwokctl create cluster --runtime binary`` with RBAC on, and ``nodes`` kwok nodes."""
    bin_dir = tools_dir()
    if missing := missing_tools():
        raise FileNotFoundError(f"{', '.join(missing)} not built: run hack/tools.sh k8s")
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
            [kwokctl, "scale", "node", "--name", name, "--replicas", str(nodes)],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
    except BaseException:
        cluster.delete()
        raise
    return cluster
