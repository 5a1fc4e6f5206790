"""The chart endpoints, over the points the workers wrote to InfluxDB:

- ``/machines/{machine}/series``: a machine's numeric signals over a window, downsampled in
  InfluxDB (``GROUP BY time(...)``) to the chart's width: mean, min and max per bucket, so a
  7-day window answers ``points`` buckets per signal, never every point;
- ``/spc/{machine}/{characteristic}``: a characteristic's control chart, point by point with
  the limits in force at each and the rules each broke, as the worker judged them;
- ``/machines/{machine}/changes``: the machine's technical configuration, version by version.

Without InfluxDB configured (``INFLUX_URL``), or with it unreachable, they answer 503 saying
why; the rest of the gateway does not need InfluxDB.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from conveyor_gateway import machines
from conveyor_gateway.errors import ApiError
from conveyor_gateway.influx import InfluxReader, InfluxUnavailable
from conveyor_gateway.limits import MAX_TREND_SIGNALS, MAX_WINDOW_MS
from conveyor_gateway.models import (
    ConfigChange,
    ConfigChanges,
    ControlChart,
    SignalTrend,
    Trend,
    json_response,
)
from conveyor_gateway.parameters import (
    CHANGES,
    SPC_POINTS,
    TREND_POINTS,
    machine_and_last_segment,
    machine_id,
    sent_with_suffix,
    signal_name,
    time_window,
)
from conveyor_gateway.state import state_of
from reliable_queue import QueueUnavailable

HOUR_MS = 3_600_000
SPC_COLUMNS = ("value", "range", "cl", "ucl", "lcl", "r_cl", "r_ucl", "r_lcl", "rules", "n")


def _reader(request: Request) -> InfluxReader:
    influx = state_of(request).influx
    if influx is None:
        raise ApiError(
            503,
            "InfluxDB is not configured for the gateway: set INFLUX_URL (and INFLUX_BUCKET, "
            "INFLUX_TOKEN) as for the workers, or the chart's influx.url",
        )
    return influx


async def _series(request: Request, query: str, params: dict[str, str]) -> list[dict[str, Any]]:
    try:
        return await _reader(request).series(query, params)
    except InfluxUnavailable as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "10"}) from None


def _now_ms() -> int:
    return int(time.time() * 1000)


async def machine_series(request: Request) -> Response:
    machine = machine_id(request)
    if not sent_with_suffix(request, "/series"):  # the machine "<id>/series", slash escaped
        return await machines.machine_named(request, f"{machine}/series")
    signal = signal_name(request)
    points = TREND_POINTS.read(request)
    start, end = time_window(request, default_ms=HOUR_MS, now_ms=_now_ms())
    interval = max(1000, -(-(end - start) // points))  # ceil: at most `points` buckets
    offset = start % interval  # buckets from `from` on, not from the epoch's multiples
    params = {"machine": machine}
    which = ""
    if signal is not None:
        params["signal"] = signal
        which = ' AND "signal" = $signal'
    # Names are bound parameters ($machine, $signal); what is formatted in is ints.
    query = (
        'SELECT mean("value") AS "mean", min("value") AS "min", max("value") AS "max" '  # noqa: S608
        f'FROM "realtime" WHERE "machine" = $machine{which} '
        f"AND time >= {start}ms AND time < {end}ms "
        f'GROUP BY time({interval}ms, {offset}ms), "signal" fill(none) '
        f"SLIMIT {MAX_TREND_SIGNALS + 1}"
    )
    # The machine's SPC characteristics with points in the window: the control charts to offer
    # (SHOW TAG VALUES would filter by whole shard groups, a week, not by the window).
    spc = (
        'SELECT last("value") FROM "spc" WHERE "machine" = $machine '  # noqa: S608
        f'AND time >= {start}ms AND time < {end}ms GROUP BY "characteristic" '
        f"SLIMIT {MAX_TREND_SIGNALS}"
    )
    found, characteristics = await asyncio.gather(
        _series(request, query, params), _series(request, spc, {"machine": machine})
    )
    try:
        units = await state_of(request).plant.units(machine)
    except (QueueUnavailable, RedisError):  # a nicety: the trends answer without them
        units = {}
    trends = sorted((_trend(s, units) for s in found[:MAX_TREND_SIGNALS]), key=lambda t: t.signal)
    return json_response(
        Trend(
            machine=machine,
            from_ms=start,
            to_ms=end,
            interval_ms=interval,
            series=[t for t in trends if t.times],
            truncated=len(found) > MAX_TREND_SIGNALS,
            characteristics=sorted(
                s["tags"]["characteristic"] for s in characteristics if s.get("values")
            ),
        )
    )


async def config_changes(request: Request) -> Response:
    machine = machine_id(request)
    if not sent_with_suffix(request, "/changes"):  # the machine "<id>/changes", slash escaped
        return await machines.machine_named(request, f"{machine}/changes")
    limit = CHANGES.read(request)
    start, end = time_window(request, default_ms=MAX_WINDOW_MS, now_ms=_now_ms())
    query = (
        'SELECT "version", "config" FROM "tech" WHERE "machine" = $machine '  # noqa: S608
        f"AND time >= {start}ms AND time < {end}ms ORDER BY time DESC LIMIT {limit}"
    )
    found = await _series(request, query, {"machine": machine})
    changes = []
    for series in found:
        at = {name: i for i, name in enumerate(series["columns"])}
        for row in series.get("values", []):
            try:
                config = json.loads(row[at["config"]])
            except (TypeError, ValueError):
                config = row[at["config"]]  # as InfluxDB holds it
            changes.append(
                ConfigChange(time_ms=row[at["time"]], version=row[at["version"]], config=config)
            )
    return json_response(ConfigChanges(machine=machine, changes=changes))


def _trend(series: dict[str, Any], units: dict[str, str]) -> SignalTrend:
    columns = {name: i for i, name in enumerate(series["columns"])}
    rows = [r for r in series.get("values", []) if r[columns["mean"]] is not None]
    signal = series.get("tags", {}).get("signal", "")
    return SignalTrend(
        signal=signal,
        unit=units.get(signal),
        times=[r[columns["time"]] for r in rows],
        mean=[r[columns["mean"]] for r in rows],
        min=[r[columns["min"]] for r in rows],
        max=[r[columns["max"]] for r in rows],
    )


async def control_chart(request: Request) -> Response:
    machine, characteristic = machine_and_last_segment(request)
    limit = SPC_POINTS.read(request)
    start, end = time_window(request, default_ms=24 * HOUR_MS, now_ms=_now_ms())
    fields = ", ".join(f'"{c}"' for c in SPC_COLUMNS)
    # The same: bound names, formatted ints and constant columns.
    query = (
        f'SELECT {fields} FROM "spc" WHERE "machine" = $machine '  # noqa: S608
        f'AND "characteristic" = $characteristic AND time >= {start}ms AND time < {end}ms '
        f"ORDER BY time DESC LIMIT {limit + 1}"
    )
    found = await _series(request, query, {"machine": machine, "characteristic": characteristic})
    rows: list[list[Any]] = []
    at: dict[str, int] = {}
    if found:
        at = {name: i for i, name in enumerate(found[0]["columns"])}
        rows = found[0].get("values", [])
    if not rows:
        raise ApiError(
            404,
            f"no SPC points of {characteristic!r} on machine {machine!r} from {start} to "
            f"{end}: check the names, or widen the window (from, to)",
        )
    kept = list(reversed(rows[:limit]))

    def column(name: str) -> list[Any]:
        i = at.get(name)  # a field never written may be left out (InfluxDB 3)
        return [None if i is None else r[i] for r in kept]

    return json_response(
        ControlChart(
            machine=machine,
            characteristic=characteristic,
            chart="Xbar-R" if any(n is not None for n in column("n")) else "I-MR",
            times=column("time"),
            value=column("value"),
            cl=column("cl"),
            ucl=column("ucl"),
            lcl=column("lcl"),
            range=column("range"),
            r_cl=column("r_cl"),
            r_ucl=column("r_ucl"),
            r_lcl=column("r_lcl"),
            rules=[_rules(r) for r in column("rules")],
            truncated=len(rows) > limit,
        )
    )


def _rules(text: str | None) -> list[int]:
    return [int(r) for r in text.split(",") if r.isdigit()] if text else []
