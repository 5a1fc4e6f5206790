"""The charts' endpoints against a real InfluxDB 1.8: a week of points comes back as as many
buckets as asked for, with the right means; names are bound, never spliced; every bound is a
422 one step past it; InfluxDB missing, unreachable or misconfigured is a 503 saying what to
check while the rest of the gateway answers; and the control chart shows what the worker
judged, from points a real `conveyor work` wrote."""

from __future__ import annotations

import time
from collections.abc import Callable
from statistics import fmean

import pytest
import redis
from conveyor_gateway import InfluxSource
from conveyor_gateway.limits import MAX_SPC_POINTS, MAX_TREND_POINTS, MAX_WINDOW_MS
from conveyor_plant.keys import latest_units, latest_values
from conveyor_worker.points import line, spc_line, tech_line

from conveyor.local_servers import InfluxServer
from reliable_queue import QueueClient
from tests.gateway.conftest import TOKEN, Gateway
from tests.helpers import eventually, start_cli
from tests.servers import free_port
from tests.worker.conftest import message

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MINUTE = 60_000
WEEK = 7 * 24 * 60 * MINUTE


@pytest.fixture
def charts(make_gateway: Callable[..., Gateway], influx: InfluxServer) -> Gateway:
    return make_gateway(influx=InfluxSource(influx.url, influx.bucket))


