"""A real Kubernetes control plane for the cluster tests (conveyor.local_cluster): kwokctl's
binary runtime with etcd, kube-apiserver, kube-controller-manager and kube-scheduler built by
hack/tools.sh, nodes and pods simulated by kwok."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.local_cluster import MESSAGEQUEUE_CRD, KubeCluster, missing_tools, start_cluster
from conveyor.local_servers import tools_dir
from tests.helpers import ROOT, CliProcess, start_cli

__all__ = ["KubeCluster", "require_tools", "start_operator"]


def require_tools() -> Path:
    missing = missing_tools()
    if missing:
        message = f"{', '.join(missing)} not built: run hack/tools.sh k8s"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return tools_dir()


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    require_tools()
    cluster = start_cluster(tmp_path_factory.mktemp("kwok"))
    try:
        yield cluster
    finally:
        cluster.delete()


@pytest.fixture(scope="session")
def crd(kube: KubeCluster) -> KubeCluster:
    """The cluster with the MessageQueue CRD established."""
    kube.install_crd(ROOT / MESSAGEQUEUE_CRD)
    return kube


def start_operator(kube: KubeCluster, ns: str, redis_url: str, **env: str) -> CliProcess:
    """``conveyor operator`` watching ``ns``, as a process with the cluster's kubeconfig."""
    return start_cli(
        "operator",
        "--namespace",
        ns,
        redis_url=redis_url,
        KUBECONFIG=str(kube.kubeconfig),
        OPERATOR_WORKER_IMAGE="conveyor:test",
        **env,
    )


@pytest.fixture
def operator(
    kube: KubeCluster, crd: KubeCluster, redis_url: str
) -> Iterator[tuple[KubeCluster, str, CliProcess]]:
    """A fresh namespace with ``conveyor operator`` watching it; it must stop cleanly."""
    ns = f"op-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    proc = start_operator(kube, ns, redis_url)
    yield kube, ns, proc
    code = proc.stop()
    kube.kubectl("delete", "namespace", ns, "--wait=false")
    assert code == 0, proc.output()[-3000:]
