"""The version is written once, in pyproject.toml.

Python reads it from the installed distribution's metadata (``conveyor.__version__``, the
operator's default worker image, the gateway's OpenAPI document); the chart's appVersion (the
default image tag) and the image tags the docs and the rendered manifests show are checked
against it. The chart's own ``version`` is the chart's, and may move on its own.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

import pytest
import yaml

from tests.helpers import ROOT

CHART = ROOT / "charts" / "conveyor"


def _pyproject_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        written: str = tomllib.load(f)["project"]["version"]
    return written


def test_the_installed_version_is_pyprojects() -> None:
    import conveyor

    written = _pyproject_version()
    assert version("conveyor") == written, (
        f"the installed conveyor is {version('conveyor')}, pyproject.toml says {written}: "
        "reinstall it (pip install -e . , or hack/bootstrap.sh)"
    )
    assert conveyor.__version__ == written


def test_the_chart_installs_this_version() -> None:
    written = _pyproject_version()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == written, (
        f"charts/conveyor/Chart.yaml appVersion is {chart['appVersion']!r}, pyproject.toml's "
        f"version is {written!r}: set appVersion to {written!r} (and run hack/render-install.sh)"
    )
    tag = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["tag"]
    assert tag in ("", written), (
        f"charts/conveyor/values.yaml image.tag is {tag!r}: leave it empty (the chart's "
        f"appVersion, {written}) so that it cannot drift"
    )


def test_python_reads_the_version_from_the_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor_gateway import openapi_document

    from conveyor.operator_command import OperatorSettings

    monkeypatch.delenv("OPERATOR_WORKER_IMAGE", raising=False)
    written = _pyproject_version()
    assert OperatorSettings().worker_image == f"conveyor:{written}"
    assert openapi_document()["info"]["version"] == written


def test_the_docs_and_manifests_show_this_version() -> None:
    written = _pyproject_version()
    semver = r"(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]*[0-9A-Za-z])?)"
    shown = re.compile(
        rf"conveyor:{semver}|image\.tag={semver}|app\.kubernetes\.io/version: \"?{semver}"
    )
    files = [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        CHART / "README.md",
        ROOT / "manifests" / "install.yaml",
    ]
    stale = [
        f"{path.relative_to(ROOT)}:{n}: {found}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        for match in shown.finditer(line)
        if (found := next(g for g in match.groups() if g)) != written
    ]
    assert not stale, (
        f"these show another version than pyproject.toml's {written}: change them "
        "(manifests/install.yaml: hack/render-install.sh):\n" + "\n".join(stale)
    )
