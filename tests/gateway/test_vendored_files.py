"""The dashboard's vendored chart library is the version hack/vendor_uplot.sh pins, with its
licence beside it; every file the page loads is one the gateway serves; and the bounds the
page repeats are the gateway's."""

from __future__ import annotations

import re
from importlib.resources import files

from conveyor_gateway import GatewayConfig
from conveyor_gateway.limits import MAX_TREND_POINTS, MAX_TREND_SIGNALS
from conveyor_gateway.parameters import CHANGES, TREND_POINTS

from tests.helpers import ROOT

STATIC = files("conveyor_gateway") / "static"
TREND_CHANGES_SHOWN = 20  # the page's list of configuration changes


def _pinned(name: str) -> str:
    script = (ROOT / "hack" / "vendor_uplot.sh").read_text()
    found = re.search(rf"^{name}=(\S+)$", script, re.MULTILINE)
    assert found, f"{name} is not set in hack/vendor_uplot.sh"
    return found.group(1)


def test_the_vendored_uplot_is_the_pinned_version_with_its_licence() -> None:
    version = _pinned("UPLOT_VERSION")
    script = (STATIC / "vendor" / "uPlot.iife.min.js").read_text()
    assert script.startswith(f"/*! https://github.com/leeoniya/uPlot (v{version}) */")
    assert "MIT License" in (STATIC / "vendor" / "uPlot.LICENSE").read_text()
    assert (STATIC / "vendor" / "uPlot.min.css").read_text().startswith(".uplot")


def test_every_file_the_page_loads_is_served() -> None:
    page = (STATIC / "index.html").read_text()
    loaded = re.findall(r'(?:src|href)="/static/([^"]+)"', page)
    assert {"vendor/uPlot.iife.min.js", "dashboard.js", "detail.js", "queue.js", "views.js"} <= set(
        loaded
    )
    for name in loaded:
        assert (STATIC / name).is_file(), name
    # No build step and no CDN: nothing the page loads comes from elsewhere.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)


def test_the_pages_bounds_are_the_gateways() -> None:
    """What the page repeats of the gateway's bounds (it cannot import them) is the same."""
    detail = (STATIC / "detail.js").read_text()
    assert f"const MAX_TRENDS = {MAX_TREND_SIGNALS};" in detail
    assert f"Math.min({MAX_TREND_POINTS}, Math.max({TREND_POINTS.minimum}," in detail
    assert f"changes?limit={TREND_CHANGES_SHOWN}" in detail
    assert CHANGES.upper(GatewayConfig()) >= TREND_CHANGES_SHOWN
