"""The chart as `helm template` renders it, for the chart tests: run helm, parse the documents,
pick objects by kind and name, and read a pod template's environment."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from conveyor.local_servers import tools_dir
from tests.cluster.conftest import require_tools
from tests.helpers import KUBE_VERSION, ROOT

CHART = ROOT / "charts" / "conveyor"
INSTALL_VALUES = ROOT / "hack" / "install-values.yaml"

Doc = dict[str, Any]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    require_tools()
    return subprocess.run(
        [str(tools_dir() / "helm"), *args], capture_output=True, text=True, timeout=120
    )


def render(
    *sets: str, values: Path | None = None, show_only: str | None = None, ns: str = "conveyor"
) -> list[Doc]:
    """``helm template conveyor`` in namespace ``ns`` with ``--set`` of each of ``sets``."""
    args = [a for s in sets for a in ("--set", s)]
    if values is not None:
        args += ["-f", str(values)]
    if show_only is not None:
        args += ["--show-only", show_only]
    done = helm("template", "conveyor", str(CHART), "-n", ns, "--kube-version", KUBE_VERSION, *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def render_fails(*sets: str) -> str:
    """The error of a render that must fail."""
    args = [a for s in sets for a in ("--set", s)]
    done = helm("template", "conveyor", str(CHART), "--kube-version", KUBE_VERSION, *args)
    assert done.returncode != 0, f"rendered with {sets}"
    return done.stderr


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def pod_templates(docs: list[Doc]) -> dict[str, Doc]:
    """Every pod spec the chart renders, by ``<kind>/<name>``."""
    return {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    }


def env_of(pod: Doc, container: str | None = None) -> dict[str, Doc]:
    [c] = [c for c in pod["containers"] if container is None or c["name"] == container]
    return {e["name"]: e for e in c.get("env", [])}
