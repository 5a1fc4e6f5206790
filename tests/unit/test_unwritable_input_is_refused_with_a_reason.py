"""What InfluxDB, Redis and the webhooks could not hold exactly is refused at ingest, whole, with
a stable reason and a detail that names the offending field and says what to do; unusual but
legitimate names and times pass unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conveyor_ingestor import InvalidPayload, parse_message
from conveyor_ingestor.limits import (
    MAX_CONFIG_BYTES,
    MAX_DETAILS_BYTES,
    MAX_NAME_BYTES,
    MAX_STRING_BYTES,
    MAX_TIME_MS,
    MIN_TIME_MS,
)
from conveyor_ingestor.payloads import parse_timestamp
from conveyor_ingestor.routing import Kind

TS = 1_750_000_000_000
LONG = "x" * (MAX_NAME_BYTES + 1)
UMLAUT_LONG = "ü" * (MAX_NAME_BYTES // 2 + 1)  # 129 characters, 258 bytes
DEEP: Any = [1]
for _ in range(31):
    DEEP = [DEEP]  # with the config object around it: 33 levels


def refused(kind: Kind, doc: Any, *, machine: str = "m1", raw: bytes | None = None) -> str:
    payload = raw if raw is not None else json.dumps(doc).encode()
    with pytest.raises(InvalidPayload) as info:
        parse_message(kind, machine=machine, topic=f"{machine}/x", payload=payload, received_at=1)
    return f"{info.value.reason}: {info.value.detail}"


def accepted(kind: Kind, doc: Any, *, machine: str = "m1") -> dict[str, Any]:
    message = parse_message(
        kind, machine=machine, topic=f"{machine}/x", payload=json.dumps(doc).encode(), received_at=1
    )
    return dict(message)


@pytest.mark.parametrize(
    ("kind", "doc", "machine", "expected"),
    [
        # a line break in a signal name: the injection
        (
            "realtime",
            {"temp\nevil,customer=acme amount=0 1": 1.5},
            "m1",
            ["bad_name: signal name 'temp\\nevil", "U+000A at position 4", "fix the name"],
        ),
        ("realtime", {"a\rb": 1}, "m1", ["bad_name: signal name", "U+000D"]),
        ("realtime", {"tab\there": 1}, "m1", ["bad_name: signal name", "U+0009"]),
        ("realtime", {"nul\u0000": 1}, "m1", ["bad_name: signal name", "U+0000"]),
        ("realtime", {"del\u007f": 1}, "m1", ["bad_name: signal name", "U+007F"]),
        ("realtime", {"c1\u0085": 1}, "m1", ["bad_name: signal name", "U+0085"]),
        ("realtime", {"ls\u2028": 1}, "m1", ["bad_name: signal name", "U+2028"]),
        ("realtime", {"": 1}, "m1", ["bad_name: signal name is empty"]),
        ("realtime", {"t": 1}, "press\n7", ["bad_name: machine id (from the topic)", "U+000A"]),
        ("realtime", {"t": 1}, "", ["bad_name: machine id (from the topic) is empty"]),
        ("realtime", {"t": 1}, "press\\", ["bad_name: machine id", "ends with a backslash"]),
        ("realtime", {"dir\\": 1}, "m1", ["bad_name: signal name 'dir\\\\'", "ends with a"]),
        (
            "realtime",
            {"a\\ b": 1},
            "m1",
            ["bad_name: signal name", "backslash right before ' '", "double that backslash"],
        ),
        ("realtime", {"a\\,b": 1}, "m1", ["bad_name", "backslash right before ','"]),
        ("realtime", {"a\\\\\\=b": 1}, "m1", ["bad_name", "right before '='", "position 3"]),
        ("realtime", {LONG: 1}, "m1", ["name_too_long: signal name", "257 bytes", "of 256"]),
        ("realtime", {UMLAUT_LONG: 1}, "m1", ["name_too_long: signal name", "258 bytes"]),
        ("realtime", {"t": 1}, LONG, ["name_too_long: machine id (from the topic)"]),
        (
            "spc",
            {"characteristic": "bore\n", "value": 1.0},
            "m1",
            ["bad_name: SPC characteristic 'bore\\n'"],
        ),
        ("spc", {"bore\u0001": 1.0}, "m1", ["bad_name: SPC characteristic"]),
        ("spc", {"characteristic": LONG, "value": 1.0}, "m1", ["name_too_long: SPC char"]),
        ("alert", {"type": "E\n42", "message": "x"}, "m1", ["bad_name: alert type 'E\\n42'"]),
        ("alert", {"code": LONG}, "m1", ["name_too_long: alert type"]),
        (
            "realtime",
            {"timestamp": 1e30, "t": 1},
            "m1",
            ["bad_timestamp: timestamp 1e+30 is outside", "1677-09-21T00:12:43.145224194Z"],
        ),
        (
            "realtime",
            {"timestamp": "9999-12-31T23:59:59Z", "t": 1},
            "m1",
            ["bad_timestamp", "'9999-12-31T23:59:59Z'", "2262-04-11T23:47:16.854775806Z"],
        ),
        ("realtime", {"timestamp": "1600-01-01T00:00:00Z", "t": 1}, "m1", ["bad_timestamp"]),
        ("realtime", {"timestamp": -1, "t": 1}, "m1", ["bad_timestamp", "negative", "ISO"]),
        ("realtime", {"timestamp": 10**400, "t": 1}, "m1", ["bad_timestamp", "outside"]),
        (
            "realtime",
            {"note": "é" * (MAX_STRING_BYTES // 2 + 1)},
            "m1",
            ["value_too_long: value of 'note'", "1,026 bytes", "1,024"],
        ),
        ("realtime", {"t": 10**400}, "m1", ["bad_value: value of 't'", "64-bit float"]),
        ("spc", {"characteristic": "b", "value": 1e301}, "m1", ["bad_value: 'b' is 1e+301"]),
        ("spc", {"characteristic": "b", "values": [1, 10**400]}, "m1", ["'b' is beyond a 64-bit"]),
        ("spc", {"characteristic": "b", "value": "1"}, "m1", ["bad_value: 'b' must be a finite"]),
        (
            "tech",
            {"config": {"blob": "x" * MAX_CONFIG_BYTES}},
            "m1",
            ["config_too_large: tech config is 65,548 bytes as JSON", "65,536", "split it"],
        ),
        ("tech", {"config": {"a": DEEP}}, "m1", ["config_too_large", "nests deeper than 32"]),
        (
            "alert",
            {"message": "m" * (MAX_STRING_BYTES + 1)},
            "m1",
            ["value_too_long: alert message is 1,025 bytes"],
        ),
        (
            "alert",
            {"message": "x", "dump": "d" * MAX_DETAILS_BYTES},
            "m1",
            ["details_too_large: alert details is", "4,096"],
        ),
        ("alert", {"message": "x", "severity": "s" * 500}, "m1", ["bad_severity", "...:"]),
    ],
)
def test_each_limit_has_its_reason_and_names_the_field(
    kind: Kind, doc: Any, machine: str, expected: list[str]
) -> None:
    said = refused(kind, doc, machine=machine)
    for part in expected:
        assert part in said


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("realtime", b'{"t": NaN}', "bad_value: value of 't' is not a finite number"),
        ("tech", b'{"a": {"b": [1, Infinity]}}', "bad_value: tech config has inf at ['a']['b'][1]"),
        ("alert", b'{"message": "x", "v": -Infinity}', "bad_value: alert details has -inf at"),
        ("realtime", b'{"\\ud800": 1}', "not_utf8: payload has a lone UTF-16 surrogate"),
        ("tech", b'{"a": "\\udc00"}', "not_utf8: payload has a lone UTF-16 surrogate"),
        ("realtime", b'{"t": "\xed\xa0\x80"}', "not_utf8: payload is not UTF-8 text"),
        ("realtime", '{"t": 1}'.encode("utf-16"), "not_utf8: payload is not UTF-8 text"),
        ("realtime", b'{"t": ' + b"1" * 5000 + b"}", "not_json: payload has a number Python"),
    ],
)
def test_numbers_and_text_that_are_not_what_they_claim(
    kind: Kind, raw: bytes, expected: str
) -> None:
    assert expected in refused(kind, None, raw=raw)


@pytest.mark.parametrize(
    "name",
    [
        "temp sensor",
        " leading and trailing ",
        "a,b=c",
        'say "hi"',
        "C:\\temp\\probe",
        "two\\\\ backslashes before a space",
        "#hash",
        "Öltemperatur",
        "温度",
        "🌡️ temp",
        "👨‍👩‍👧",  # joined by U+200D, a format character, not a control one
        "=",
        "ü" * (MAX_NAME_BYTES // 2),  # exactly 256 bytes
    ],
)
def test_unusual_names_pass_unchanged(name: str) -> None:
    realtime = accepted("realtime", {"timestamp": TS, "values": {name: 1.5}}, machine=name)
    assert realtime["machine"] == name
    assert realtime["samples"][0]["values"] == {name: 1.5}
    spc = accepted("spc", {"characteristic": name, "value": 2.0})
    assert spc["samples"][0]["characteristic"] == name
    alert = accepted("alert", {"type": name, "message": "line one\nline two"})
    assert (alert["type"], alert["message"]) == (name, "line one\nline two")


def test_text_values_keep_every_character() -> None:
    text = 'line\nbreak\ttab\r\u0000nul "quoted" back\\slash\\'
    out = accepted("realtime", {"note": text, "max": "m" * MAX_STRING_BYTES})
    assert out["samples"][0]["values"] == {"note": text, "max": "m" * MAX_STRING_BYTES}
    config = {"k\n": "v\u0000", "blob": "x" * (MAX_CONFIG_BYTES - 40)}
    assert accepted("tech", {"config": config})["config"] == config


@pytest.mark.parametrize(
    ("sent", "ms"),
    [
        (TS // 1000, TS),  # s
        (TS / 1000 + 0.123, TS + 123),  # fractional s, to the nearest ms
        (TS, TS),  # ms
        (TS * 1000 + 999, TS),  # µs, cut to the ms
        (TS * 1_000_000 + 999_999, TS),  # ns, cut to the ms
        (1.75e18, TS),  # ns as a float
        (0, 0),
        (MAX_TIME_MS, MAX_TIME_MS),
        ("2262-04-11T23:47:16.854Z", MAX_TIME_MS),
        ("1677-09-21T00:12:43.146Z", MIN_TIME_MS),
        ("1969-12-31T23:59:59.999Z", -1),
        ("2025-06-15T17:06:40.123+02:00", TS + 123),
        ("2025-06-15T15:06:40.1239", TS + 123),  # no zone: UTC, cut to the ms
    ],
)
def test_timestamps_in_range_in_every_unit(sent: Any, ms: int) -> None:
    assert parse_timestamp(sent) == ms


@pytest.mark.parametrize(
    "sent",
    [
        MAX_TIME_MS + 1,  # ms, just past 2262-04-11T23:47:16.854Z
        9_223_372_036_855_000,  # µs, just past
        9_223_372_036_855 * 10**6,  # ns, just past
        1e30,
        "2262-04-11T23:47:16.855Z",
        "1677-09-21T00:12:43.145Z",
        "0001-01-01T00:00:00Z",
    ],
)
def test_timestamps_past_influxdbs_range_are_refused(sent: Any) -> None:
    with pytest.raises(InvalidPayload) as info:
        parse_timestamp(sent)
    assert info.value.reason == "bad_timestamp"
    assert "2262-04-11T23:47:16.854775806Z" in info.value.detail
