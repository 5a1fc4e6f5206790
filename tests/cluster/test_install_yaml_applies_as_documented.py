"""manifests/install.yaml used as its header says, on a real kube-apiserver: the header's own
commands (namespace, Secrets, `kubectl apply --server-side`) run in a shell whose default
namespace is `default`, and every namespaced object lands in `conveyor`, none elsewhere;
nothing in the file holds a password."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from conveyor.local_servers import tools_dir
from tests.cluster.conftest import KubeCluster
from tests.helpers import ROOT

pytestmark = pytest.mark.cluster
INSTALL = ROOT / "manifests" / "install.yaml"
NS = "conveyor"


def documented_commands() -> list[str]:
    """The header's command lines (`#   kubectl ...`)."""
    header = []
    for line in INSTALL.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").rstrip())
    return [line for line in header if line.startswith("kubectl ")]


@pytest.fixture
def installed(kube: KubeCluster, crd: KubeCluster) -> Iterator[KubeCluster]:
    if kube.kubectl("get", "namespace", NS, check=False).returncode == 0:
        pytest.fail(f"namespace {NS} exists already: this test needs it for itself")
    env = {
        **kube.env,
        "KUBECONFIG": str(kube.kubeconfig),
        "PATH": f"{tools_dir()}:{os.environ['PATH']}",
    }
    try:
        for command in documented_commands():
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=INSTALL.parent,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{command}: {done.stderr}"
        yield kube
    finally:
        for doc in yaml.safe_load_all(INSTALL.read_text()):
            if doc and doc["kind"].startswith("ValidatingAdmissionPolicy"):
                kube.kubectl("delete", doc["kind"], doc["metadata"]["name"], check=False)
        kube.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def test_every_namespaced_object_lands_in_the_namespace(installed: KubeCluster) -> None:
    kube = installed
    commands = documented_commands()
    assert any("create secret generic conveyor-redis" in c for c in commands)
    assert commands[-1] == "kubectl apply --server-side -f install.yaml"
    namespaced = {
        line.split()[-1]
        for line in kube.kubectl(
            "api-resources", "--namespaced=true", "--no-headers"
        ).stdout.splitlines()
    }
    docs = [d for d in yaml.safe_load_all(INSTALL.read_text()) if d]
    for doc in docs:
        if doc["kind"] not in namespaced:
            continue
        assert doc["metadata"].get("namespace") == NS, f"{doc['kind']}/{doc['metadata']['name']}"
        live = kube.get(doc["kind"], doc["metadata"]["name"], "-n", NS)
        assert live["metadata"]["namespace"] == NS
    strays = kube.get(
        "all,sa,role,rolebinding,cm,netpol,secret",
        "-n",
        "default",
        "-l",
        "app.kubernetes.io/part-of=conveyor",
    )
    assert strays["items"] == []
    assert {d["kind"] for d in docs} >= {"ServiceAccount", "Role", "NetworkPolicy", "Deployment"}


def test_install_yaml_holds_no_password() -> None:
    docs = [d for d in yaml.safe_load_all(INSTALL.read_text()) if d]
    assert not [d for d in docs if d["kind"] == "Secret"]
    text = json.dumps(docs)
    assert "secretKeyRef" in text  # the passwords are referenced by name
