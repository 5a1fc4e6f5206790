"""The payload shapes bridges publish, each normalised to the message contract of its kind
(``conveyor_messages.contract``); bad input gets a reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conveyor_ingestor import InvalidPayload, parse_message
from conveyor_ingestor.payloads import parse_timestamp
from conveyor_ingestor.routing import Kind

TS = 1_750_000_000_000


def parse(kind: Kind, doc: Any) -> dict[str, Any]:
    message = parse_message(
        kind, machine="m1", topic=f"m1/{kind}", payload=json.dumps(doc).encode(), received_at=1
    )
    return dict(message)  # parse_message checked it against the contract


@pytest.mark.parametrize(
    ("doc", "samples"),
    [
        ({"temp": 21.5, "run": True}, [{"ts": None, "values": {"temp": 21.5, "run": True}}]),
        ({"temp": 1, "timestamp": TS}, [{"ts": TS, "values": {"temp": 1}}]),
        (
            {"timestamp": "2025-06-15T15:06:40Z", "values": {"temp": 2}},
            [{"ts": TS, "values": {"temp": 2}}],
        ),
        (
            [{"ts": TS / 1000, "temp": 3}, {"ts": TS * 1000, "temp": 4}],
            [{"ts": TS, "values": {"temp": 3}}, {"ts": TS, "values": {"temp": 4}}],
        ),
        (
            [{"nodeId": "ns=2;s=Temp", "value": 5, "sourceTimestamp": TS}],
            [{"ts": TS, "values": {"ns=2;s=Temp": 5}}],
        ),
        ({"temp": {"value": 6.5, "quality": "good"}}, [{"ts": None, "values": {"temp": 6.5}}]),
    ],
)
def test_realtime_shapes(doc: Any, samples: list[dict[str, Any]]) -> None:
    assert parse("realtime", doc)["samples"] == samples


@pytest.mark.parametrize(
    "doc",
    [
        {"timestamp": TS, "values": {"temp": 21.5, "run": True}, "units": {"temp": "°C"}},
        {"temp": {"value": 21.5, "quality": "good", "unit": "°C"}, "run": True},
        [{"name": "temp", "value": 21.5, "unit": "°C"}, {"name": "run", "value": True}],
    ],
    ids=["units object", "OPC UA value object", "single-signal samples"],
)
def test_units_travel_beside_the_values(doc: Any) -> None:
    message = parse("realtime", doc)
    assert message["units"] == {"temp": "°C"}
    values = {k: v for sample in message["samples"] for k, v in sample["values"].items()}
    assert values == {"temp": 21.5, "run": True}


def test_a_message_without_units_has_none() -> None:
    assert "units" not in parse("realtime", {"temp": 1})


@pytest.mark.parametrize(
    ("doc", "units"),
    [
        ({"values": {"temp": 1}, "units": {"temp": "°C", "pressure": "bar"}}, {"temp": "°C"}),
        (
            {"temp": {"value": 1, "unit": ""}, "rpm": {"value": 2, "unit": "1/min"}},
            {"rpm": "1/min"},
        ),
        ({"temp": {"value": 1, "unit": "x" * 33}}, None),
        ({"temp": {"value": 1, "unit": "°C\n"}}, None),
        ({"temp": {"value": 1, "unit": {"displayName": "degC"}}}, None),
        ([{"name": "temp", "value": 1, "unit": None}], None),
        ([{"name": "temp", "value": 1, "units": "°C"}], {"temp": "°C"}),
        ({"values": {"temp": 1}, "units": "SI"}, None),
        (
            [{"timestamp": TS, "values": {"temp": 1}, "units": {"temp": "°C", "p": "bar"}},
             {"timestamp": TS + 1, "values": {"p": 2}}],
            {"temp": "°C", "p": "bar"},
        ),
    ],
    ids=["unit of an absent signal", "empty unit", "too long", "control character",
         "EUInformation object", "null", "units as unit", "units not an object",
         "units of a later sample"],
)  # fmt: skip
def test_units_are_extra_what_is_not_one_is_left_out_never_the_values(
    doc: Any, units: dict[str, str] | None
) -> None:
    message = parse("realtime", doc)
    assert message.get("units") == units
    assert message["samples"][0]["values"]["temp" if "temp" in str(doc) else "p"] == 1


@pytest.mark.parametrize(
    ("doc", "values"),
    [
        ({"units": 42, "temp": 1}, {"units": 42, "temp": 1}),
        ({"units": {"value": 5, "quality": "good"}}, {"units": 5}),
        ({"units": "pcs", "count": 3}, {"units": "pcs", "count": 3}),
    ],
    ids=["a counter called units", "an OPC UA value object called units", "a text signal"],
)
def test_a_signal_called_units_is_still_a_signal(doc: Any, values: dict[str, Any]) -> None:
    message = parse("realtime", doc)
    assert message["samples"][0]["values"] == values
    assert "units" not in message


def test_spc_subgroups_specs_and_flat_objects() -> None:
    out = parse("spc", {"characteristic": "bore", "values": [10.01, 9.99], "usl": 10.1, "lsl": 9.9})
    assert out["samples"] == [
        {
            "ts": None,
            "characteristic": "bore",
            "values": [10.01, 9.99],
            "spec": {"usl": 10.1, "lsl": 9.9},
        }
    ]
    flat = parse("spc", {"bore": 10.0, "depth": [5, 5.1], "timestamp": TS})
    assert [(s["characteristic"], s["values"], s["ts"]) for s in flat["samples"]] == [
        ("bore", [10.0], TS),
        ("depth", [5.0, 5.1], TS),
    ]


def test_tech_and_alert() -> None:
    assert parse("tech", {"config": {"fw": "2.1"}, "timestamp": TS})["config"] == {"fw": "2.1"}
    alert = parse("alert", {"code": "E42", "level": "error", "text": "spindle stall", "axis": "Z"})
    assert (alert["type"], alert["severity"], alert["message"], alert["details"]) == (
        "E42",
        "critical",
        "spindle stall",
        {"axis": "Z"},
    )


@pytest.mark.parametrize(
    ("kind", "doc", "reason"),
    [
        ("realtime", {}, "no_values"),
        ("realtime", {"temp": [1, 2]}, "bad_value"),
        ("realtime", {"temp": float("inf")}, "bad_value"),
        ("realtime", 42, "wrong_shape"),
        ("spc", {"characteristic": "x", "value": True}, "bad_value"),
        ("tech", [], "wrong_shape"),
        ("tech", {}, "no_config"),
        ("alert", {"severity": "apocalyptic", "message": "x"}, "bad_severity"),
        ("alert", {"severity": "info"}, "no_alert"),
        ("realtime", {"temp": 1, "timestamp": -5}, "bad_timestamp"),
    ],
)
def test_bad_payloads_say_why(kind: Kind, doc: Any, reason: str) -> None:
    payload = json.dumps(doc, allow_nan=True).encode().replace(b"Infinity", b"1e999999")
    with pytest.raises(InvalidPayload) as info:
        parse_message(kind, machine="m1", topic="m1/x", payload=payload, received_at=1)
    assert info.value.reason == reason
    assert info.value.detail


def test_timestamps_in_every_unit() -> None:
    assert parse_timestamp(TS / 1000) == parse_timestamp(TS) == parse_timestamp(TS * 1000) == TS
    assert parse_timestamp(TS * 1_000_000) == TS  # ns, as InfluxDB's own clients send
    assert parse_timestamp("2025-06-15T15:06:40+00:00") == TS


def test_routes_take_the_machine_from_the_topic() -> None:
    from conveyor_ingestor import DEFAULT_ROUTES, Route, RoutingTable

    table = RoutingTable(DEFAULT_ROUTES)
    match = table.match("press-7/spc")
    assert match is not None
    assert (match.machine, match.route.queue, match.route.priority) == ("press-7", "mqtt_spc", None)
    assert table.match("press-7/spc/extra") is None
    assert table.match("$SYS/realtime") is None
    custom = RoutingTable(
        [Route(filter="plant/+/line/+/#", queue="q", kind="tech", machine_level=3)]
    )
    hit = custom.match("plant/north/line/L2/cfg/v")
    assert hit is not None
    assert hit.machine == "L2"
