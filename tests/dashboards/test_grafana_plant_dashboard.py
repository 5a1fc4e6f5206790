"""The chart's Grafana plant dashboard, tested without a Grafana: every query it holds - the
template variables', each panel's and the annotation's - runs against InfluxDB loaded through
the whole pipeline by the simulator, with Grafana's macros filled in as Grafana would, and
returns data of the shape its panel draws."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from conveyor.local_servers import InfluxServer
from tests.helpers import ROOT

pytestmark = pytest.mark.integration
DASHBOARD = ROOT / "charts" / "conveyor" / "dashboards" / "conveyor-plant.json"


def _filled(query: str, values: dict[str, list[str]]) -> str:
    """``query`` with Grafana's macros and variables as Grafana sends them to InfluxDB: a
    variable in the ``regex`` format as ``(a|b)`` of escaped values (the dashboard asks for
    that format everywhere: a machine id like ``g/n/d`` or ``press.1`` is no regex)."""
    query = query.replace("$timeFilter", "time > now() - 3h").replace("$__interval", "1m")
    for name, chosen in values.items():
        alternatives = "(" + "|".join(re.escape(v) for v in chosen) + ")"
        query = query.replace("${" + name + ":regex}", alternatives)
    left = re.search(r"\$\{?\w+", query)
    assert left is None, f"{left.group()} left unfilled in {query}"
    return query


def _columns(series: list[dict[str, Any]]) -> list[str]:
    return list(series[0]["columns"])  # type: ignore[arg-type]


def test_every_query_of_the_plant_dashboard_answers_with_its_panels_shape(
    simulated_past: str, influx: InfluxServer
) -> None:
    machine = simulated_past
    dashboard = json.loads(DASHBOARD.read_text())

    # The template variables: what Grafana offers to choose from.
    offered: dict[str, list[str]] = {}
    chosen: dict[str, list[str]] = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        series = influx.query(_filled(var["query"], chosen))
        offered[var["name"]] = [str(row[1]) for s in series for row in s["values"]]  # type: ignore[attr-defined]
        chosen[var["name"]] = [machine] if var["name"] == "machine" else offered[var["name"]]
    assert machine in offered["machine"]
    assert {"temperature", "pressure", "spindle_rpm"} <= set(offered["signal"])
    assert offered["characteristic"] == ["bore_diameter"]

    by_title = {p["title"]: p for p in dashboard["panels"]}
    [trend] = [p for t, p in by_title.items() if t.startswith("Trends")]
    series = influx.query(_filled(trend["targets"][0]["query"], chosen))
    signals = {s["tags"]["signal"] for s in series}  # type: ignore[index]
    assert {"temperature", "pressure", "spindle_rpm"} <= signals
    assert _columns(series) == ["time", "mean"]
    assert all(len(s["values"]) >= 100 for s in series)  # type: ignore[arg-type]

    [xbar] = [p for t, p in by_title.items() if "control limits" in t]
    assert xbar["repeat"] == "characteristic"  # a chart per characteristic
    one = {**chosen, "characteristic": ["bore_diameter"]}
    [points] = influx.query(_filled(xbar["targets"][0]["query"], one))
    assert _columns([points]) == ["time", "value", "CL", "UCL", "LCL"]
    rows: list[list[Any]] = points["values"]  # type: ignore[assignment]
    limited = [r for r in rows if r[3] is not None]
    assert limited
    assert all(r[4] < r[2] < r[3] for r in limited)

    [r_chart] = [p for t, p in by_title.items() if "R chart" in t]
    [ranges] = influx.query(_filled(r_chart["targets"][0]["query"], one))
    assert _columns([ranges]) == ["time", "R", "R-bar", "UCL", "LCL"]
    rows = ranges["values"]  # type: ignore[assignment]
    assert any(r[1] is not None and r[2] is not None and r[3] > r[2] for r in rows)

    [changes] = [p for t, p in by_title.items() if t.startswith("Configuration")]
    [versions] = influx.query(_filled(changes["targets"][0]["query"], chosen))
    assert _columns([versions]) == ["time", "version", "config"]
    assert json.loads(versions["values"][0][2])["firmware"]  # type: ignore[index]

    spc_marks, alert_marks = dashboard["annotations"]["list"]
    [marks] = influx.query(_filled(spc_marks["query"], chosen))
    columns = _columns([marks])
    assert {spc_marks["textColumn"], spc_marks["tagsColumn"]} <= set(columns)
    rules = [row[columns.index("rules")] for row in marks["values"]]  # type: ignore[attr-defined]
    assert rules
    assert all(re.fullmatch(r"[1-4](,[1-4])*", r) for r in rules)

    # The machine's alerts as the alerts worker wrote them: its start-up notice at least.
    [alerts] = influx.query(_filled(alert_marks["query"], chosen))
    columns = _columns([alerts])
    assert {alert_marks["textColumn"], *alert_marks["tagsColumn"].split(",")} <= set(columns)
    texts = [row[columns.index("message")] for row in alerts["values"]]  # type: ignore[attr-defined]
    assert "machine online" in texts


def test_the_panels_read_only_what_the_workers_write() -> None:
    """Every field a panel or the annotation names is one the workers write
    (``conveyor_worker.points``): a renamed field breaks this, not a plant's dashboard."""
    from conveyor_worker.points import SPC_LIMITS

    written = {"value", "flag", "text", "range", "n", "rules", "config", "version", *SPC_LIMITS}
    written |= {"message", "state"}  # alerts' fields; their tags below
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["query"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [a["query"] for a in dashboard["annotations"]["list"]]
    named = set()
    for query in queries:
        fields = query.split(" FROM ")[0]
        named |= set(re.findall(r'"([a-z_]+)"', fields.replace(" AS ", " ")))
    aliases = {"value", "CL", "UCL", "LCL", "R", "R-bar"}
    tags = {"characteristic", "type", "severity"}
    assert named - written - aliases - tags == set(), named - written