def _week(influx: InfluxServer, machine: str, end: int) -> list[int]:
    """A point a minute for a week, of two signals: ``temp`` is the minute's index, ``speed``
    twice that; plus a text signal, which has no trend. Returns the times."""
    times = [end - WEEK + i * MINUTE for i in range(WEEK // MINUTE)]
    tags = {"machine": machine}
    lines = [
        line("realtime", {**tags, "signal": s}, {"value": float(i * k)}, t)
        for i, t in enumerate(times)
        for s, k in (("temp", 1), ("speed", 2))
    ]
    lines.append(line("realtime", {**tags, "signal": "recipe"}, {"text": "A-12"}, times[-1]))
    influx.write(lines)
    return times


def test_a_week_comes_back_as_the_buckets_asked_for_with_their_means(
    charts: Gateway, influx: InfluxServer, raw_redis: redis.Redis
) -> None:
    end = (int(time.time() * 1000) // MINUTE) * MINUTE
    times = _week(influx, "press-1", end)
    raw_redis.hset(latest_values("press-1"), mapping={"temp": "21.5", "_ts": str(end)})
    raw_redis.hset(latest_units("press-1"), mapping={"temp": "°C"})  # as a worker keeps them
    r = charts.http.get(
        f"/machines/press-1/series?from={end - WEEK}&to={end}&points=100", headers=AUTH
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["interval_ms"] == -(-WEEK // 100)
    assert [s["signal"] for s in answer["series"]] == ["speed", "temp"]  # no trend of text
    temp = answer["series"][1]
    assert len(temp["times"]) == 100  # buckets from `from` on, one per interval
    assert temp["times"][0] == end - WEEK
    assert len(temp["times"]) == len(temp["mean"]) == len(temp["min"]) == len(temp["max"])
    # Each bucket's figures are those of the minutes in it.
    for start, mean, low, high in zip(
        temp["times"], temp["mean"], temp["min"], temp["max"], strict=True
    ):
        inside = [i for i, t in enumerate(times) if start <= t < start + answer["interval_ms"]]
        assert mean == pytest.approx(fmean(inside))
        assert (low, high) == (min(inside), max(inside))
    speed = answer["series"][0]
    assert speed["mean"] == pytest.approx([2 * m for m in temp["mean"]])
    assert (temp["unit"], speed["unit"]) == ("°C", None)
    machine = charts.http.get("/machines/press-1", headers=AUTH).json()
    assert machine["units"] == {"temp": "°C"}

    one = charts.http.get(
        f"/machines/press-1/series?signal=temp&from={end - 3_600_000}&to={end}", headers=AUTH
    ).json()
    assert [s["signal"] for s in one["series"]] == ["temp"]
    assert one["interval_ms"] == 6000  # an hour over the default 600 points
    assert one["series"][0]["max"][-1] == len(times) - 1


def test_names_are_bound_not_spliced_into_the_query(charts: Gateway, influx: InfluxServer) -> None:
    """A machine id or signal made to break out of InfluxQL's quotes is only a name: it finds
    its own points, and a name that is a query finds nothing and runs nothing."""
    now = int(time.time() * 1000)
    odd = "press 'A'\\\"; DROP DATABASE conveyor; --/line/x"  # slashes: a Sparkplug-like id
    influx.write(
        [
            line("realtime", {"machine": odd, "signal": "t'"}, {"value": 1.0}, now - 5000),
            line("realtime", {"machine": "other", "signal": "t"}, {"value": 9.0}, now - 5000),
        ]
    )
    r = charts.http.get("/machines/" + odd.replace("%", "%25") + "/series", headers=AUTH)
    assert r.status_code == 200, r.text
    assert [(s["signal"], s["mean"]) for s in r.json()["series"]] == [("t'", [1.0])]
    for attack in ("x' OR machine='other", 'x" OR "machine"=\'other', "other' --"):
        r = charts.http.get("/machines/p/series", params={"signal": attack}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["series"] == []
    assert influx.query("SHOW DATABASES")[0]["values"] == [["conveyor"]]  # type: ignore[index]


def test_names_with_slashes_are_told_apart_by_the_path_as_sent(
    charts: Gateway, influx: InfluxServer, raw_redis: redis.Redis
) -> None:
    """A characteristic with a slash, sent as %2F, is the last segment whatever the machine id
    holds; a machine id that ends in "/series" is reached with its slash escaped."""
    now = int(time.time() * 1000)
    influx.write(
        [
            spc_line(machine="g/n/d", characteristic="bore/dia", ts_ms=now - 5000, values=[1.0],
                     limits=None),
            line("realtime", {"machine": "g/series", "signal": "t"}, {"value": 1.0}, now - 5000),
        ]
    )  # fmt: skip
    for url in ("/spc/g/n/d/bore%2Fdia", "/spc/g%2Fn%2Fd/bore%2Fdia"):
        r = charts.http.get(url, headers=AUTH)
        assert r.status_code == 200, (url, r.text)
        assert (r.json()["machine"], r.json()["characteristic"]) == ("g/n/d", "bore/dia")
    assert charts.http.get("/spc/g/n/d/bore/dia", headers=AUTH).status_code == 404  # "d/bore"
    raw_redis.hset(latest_values("g/series"), mapping={"t": "1.0", "_ts": str(now)})
    machine = charts.http.get("/machines/g%2Fseries", headers=AUTH)
    assert machine.json()["machine"] == "g/series", machine.text
    trend = charts.http.get("/machines/g/series/series", headers=AUTH)
    assert trend.json()["machine"] == "g/series", trend.text
    assert [s["signal"] for s in trend.json()["series"]] == ["t"]


def test_a_machine_id_with_a_newline_reaches_its_handlers(
    charts: Gateway, raw_redis: redis.Redis
) -> None:
    """Control characters are a machine id's like any other: an id holding a newline (%0A) gets
    each operation's own answers, not the router's "no such endpoint"."""
    raw_redis.hset(latest_values("a\nb"), mapping={"t": "1.0", "_ts": str(int(time.time() * 1000))})
    for url in ("/machines/a%0Ab", "/machines/a%0Ab/series", "/machines/a%0Ab/changes"):
        r = charts.http.get(url, headers=AUTH)
        assert r.status_code == 200, (url, r.text)
        assert r.json()["machine"] == "a\nb", r.text
    r = charts.http.get("/spc/a%0Ab/bore", headers=AUTH)
    assert r.status_code == 404, r.text
    assert "no such endpoint" not in r.json()["error"], r.text
    r = charts.http.get("/machines/a%0A%0Ab%0A", headers=AUTH)
    assert r.status_code == 404, r.text
    assert "no such endpoint" not in r.json()["error"], r.text


def test_the_configuration_changes_come_newest_first(charts: Gateway, influx: InfluxServer) -> None:
    now = int(time.time() * 1000)
    influx.write(
        [
            tech_line(machine="g/cnc-1", ts_ms=now - 3000 + v, config={"fw": f"1.{v}"}, version=v)
            for v in (1, 2, 3)
        ]
    )
    r = charts.http.get("/machines/g/cnc-1/changes?limit=2", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["changes"] == [
        {"time_ms": now - 3000 + v, "version": v, "config": {"fw": f"1.{v}"}} for v in (3, 2)
    ]
    assert charts.http.get("/machines/g/cnc-1/changes?limit=0", headers=AUTH).status_code == 422


def test_the_windows_and_points_are_bounded(charts: Gateway) -> None:
    now = int(time.time() * 1000)

    def status(url: str) -> int:
        return charts.http.get(url, headers=AUTH).status_code

    series = "/machines/press-1/series"
    for points, code in ((10, 200), (9, 422), (MAX_TREND_POINTS, 200), (MAX_TREND_POINTS + 1, 422)):
        assert status(f"{series}?points={points}") == code, points
    assert status(f"{series}?from={now - MAX_WINDOW_MS}&to={now}") == 200
    assert status(f"{series}?from={now - MAX_WINDOW_MS - 1}&to={now}") == 422
    assert status(f"{series}?from={now}&to={now - 1000}") == 422  # backwards
    assert status(f"{series}?from={now - 999}&to={now}") == 422  # under a second
    assert status(f"{series}?from=yesterday") == 422
    assert status(f"{series}?signal=" + "s" * 257) == 422
    spc = "/spc/press-1/bore"
    assert status(f"{spc}?points={MAX_SPC_POINTS + 1}") == 422
    assert status(f"{spc}?points=0") == 422
    assert status(f"{spc}?points={MAX_SPC_POINTS}") == 404  # in bounds: nothing there
    r = charts.http.get(f"{spc}?from={now - 1000}&to={now}", headers=AUTH)
    assert r.status_code == 404
    assert "check the names, or widen the window" in r.json()["error"]


def test_without_influxdb_the_charts_say_why_and_the_rest_answers(
    make_gateway: Callable[..., Gateway], influx: InfluxServer
) -> None:
    cases = {
        "not configured": (make_gateway(), "set INFLUX_URL"),
        "unreachable": (
            make_gateway(influx=InfluxSource(f"http://127.0.0.1:{free_port()}", "conveyor")),
            "did not answer",
        ),
        "a password in the URL": (
            make_gateway(
                influx=InfluxSource(f"http://u:s3cret@127.0.0.1:{free_port()}", "c", token="u:p")
            ),
            "put them in INFLUX_TOKEN",
        ),
        "no such database": (
            make_gateway(influx=InfluxSource(influx.url, "nosuchdb/autogen")),
            "check INFLUX_BUCKET",
        ),
    }
    for case, (gateway, hint) in cases.items():
        for url in ("/machines/press-1/series", "/spc/press-1/bore"):
            r = gateway.http.get(url, headers=AUTH)
            assert r.status_code == 503, (case, url, r.text)
            assert hint in r.json()["error"], (case, r.text)
            assert "s3cret" not in r.text
        assert gateway.http.get("/stats", headers=AUTH).status_code == 200, case


async def test_the_control_chart_is_what_the_worker_judged(
    client: QueueClient, redis_url: str, influx: InfluxServer, charts: Gateway
) -> None:
    """Individuals that shift up after 25 in-control points, and subgroups of 5: a real
    worker writes them; the chart has the limits in force at each point, null before there
    were enough, the shift's point marked with rule 1, and the R chart's limits."""
    ts = int(time.time() * 1000) - 600_000
    steady = [10.0 + (0.05 if i % 2 else -0.05) * (1 + i % 3) for i in range(25)]
    lathe = [
        message("spc", "lathe-1", {"characteristic": "bore", "value": v, "timestamp": ts + i})
        for i, v in enumerate([*steady, 10.9])
    ]
    groups = [[10.0 + ((i + j) % 5) * 0.1 for j in range(5)] for i in range(25)]
    lathe += [
        message("spc", "lathe-1", {"characteristic": "od", "values": g, "timestamp": ts + i})
        for i, g in enumerate(groups)
    ]
    await client.enqueue_many("mqtt_spc", lathe)
    worker = start_cli(
        "work",
        "--queue",
        "mqtt_spc",
        redis_url=redis_url,
        INFLUX_URL=influx.url,
        INFLUX_BUCKET=influx.bucket,
        WORKER_BATCH_SIZE="1",
    )
    try:

        async def done() -> bool:
            return (await client.queue_stats("mqtt_spc")).completed == len(lathe)

        await eventually(done, timeout=60, what="the SPC jobs written", detail=worker.output)
    finally:
        assert worker.stop() == 0, worker.output()

    bore = charts.http.get("/spc/lathe-1/bore", headers=AUTH).json()
    assert bore["chart"] == "I-MR"
    assert bore["value"] == [*steady, 10.9]
    assert bore["times"] == [ts + i for i in range(26)]
    first_judged = 20  # spc_min_points: the first point with limits
    assert bore["ucl"][:first_judged] == [None] * first_judged
    assert all(u is not None for u in bore["ucl"][first_judged:])
    assert bore["rules"][-1] == [1]
    assert bore["ucl"][-1] < 10.9
    assert all(r == [] for r in bore["rules"][:-1])
    assert set(bore["range"]) == {None}
    assert bore["truncated"] is False

    trends = charts.http.get("/machines/lathe-1/series", headers=AUTH).json()
    assert trends["characteristics"] == ["bore", "od"]  # the control charts to offer
    od = charts.http.get("/spc/lathe-1/od?points=10", headers=AUTH).json()
    assert od["chart"] == "Xbar-R"
    assert od["truncated"] is True  # the newest 10 of 25
    assert od["times"] == [ts + i for i in range(15, 25)]
    assert od["range"] == pytest.approx([max(g) - min(g) for g in groups[15:]])
    r_cl, r_ucl = od["r_cl"][-1], od["r_ucl"][-1]
    assert r_cl == pytest.approx(0.4)  # every subgroup spans 4 steps of 0.1
    assert r_ucl == pytest.approx(2.114 * r_cl)  # D4 for subgroups of 5
    assert od["r_lcl"][-1] == 0.0
