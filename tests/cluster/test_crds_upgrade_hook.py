"""The chart's pre-upgrade hook on a real kube-apiserver: ``conveyor apply-crds``, run with the
hook's own ServiceAccount token and ClusterRole (as rendered by the chart), puts a newer
MessageQueue schema over an older one that lacks a field, so the API server keeps that field
again; and the same identity can create, delete or change no other CRD."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.local_servers import tools_dir
from tests.cluster.chart import CHART, render
from tests.cluster.conftest import KubeCluster
from tests.helpers import run_cli

pytestmark = pytest.mark.cluster
CRD_FILES = sorted((CHART / "crds").glob("*.yaml"))
MESSAGEQUEUE = "messagequeues.conveyor.io"


def spec_fields(kube: KubeCluster) -> set[str]:
    crd = kube.get(f"crd/{MESSAGEQUEUE}")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return set(schema["properties"]["spec"]["properties"])


@pytest.fixture
def hook(kube: KubeCluster, crd: KubeCluster, tmp_path: Path) -> Iterator[tuple[KubeCluster, Path]]:
    """The hook's ServiceAccount, ClusterRole and binding as the chart renders them, and a
    kubeconfig holding that ServiceAccount's token."""
    ns = f"crds-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    docs = [
        d
        for d in render(show_only="templates/crds-upgrade-hook.yaml", ns=ns)
        if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    ]
    listed = {"apiVersion": "v1", "kind": "List", "items": docs}
    kube.kubectl("apply", "-f", "-", stdin=json.dumps(listed))
    token = kube.kubectl("create", "token", "conveyor-crds", "-n", ns).stdout.strip()
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "hook", "user": {"token": token}}],
        "contexts": [{"name": "hook", "context": {"cluster": cluster["name"], "user": "hook"}}],
        "current-context": "hook",
    }
    path = tmp_path / "hook-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    try:
        yield kube, path
    finally:
        # The whole session's tests use the CRD: it is put back whatever happened.
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILES[0]))
        for d in docs:
            if d["kind"] != "ServiceAccount":
                kube.kubectl("delete", d["kind"], d["metadata"]["name"], check=False)
        kube.kubectl("delete", "namespace", ns, "--wait=false")


def older_messagequeue_crd() -> dict[str, Any]:
    """The chart's MessageQueue CRD as an older chart had it: without spec.alerts."""
    [crd] = [d for d in yaml.safe_load_all(CRD_FILES[0].read_text()) if d]
    old = copy.deepcopy(crd)
    spec = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["alerts"]
    return old


def test_the_hook_upgrades_the_crds_and_can_touch_no_other(
    hook: tuple[KubeCluster, Path],
) -> None:
    kube, kubeconfig = hook
    assert CRD_FILES[0].name == "conveyor.io_messagequeues.yaml"
    kube.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=json.dumps(older_messagequeue_crd()),
    )
    assert "alerts" not in spec_fields(kube)

    done = run_cli("apply-crds", *map(str, CRD_FILES), KUBECONFIG=str(kubeconfig))
    assert done.returncode == 0, done.stderr
    assert "alerts" in spec_fields(kube)

    def may(verb: str, what: str) -> bool:
        kubectl = [str(tools_dir() / "kubectl"), "--kubeconfig", str(kubeconfig)]
        out = subprocess.run(
            [*kubectl, "auth", "can-i", verb, what], capture_output=True, text=True, timeout=60
        )
        return out.stdout.strip() == "yes"

    assert may("patch", f"customresourcedefinitions/{MESSAGEQUEUE}")
    assert not may("patch", "customresourcedefinitions/other.example.com")
    assert not may("create", "customresourcedefinitions")
    assert not may("delete", f"customresourcedefinitions/{MESSAGEQUEUE}")
    assert not may("list", "customresourcedefinitions")


def test_a_file_that_is_not_only_crds_is_refused_before_anything_is_applied(
    tmp_path: Path,
) -> None:
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(CRD_FILES[0].read_text() + "\n---\napiVersion: v1\nkind: Pod\n")
    done = run_cli("apply-crds", str(mixed), KUBECONFIG=str(tmp_path / "none"))
    assert done.returncode == 2, done.stderr
    assert f"{mixed}: holds a Pod, not only CustomResourceDefinitions" in done.stderr


def test_a_newer_crd_is_not_downgraded_and_a_missing_one_not_created(
    hook: tuple[KubeCluster, Path], tmp_path: Path
) -> None:
    kube, kubeconfig = hook
    [crd] = [d for d in yaml.safe_load_all(CRD_FILES[0].read_text()) if d]
    newer = copy.deepcopy(crd)  # as another release's newer chart left it
    spec = newer["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["future"] = {"type": "string"}
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(newer))
    done = run_cli("apply-crds", *map(str, CRD_FILES), KUBECONFIG=str(kubeconfig))
    assert done.returncode == 0, done.stderr
    assert "has fields this chart's lacks (v1alpha1:spec.future)" in done.stderr
    assert "future" in spec_fields(kube)

    gadget = copy.deepcopy(crd)
    gadget["metadata"]["name"] = "gadgets.example.com"
    gadget["spec"]["group"] = "example.com"
    gadget["spec"]["names"] = {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"}
    path = tmp_path / "gadget.yaml"
    path.write_text(yaml.safe_dump(gadget))
    done = run_cli("apply-crds", str(path), KUBECONFIG=str(kube.kubeconfig))  # as an admin
    assert done.returncode == 0, done.stderr
    assert "gadgets.example.com is not installed: nothing to upgrade" in done.stderr
    assert kube.kubectl("get", "crd", "gadgets.example.com", check=False).returncode != 0
