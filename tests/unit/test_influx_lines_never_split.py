"""The worker's InfluxDB lines (``conveyor_worker.points``): the escaping InfluxDB 1.8 undoes,
and the last line of defence. Whatever the names and values, a point is either one line as
InfluxDB's own line splitter (``models.scanLine`` of 1.8.10, ported below) reads it, or a
ValueError/TypeError that fails just its job; and every name the ingest parser accepts makes
a line. (That InfluxDB stores these lines exactly is tested against a real server in
tests/worker/test_unusual_names_reach_influxdb.py and test_hostile_input_property.py.)"""

from __future__ import annotations

import math
from typing import Any

import pytest
from conveyor_ingestor import InvalidPayload
from conveyor_ingestor.limits import check_tag
from conveyor_worker.points import line, realtime_lines, tech_line
from hypothesis import given, settings
from hypothesis import strategies as st

TS = 1_750_000_000_000


def influx_line_end(buf: bytes) -> int:
    """Where InfluxDB 1.8.10's ``scanLine`` ends the line that starts ``buf``."""
    i, quoted, fields, equals, commas = 0, False, False, 0, 0
    while i < len(buf):
        c = buf[i : i + 1]
        if c == b"\\" and i + 2 < len(buf):  # skips the escaped byte, pairing backslashes
            i += 2
            continue
        if c == b" ":
            fields = True
        if fields:
            if not quoted and c == b"=":
                i, equals = i + 1, equals + 1
                continue
            if not quoted and c == b",":
                i, commas = i + 1, commas + 1
                continue
            if c == b'"' and equals > commas:
                i, quoted = i + 1, not quoted
                continue
        if c == b"\n" and not quoted:
            break
        i += 1
    return i


def one_line(point: str) -> bool:
    body = point.encode() + b'\nnext,machine=m value="x" 1'
    return influx_line_end(body) == len(point.encode())


@pytest.mark.parametrize(
    ("tags", "fields", "expected"),
    [
        ({"machine": "m 1", "signal": "a,b=c"}, {"value": 1.5}, r"t,machine=m\ 1,signal=a\,b\=c"),
        ({"machine": "C:\\dir\\x"}, {"value": 1.0}, r"t,machine=C:\dir\x"),  # kept as is
        ({"machine": "a\\\\ b"}, {"value": 1.0}, r"t,machine=a\\\ b"),  # even run, then space
        ({"machine": "m"}, {"text": 'say "hi"\\'}, r't,machine=m text="say \"hi\"\\"'),
        ({"machine": "m"}, {"text": "a\nb"}, 't,machine=m text="a\nb"'),  # as it is, quoted
        ({"machine": "m", "empty": ""}, {"n": 3, "on": True}, "t,machine=m n=3i,on=true"),
    ],
)
def test_escaping_is_what_influxdb_undoes(
    tags: dict[str, str], fields: dict[str, Any], expected: str
) -> None:
    point = line("t", tags, fields, TS)
    assert point.startswith(expected)
    assert point.endswith(f" {TS}")
    assert one_line(point)


@pytest.mark.parametrize(
    ("tags", "fields", "ts", "error"),
    [
        ({"machine": "a\nb"}, {"value": 1.0}, TS, ValueError),
        ({"machine": "end\\"}, {"value": 1.0}, TS, ValueError),
        ({"machine": "end\\\\"}, {"value": 1.0}, TS, ValueError),
        ({"machine": "a\\ b"}, {"value": 1.0}, TS, ValueError),
        ({"machine": "a\\,b"}, {"value": 1.0}, TS, ValueError),
        ({"machine": "a\\\\\\=b"}, {"value": 1.0}, TS, ValueError),
        ({"machine": "\ud800"}, {"value": 1.0}, TS, ValueError),
        ({"machine": "m"}, {"text": "\udc00"}, TS, ValueError),
        ({"machine": "m"}, {"value": math.nan}, TS, ValueError),
        ({"machine": "m"}, {"value": math.inf}, TS, ValueError),
        ({"machine": "m"}, {"n": 2**63}, TS, ValueError),
        ({"machine": "m"}, {"text": "x" * (64 * 1024 + 1)}, TS, ValueError),
        ({"machine": "x" * 70_000}, {"value": 1.0}, TS, ValueError),
        ({"machine": "m"}, {}, TS, ValueError),
        ({"machine": "m"}, {"value": 1.0}, 9_223_372_036_855, ValueError),
        ({"machine": "m"}, {"value": 1.0}, -9_223_372_036_855, ValueError),
        ({"machine": "m"}, {"value": None}, TS, TypeError),
        ({"machine": 7}, {"value": 1.0}, TS, TypeError),
    ],
)
def test_what_influxdb_cannot_hold_fails_the_job(
    tags: dict[str, Any], fields: dict[str, Any], ts: int, error: type[Exception]
) -> None:
    with pytest.raises(error):
        line("t", tags, fields, ts)


def test_a_measurement_cannot_become_a_comment() -> None:
    with pytest.raises(ValueError, match="comment"):
        line("#t", {}, {"value": 1.0}, TS)


# Mostly the bytes InfluxDB's scanner cares about, so that their combinations are tried.
syntax = st.sampled_from(list(' ,="\\\n'))
names = st.text(syntax, max_size=8) | st.text(
    syntax | st.sampled_from(list("#\r\tä温🌡\ud800")) | st.characters(), max_size=12
)
texts = st.text(syntax | st.characters(), max_size=12)
scalars = st.one_of(st.floats(), st.integers(), st.booleans(), texts)


@settings(max_examples=500, deadline=None)
@given(machine=names, signal=names, value=scalars)
def test_any_point_is_one_line_or_refused(machine: str, signal: str, value: Any) -> None:
    message = {
        "machine": machine,
        "received_at": TS,
        "samples": [{"ts": None, "values": {signal: value}}],
    }
    try:
        [point] = realtime_lines(message)
    except (ValueError, TypeError, OverflowError):
        return
    assert one_line(point)


@settings(max_examples=200, deadline=None)
@given(machine=names, signal=names)
def test_every_name_the_ingest_accepts_makes_a_line(machine: str, signal: str) -> None:
    try:
        check_tag(machine, what="m")
        check_tag(signal, what="s")
    except InvalidPayload:
        return
    [point] = realtime_lines(
        {"machine": machine, "received_at": TS, "samples": [{"ts": TS, "values": {signal: "a\nb"}}]}
    )
    assert one_line(point)
    assert one_line(tech_line(machine=machine, ts_ms=TS, config={signal: '\n\\"'}, version=1))
