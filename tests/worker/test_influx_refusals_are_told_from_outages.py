"""The InfluxDB sink tells data InfluxDB refuses (:class:`PointsRejected`, permanent: the jobs
that carry it fail) from an InfluxDB that cannot take any write (:class:`SinkUnavailable`: the
batch is retried), against a real InfluxDB 1.8: a line it cannot parse and a field type
conflict are refusals, quoting its answer; a wrong bucket, a wrong retention policy and a
closed port are outages, and say what to check.

A 400 about one of InfluxDB's capacity limits (``max-values-per-tag``,
``max-series-per-database``) is no verdict on the data: legitimate new machines are refused
too, so it is an :class:`InfluxLimitReached` (retried) that names the limit and how to raise
it; checked with InfluxDB's exact messages, and against a real InfluxDB started with a limit of
3 values per tag. An answer that judges no point (a proxy's 400) says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conveyor_worker import InfluxConfig, InfluxSink, SinkUnavailable
from conveyor_worker.errors import SHOWN_CHARS, InfluxLimitReached, PointsRejected
from conveyor_worker.influx import refusal

from conveyor.local_servers import InfluxServer, free_port, influxd_binary
from tests.servers import require_binary

TS = 1_750_000_000_000
URL = "http://127.0.0.1:8086"


async def write(url: str, bucket: str, lines: list[str]) -> None:
    sink = InfluxSink(InfluxConfig(url=url, bucket=bucket, timeout_s=5))
    try:
        await sink.write(lines)
    finally:
        await sink.close()


# InfluxDB 1.8's messages (tsdb: inmem and tsi1 indexes), as its HTTP API returns them
VALUES_PER_TAG = (
    "partial write: max-values-per-tag limit exceeded (100000/100000): "
    'measurement="realtime" tag="machine" value="rogue-77" dropped=3'
)
SERIES_TSI = "partial write: max-series-per-database limit exceeded: (1000000) dropped=49"
SERIES_INMEM = (
    "partial write: max-series-per-database limit exceeded: db=conveyor (1000000/1000000) "
    "dropped=2111"
)


@pytest.mark.parametrize(
    ("detail", "limit"),
    [
        (VALUES_PER_TAG, "max-values-per-tag"),
        (SERIES_TSI, "max-series-per-database"),
        (SERIES_INMEM, "max-series-per-database"),
    ],
)
def test_a_capacity_limit_is_retried_and_says_which_limit(detail: str, limit: str) -> None:
    found = refusal(400, detail, url=URL)
    assert isinstance(found, InfluxLimitReached)
    assert isinstance(found, SinkUnavailable)  # retried, never dead-lettered as bad data
    assert f"at its {limit} limit" in str(found)
    assert "influxdb.conf" in str(found)
    assert f"INFLUXDB_DATA_{limit.upper().replace('-', '_')}" in str(found)


def test_bad_data_is_refused_and_a_proxy_answer_judges_no_point() -> None:
    conflict = refusal(400, "partial write: field type conflict: ... dropped=1", url=URL)
    unparsable = refusal(400, "unable to parse 'realtime value=': missing field value", url=URL)
    numbered = refusal(400, "failed to parse line protocol: error at line 3: bad", url=URL)
    proxy = refusal(400, "<html><center><h1>400 Bad Request</h1></center></html>", url=URL)
    judged = [conflict, unparsable, numbered]
    assert all(isinstance(a, PointsRejected) and a.about_points for a in judged)
    assert isinstance(proxy, PointsRejected)
    assert not proxy.about_points
    assert isinstance(refusal(503, "overloaded", url=URL), SinkUnavailable)


@pytest.fixture
def limited_influx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InfluxServer]:
    """An InfluxDB 1.8 of its own that takes at most 3 values per tag."""
    binary = influxd_binary() or require_binary("influxd", install="hack/tools.sh influxd")
    monkeypatch.setenv("INFLUXDB_DATA_MAX_VALUES_PER_TAG", "3")  # influxd's config override
    server = InfluxServer(binary, tmp_path / "influxdb").start()
    yield server
    server.stop()


@pytest.mark.integration
async def test_a_real_influxdb_at_its_limit_is_retried(limited_influx: InfluxServer) -> None:
    known = [f"realtime,machine=m{i},signal=a value=1.0 {TS}" for i in range(3)]
    await write(limited_influx.url, limited_influx.bucket, known)
    with pytest.raises(InfluxLimitReached, match="at its max-values-per-tag limit") as caught:
        await write(
            limited_influx.url,
            limited_influx.bucket,
            [
                f"realtime,machine=m0,signal=a value=2.0 {TS + 1}",
                f"realtime,machine=m3 value=1 {TS}",
            ],
        )
    assert 'value="m3"' in str(caught.value)  # the series refused, as InfluxDB said
    [series] = limited_influx.query("SELECT value FROM realtime")
    assert len(series["values"]) == 3  # type: ignore[arg-type]  # 1.8 wrote none of the request


@pytest.mark.integration
async def test_a_line_influxdb_cannot_parse_is_refused_and_the_others_written(
    influx: InfluxServer,
) -> None:
    good = f"realtime,machine=m,signal=a value=1.0 {TS}"
    bad = f"realtime,machine={'x' * 2000} value= {TS}"
    with pytest.raises(PointsRejected) as caught:
        await write(influx.url, influx.bucket, [good, bad])
    assert caught.value.status == 400
    assert f"unable to parse '{bad}'" in caught.value.detail  # all of it, to find the job
    assert "partial write" in str(caught.value)  # InfluxDB 1.8 kept the good line
    assert len(str(caught.value)) < SHOWN_CHARS + 200  # a dead letter quotes a little
    assert influx.query("SELECT value FROM realtime WHERE signal='a'")


@pytest.mark.integration
async def test_a_field_type_conflict_is_refused(influx: InfluxServer) -> None:
    await write(influx.url, influx.bucket, [f"realtime,machine=m,signal=a value=1.0 {TS}"])
    with pytest.raises(PointsRejected) as caught:
        await write(influx.url, influx.bucket, [f'realtime,machine=m value="s" {TS}'])
    assert "field type conflict" in str(caught.value)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("bucket", "answer", "hint"),
    [
        ("nowhere/autogen", "HTTP 404", "check INFLUX_BUCKET"),  # database not found
        ("conveyor/nowhere", "HTTP 500", "retention policy not found"),
    ],
)
async def test_a_wrong_bucket_is_an_outage_that_says_what_to_check(
    influx: InfluxServer, bucket: str, answer: str, hint: str
) -> None:
    with pytest.raises(SinkUnavailable) as caught:
        await write(influx.url, bucket, [f"realtime,machine=m,signal=a value=1.0 {TS}"])
    assert answer in str(caught.value)
    assert hint in str(caught.value)


@pytest.mark.integration
async def test_a_closed_port_is_an_outage() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SinkUnavailable, match="did not take the write"):
        await write(url, "conveyor/autogen", [f"realtime,machine=m,signal=a value=1.0 {TS}"])
