"""Sparkplug B sessions, message by message: births and aliases, seq gaps and rebirths, what
waits and what it becomes, deaths and stale deaths; and every data type of the specification
read as the workers will store it. Payloads are encoded with the project's compiled schema
(tests/ingest/test_sparkplug_edge_node.py does the same against an independent implementation).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from conveyor_ingestor import InvalidPayload
from conveyor_ingestor.sparkplug import sparkplug_b_pb2 as pb
from conveyor_ingestor.sparkplug.decoding import decode, typed_value
from conveyor_ingestor.sparkplug.sessions import (
    Handled,
    Session,
    SessionOptions,
    Sessions,
)
from conveyor_ingestor.sparkplug.topics import parse_topic

T0 = 1_700_000_000_000
# name -> (alias, datatype)
NODE_METRICS = {"Temperature": (1, 10), "Running": (2, 11), "Count": (3, 4)}


def encode(*metrics: dict[str, Any], seq: int | None = None, ts: int | None = T0) -> bytes:
    payload = pb.Payload()
    if ts is not None:
        payload.timestamp = ts
    if seq is not None:
        payload.seq = seq
    for m in metrics:
        metric = payload.metrics.add()
        for key, value in m.items():
            if key == "properties":
                for k, v in value.items():
                    metric.properties.keys.append(k)
                    pv = metric.properties.values.add()
                    pv.type = 12
                    pv.string_value = v
            else:
                setattr(metric, key, value)
    return payload.SerializeToString()


def birth(seq: int = 0, bd_seq: int = 0, **values: Any) -> bytes:
    metrics = [{"name": "bdSeq", "datatype": 4, "long_value": bd_seq}]
    for name, (alias, datatype) in NODE_METRICS.items():
        metric: dict[str, Any] = {"name": name, "alias": alias, "datatype": datatype}
        field = {10: "double_value", 11: "boolean_value", 4: "long_value"}[datatype]
        metric[field] = values.get(name, {10: 20.5, 11: True, 4: 7}[datatype])
        metrics.append(metric)
    metrics[1]["properties"] = {"engUnit": "°C"}
    return encode(*metrics, seq=seq)


def data(seq: int, temperature: float, ts: int = T0 + 1000) -> bytes:
    return encode({"alias": 1, "double_value": temperature}, seq=seq, ts=ts)


class Edge:
    """One edge node's messages through a Sessions, as the ingestor hands them over."""

    def __init__(self, sessions: Sessions | None = None, node: str = "plant/line1") -> None:
        self.sessions = sessions or Sessions()
        self.node = node
        self.now = 0.0
        self.sessions.put(Session(node))

    def send(self, kind: str, raw: bytes, device: str | None = None) -> Handled:
        group, name = self.node.split("/")
        text = f"spBv1.0/{group}/{kind}/{name}" + (f"/{device}" if device else "")
        topic = parse_topic(text)
        assert topic is not None
        return self.sessions.handle(topic, decode(raw), raw=raw, received_at=T0, now=self.now)


def values(handled: Handled) -> list[dict[str, Any]]:
    return [s["values"] for message, _ in handled.realtime for s in message["samples"]]


def test_a_birth_names_aliases_and_its_values_are_samples() -> None:
    edge = Edge()
    out = edge.send("NBIRTH", birth(Temperature=21.5))
    [(message, _)] = out.realtime
    assert message["machine"] == "plant/line1"
    assert message["samples"] == [
        {"ts": T0, "values": {"Temperature": 21.5, "Running": True, "Count": 7}}
    ]
    session = edge.sessions.get("plant/line1")
    assert session is not None
    assert session.node is not None
    assert session.node.aliases == {1: "Temperature", 2: "Running", 3: "Count"}
    assert session.node.metrics["Temperature"].properties == {"engUnit": "°C"}
    assert message["units"] == {"Temperature": "°C"}  # the birth's engUnit, for the cache
    assert not out.rebirth
    [(later, _)] = edge.send("NDATA", data(1, 22.0)).realtime
    assert "units" not in later  # data carries values only: the units came with the birth


def test_a_births_units_are_its_metrics_engunits_what_is_not_one_is_left_out() -> None:
    edge = Edge()
    metrics = [
        {"name": "bdSeq", "datatype": 4, "long_value": 0},
        {"name": "Temperature", "alias": 1, "datatype": 10, "double_value": 20.5},
        {"name": "Pressure", "alias": 2, "datatype": 10, "is_null": True},
        {"name": "Count", "alias": 3, "datatype": 4, "long_value": 7},
    ]
    metrics[1]["properties"] = {"engUnit": "°C" * 40}  # not a unit: left out, the value kept
    metrics[2]["properties"] = {"engUnit": "bar"}  # null at birth: its unit all the same
    metrics[3]["properties"] = {"engUnit": ""}
    out = edge.send("NBIRTH", encode(*metrics, seq=0))
    assert not out.rejected
    [(message, _)] = out.realtime
    assert message["samples"][0]["values"] == {"Temperature": 20.5, "Count": 7}
    assert message["units"] == {"Pressure": "bar"}


def test_aliased_data_is_named_by_the_birth_and_grouped_by_timestamp() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth())
    raw = encode(
        {"alias": 1, "double_value": 22.0},
        {"alias": 3, "long_value": (1 << 64) - 5, "timestamp": T0 + 5},  # Int64 -5
        {"alias": 2, "is_null": True},
        seq=1,
        ts=T0 + 1,
    )
    out = edge.send("NDATA", raw)
    [(message, _)] = out.realtime
    assert message["samples"] == [
        {"ts": T0 + 1, "values": {"Temperature": 22.0}},
        {"ts": T0 + 5, "values": {"Count": -5}},
    ]


def test_data_before_any_birth_waits_for_the_rebirth_it_asks_for() -> None:
    edge = Edge()
    first = edge.send("NDATA", data(5, 30.0))
    assert first.parked
    assert first.rebirth
    assert not first.realtime
    edge.now = 1.0
    second = edge.send("NDATA", data(6, 31.0))
    assert second.parked
    assert not second.rebirth  # one request per rebirth_interval_s
    born = edge.send("NBIRTH", birth())
    assert born.resumed == 2
    assert values(born) == [
        {"Temperature": 20.5, "Running": True, "Count": 7},
        {"Temperature": 30.0},
        {"Temperature": 31.0},
    ]
    session = edge.sessions.get("plant/line1")
    assert session is not None
    assert session.parked == []
    assert session.parked_rewrite


def test_a_seq_gap_parks_until_the_rebirth_and_loses_nothing() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth(seq=0))
    assert values(edge.send("NDATA", data(1, 1.0))) == [{"Temperature": 1.0}]
    gap = edge.send("NDATA", data(4, 4.0))  # 2 and 3 lost upstream
    assert gap.parked
    assert gap.rebirth
    session = edge.sessions.get("plant/line1")
    assert session is not None
    assert session.awaiting_rebirth is not None
    assert "2 message(s) lost upstream before seq 4" in session.awaiting_rebirth
    after = [edge.send("NDATA", data(s, float(s))) for s in (5, 6)]
    assert all(a.parked and not a.rebirth for a in after)
    reborn = edge.send("NBIRTH", birth(seq=0, bd_seq=1))
    assert reborn.resumed == 3
    assert values(reborn)[1:] == [{"Temperature": 4.0}, {"Temperature": 5.0}, {"Temperature": 6.0}]
    assert session.awaiting_rebirth is None
    assert values(edge.send("NDATA", data(1, 7.0))) == [{"Temperature": 7.0}]


def test_an_unanswered_rebirth_is_asked_again_after_the_interval() -> None:
    edge = Edge(Sessions(SessionOptions(rebirth_interval_s=30)))
    assert edge.send("NDATA", data(0, 1.0)).rebirth
    edge.now = 29.0
    assert not edge.send("NDATA", data(1, 1.0)).rebirth
    edge.now = 30.5
    assert edge.send("NDATA", data(2, 1.0)).rebirth


def test_an_alias_the_birth_lacks_waits_and_then_goes_to_dead_letters_with_its_reason() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth())
    out = edge.send("NDATA", encode({"alias": 99, "double_value": 1.0}, seq=1))
    assert out.parked
    assert out.rebirth
    reborn = edge.send("NBIRTH", birth(bd_seq=1))
    [(message, error)] = reborn.rejected
    assert error.reason == "unknown_alias"
    assert "aliases [99]" in error.detail
    assert "alias 99 of NDATA is not in the birth" in error.detail
    assert message.topic == "spBv1.0/plant/NDATA/line1"


def test_a_redelivered_message_is_processed_without_moving_seq() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth(seq=0))
    for s in (1, 2, 3):
        edge.send("NDATA", data(s, float(s)))
    again = edge.send("NDATA", data(2, 2.0))  # a copy, after a restart of the ingestor
    assert values(again) == [{"Temperature": 2.0}]
    assert not again.parked
    session = edge.sessions.get("plant/line1")
    assert session is not None
    assert session.seq == 3
    assert values(edge.send("NDATA", data(4, 4.0))) == [{"Temperature": 4.0}]


def test_seq_wraps_at_256() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth(seq=254))
    for s in (255, 0, 1):
        out = edge.send("NDATA", data(s, 1.0))
        assert not out.parked, s


def test_devices_birth_after_their_node_and_die_alone() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth())
    device_birth = encode(
        {"name": "Pressure", "alias": 10, "datatype": 9, "float_value": 2.5}, seq=1
    )
    out = edge.send("DBIRTH", device_birth, device="press1")
    [(message, _)] = out.realtime
    assert message["machine"] == "plant/line1/press1"
    assert message["samples"][0]["values"] == {"Pressure": 2.5}
    out = edge.send("DDATA", encode({"alias": 10, "float_value": 3.0}, seq=2), device="press1")
    assert values(out) == [{"Pressure": 3.0}]
    death = edge.send("DDEATH", encode(seq=3), device="press1")
    [alert] = death.alerts
    assert alert["machine"] == "plant/line1/press1"
    assert alert["type"] == "node_offline"
    assert alert["details"]["state"] == "firing"
    again = edge.send("DBIRTH", encode(*[], seq=4), device="press1")
    [resolved] = again.alerts
    assert resolved["details"]["state"] == "resolved"


def test_a_death_marks_node_and_devices_offline_and_a_stale_death_changes_nothing() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth(bd_seq=3))
    edge.send("DBIRTH", encode({"name": "P", "datatype": 9, "float_value": 1.0}, seq=1), "d1")
    stale = edge.send("NDEATH", encode({"name": "bdSeq", "datatype": 4, "long_value": 2}))
    assert stale.stale_death
    assert not stale.alerts
    death = edge.send("NDEATH", encode({"name": "bdSeq", "datatype": 4, "long_value": 3}))
    assert {a["machine"] for a in death.alerts} == {"plant/line1", "plant/line1/d1"}
    assert {a["details"]["state"] for a in death.alerts} == {"firing"}
    out = edge.send("NDATA", data(2, 1.0))  # after the death, before a birth: waits
    assert out.parked
    reborn = edge.send("NBIRTH", birth(bd_seq=4))
    assert [a["machine"] for a in reborn.alerts] == ["plant/line1"]
    assert reborn.alerts[0]["details"]["state"] == "resolved"
    assert reborn.resumed == 1


def test_what_cannot_wait_goes_to_dead_letters_not_nowhere() -> None:
    edge = Edge(Sessions(SessionOptions(max_parked=2)))
    outs = [edge.send("NDATA", data(s, 1.0)) for s in range(3)]
    assert [o.parked for o in outs] == [True, True, False]
    [(_, error)] = outs[2].rejected
    assert error.reason == "parked_full"


def test_a_session_survives_being_stored() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth(seq=0, bd_seq=9))
    device = encode({"name": "P", "alias": 4, "datatype": 9, "float_value": 1}, seq=1)
    edge.send("DBIRTH", device, "d")
    edge.send("NDATA", data(5, 1.0))  # a gap: waits
    session = edge.sessions.get("plant/line1")
    assert session is not None
    again = Session.from_stored(
        session.node_key,
        session.to_json(),
        str(session.seq),
        [p.to_json() for p in session.parked],
    )
    assert again.to_json() == session.to_json()
    assert again.seq == 1
    assert [p.payload for p in again.parked] == [data(5, 1.0)]
    assert again.devices["d"].aliases == {4: "P"}


def test_machine_ids_follow_the_configured_templates() -> None:
    edge = Edge(Sessions(SessionOptions(node_machine="{node}", device_machine="{node}.{device}")))
    [(message, _)] = edge.send("NBIRTH", birth()).realtime
    assert message["machine"] == "line1"
    out = edge.send("DBIRTH", encode({"name": "P", "datatype": 9, "float_value": 1}, seq=1), "d")
    assert out.realtime[0][0]["machine"] == "line1.d"


# --- data types -------------------------------------------------------------------------------


def one_metric(**fields: Any) -> Any:
    [metric] = decode(encode(fields)).metrics
    return metric


@pytest.mark.parametrize(
    ("fields", "datatype", "expected"),
    [
        ({"int_value": 0xFFFFFFFB}, 1, -5),  # Int8 written 32 bits wide (Tahu)
        ({"int_value": 0xFB}, 1, -5),  # Int8 written 8 bits wide (pysparkplug)
        ({"int_value": 0x8000}, 2, -32768),
        ({"int_value": 0xFFFFFFFF}, 3, -1),
        ({"long_value": (1 << 64) - 1}, 4, -1),
        ({"int_value": 255}, 5, 255),
        ({"long_value": (1 << 64) - 1}, 8, (1 << 64) - 1),
        ({"float_value": 1.5}, 9, 1.5),
        ({"double_value": -2.25}, 10, -2.25),
        ({"boolean_value": False}, 11, False),
        ({"string_value": "ok"}, 12, "ok"),
        ({"long_value": T0}, 13, T0),
        ({"string_value": "long text"}, 14, "long text"),
        ({"bytes_value": b"\x00\xff"}, 17, "AP8="),
        ({"bytes_value": struct.pack("<3h", -1, 0, 7)}, 23, "[-1,0,7]"),
        ({"bytes_value": struct.pack("<2d", 1.5, -2.0)}, 31, "[1.5,-2.0]"),
        ({"bytes_value": (3).to_bytes(4, "little") + bytes([0b10100000])}, 32, "[true,false,true]"),
        ({"bytes_value": b"a\0bc\0"}, 33, '["a","bc"]'),
        ({"is_null": True}, 9, None),
    ],
)
def test_every_data_type_becomes_a_value_the_workers_can_store(
    fields: dict[str, Any], datatype: int, expected: Any
) -> None:
    assert typed_value(one_metric(**fields), datatype, what="metric m") == expected


def test_datasets_and_templates_pass_through_as_json() -> None:
    payload = pb.Payload()
    metric = payload.metrics.add()
    metric.name, metric.datatype = "Recipe", 16
    ds = metric.dataset_value
    ds.num_of_columns = 2
    ds.columns.extend(["step", "temp"])
    ds.types.extend([7, 10])
    row = ds.rows.add()
    row.elements.add().int_value = 1
    row.elements.add().double_value = 180.0
    template = payload.metrics.add()
    template.name, template.datatype = "Motor", 19
    template.template_value.template_ref = "MotorType"
    inner = template.template_value.metrics.add()
    inner.name, inner.datatype, inner.float_value = "rpm", 9, 1450.0
    first, second = decode(payload.SerializeToString()).metrics
    assert json.loads(str(typed_value(first, 16, what="m"))) == {
        "columns": ["step", "temp"],
        "rows": [[1, 180.0]],
        "types": ["UInt32", "Double"],
    }
    assert json.loads(str(typed_value(second, 19, what="m")))["metrics"] == [
        {"name": "rpm", "value": 1450.0}
    ]


@pytest.mark.parametrize(
    ("fields", "datatype", "reason"),
    [
        ({"double_value": float("nan")}, 10, "bad_value"),
        ({"string_value": "x"}, 11, "bad_value"),
        ({"int_value": 300}, 5, "bad_value"),
        ({"bytes_value": b"\x01\x02\x03"}, 24, "bad_value"),
        ({"double_value": 1.0}, 99, "unknown_datatype"),
        ({"double_value": 1.0}, None, "unknown_datatype"),
    ],
)
def test_a_value_that_does_not_fit_its_type_says_why(
    fields: dict[str, Any], datatype: int | None, reason: str
) -> None:
    with pytest.raises(InvalidPayload) as caught:
        typed_value(one_metric(**fields), datatype, what="metric m")
    assert caught.value.reason == reason
    assert "metric m" in caught.value.detail


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x12\x05\x0a\x03abc\xff", b"not protobuf"])
def test_what_is_not_a_sparkplug_payload_says_so(raw: bytes) -> None:
    with pytest.raises(InvalidPayload) as caught:
        decode(raw)
    assert caught.value.reason == "not_sparkplug"


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("spBv1.0/g/NDATA/n", ("g", "NDATA", "n", None)),
        ("spBv1.0/g/DDATA/n/d", ("g", "DDATA", "n", "d")),
        ("spBv1.0/STATE/host", None),
    ],
)
def test_sparkplug_topics(topic: str, parsed: tuple[str, str, str, str | None] | None) -> None:
    found = parse_topic(topic)
    assert (found and (found.group, found.message_type, found.node, found.device)) == parsed


@pytest.mark.parametrize(
    "topic", ["spBv1.0/g/DDATA/n", "spBv1.0/g/NDATA/n/d", "spBv1.0/g/XDATA/n", "spBv1.0//NDATA/n"]
)
def test_a_topic_that_is_not_sparkplug_says_so(topic: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_topic(topic)
    assert caught.value.reason == "not_sparkplug_topic"


# --- what a hostile or broken edge node sends ---------------------------------------------------


def nested_templates(depth: int) -> bytes:
    payload = pb.Payload(timestamp=T0)
    metric = payload.metrics.add(name="Deep", datatype=19)
    template = metric.template_value
    for _ in range(depth):
        inner = template.metrics.add(name="t", datatype=19)
        template = inner.template_value
    return payload.SerializeToString()


def test_nested_templates_cost_what_they_weigh_and_no_deeper_than_the_limit() -> None:
    [metric] = decode(nested_templates(20)).metrics
    text = str(typed_value(metric, 19, what="metric Deep"))
    assert len(text) < 4000  # serialised once: linear in the depth, not doubling per level
    [deep] = decode(nested_templates(40)).metrics
    with pytest.raises(InvalidPayload) as caught:
        typed_value(deep, 19, what="metric Deep")
    assert caught.value.reason == "too_deep"


@pytest.mark.parametrize(
    ("fields", "datatype"),
    [
        ({"double_value": float("inf")}, 4),  # an Int64 sent as a double
        ({"double_value": 1.5}, 13),  # a DateTime sent as a double
        ({"string_value": "7"}, 3),
        ({"bytes_value": b"\x01" * 100_000}, 32),  # a boolean array far beyond the text limit
    ],
)
def test_values_of_the_wrong_kind_are_refused_not_crashed_on(
    fields: dict[str, Any], datatype: int
) -> None:
    with pytest.raises(InvalidPayload):
        typed_value(one_metric(**fields), datatype, what="metric m")


def test_a_bd_seq_of_the_wrong_type_and_unknown_property_extensions_are_survived() -> None:
    edge = Edge()
    raw = encode({"name": "bdSeq", "datatype": 4, "string_value": "seven"}, seq=0)
    out = edge.send("NBIRTH", raw)
    assert not out.rejected
    session = edge.sessions.get("plant/line1")
    assert session is not None
    assert session.bd_seq is None
    assert session.online


def test_an_unusable_birth_is_a_dead_letter_and_the_nodes_data_waits_for_the_next() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth())
    twice = encode(
        {"name": "A", "alias": 1, "datatype": 10, "double_value": 1.0},
        {"name": "B", "alias": 1, "datatype": 10, "double_value": 2.0},
        seq=0,
    )
    out = edge.send("NBIRTH", twice)
    [(_, error)] = out.rejected
    assert error.reason == "bad_birth"
    assert out.rebirth
    waits = edge.send("NDATA", data(1, 5.0))
    assert waits.parked
    again = edge.send("NBIRTH", birth(bd_seq=1))
    assert again.resumed == 1
    assert values(again)[-1] == {"Temperature": 5.0}


def test_a_birth_whose_values_cannot_be_stored_still_names_the_data() -> None:
    edge = Edge()
    metrics = [
        {"name": "Big", "alias": 7, "datatype": 12, "string_value": "x" * 5000},
        {"name": "Temperature", "alias": 1, "datatype": 10, "double_value": 1.0},
    ]
    out = edge.send("NBIRTH", encode(*metrics, seq=0))
    [(_, error)] = out.rejected
    assert error.reason == "value_too_long"
    assert values(edge.send("NDATA", data(1, 2.0))) == [{"Temperature": 2.0}]


def test_a_second_death_and_a_death_of_an_unknown_device_raise_nothing() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth(bd_seq=1))
    assert edge.send("DDEATH", encode(seq=1), device="never-born").alerts == []
    death = encode({"name": "bdSeq", "datatype": 4, "long_value": 1})
    assert len(edge.send("NDEATH", death).alerts) == 1
    assert edge.send("NDEATH", death).alerts == []


def test_what_waits_for_a_device_that_is_not_born_again_goes_to_dead_letters() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth())
    edge.send(
        "DBIRTH", encode({"name": "P", "alias": 4, "datatype": 9, "float_value": 1}, seq=1), "d"
    )
    waits = edge.send("DDATA", encode({"alias": 4, "float_value": 2.0}, seq=3), device="d")  # gap
    assert waits.parked
    edge.send("NBIRTH", birth(bd_seq=1))  # the device is not born again
    flowing = edge.send("NDATA", data(1, 1.0))
    [(message, error)] = flowing.rejected
    assert error.reason == "no_device_birth"
    assert message.device == "d"


def test_a_gap_of_more_than_half_the_cycle_is_still_a_gap() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth(seq=0))
    for s in range(1, 5):
        edge.send("NDATA", data(s, 1.0))
    far = edge.send("NDATA", data(200, 1.0))  # 195 lost: not a copy of one seen lately
    assert far.parked
    assert far.rebirth
    again = Edge()
    again.send("NBIRTH", birth(seq=0))
    for s in range(1, 5):
        again.send("NDATA", data(s, 1.0))
    assert not again.send("NDATA", data(2, 1.0)).parked  # a copy of one seen: behind


def test_what_waits_is_bounded_in_bytes_too() -> None:
    edge = Edge(Sessions(SessionOptions(max_parked_bytes=1000)))
    big = encode({"alias": 1, "string_value": "x" * 600}, seq=0)
    first, second = edge.send("NDATA", big), edge.send("NDATA", big)
    assert first.parked
    assert not second.parked
    [(_, error)] = second.rejected
    assert error.reason == "parked_full"


def test_sessions_are_forgotten_only_between_batches_and_once_saved() -> None:
    sessions = Sessions(SessionOptions(max_sessions=2))
    for n in range(3):
        Edge(sessions, node=f"plant/n{n}").send("NBIRTH", birth())
    assert all(f"plant/n{n}" in sessions for n in range(3))  # none evicted mid-batch
    sessions.trim()
    assert all(f"plant/n{n}" in sessions for n in range(3))  # not saved: kept
    for s in sessions.changed():
        s.changed = s.seq_changed = s.parked_rewrite = False
    sessions.trim()
    assert [f"plant/n{n}" in sessions for n in range(3)] == [False, True, True]


def test_a_refused_device_birth_makes_the_devices_data_wait_for_a_rebirth() -> None:
    edge = Edge()
    edge.send("NBIRTH", birth())
    edge.send(
        "DBIRTH", encode({"name": "P", "alias": 4, "datatype": 9, "float_value": 1}, seq=1), "d"
    )
    twice = encode(
        {"name": "P", "alias": 4, "datatype": 9, "float_value": 1},
        {"name": "Q", "alias": 4, "datatype": 9, "float_value": 2},
        seq=2,
    )
    out = edge.send("DBIRTH", twice, "d")
    [(_, error)] = out.rejected
    assert error.reason == "bad_birth"
    assert out.rebirth
    waits = edge.send("DDATA", encode({"alias": 4, "float_value": 3.0}, seq=3), device="d")
    assert waits.parked  # not named by the birth the device had before


def test_a_float_array_with_a_nan_is_a_bad_value() -> None:
    raw = struct.pack("<2f", 1.0, float("nan"))
    with pytest.raises(InvalidPayload) as caught:
        typed_value(one_metric(bytes_value=raw), 30, what="metric m")
    assert caught.value.reason == "bad_value"


def test_a_bug_half_way_leaves_the_session_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    edge = Edge()
    edge.send("NBIRTH", birth())
    edge.send("NDATA", data(3, 1.0))  # a gap: waits
    session = edge.sessions.get("plant/line1")
    assert session is not None
    before = (session.to_json(), session.seq, list(session.parked), edge.sessions.parked_bytes)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Sessions, "_take_parked", broken)
    with pytest.raises(RuntimeError):
        edge.send("NBIRTH", birth(bd_seq=1))
    after = (session.to_json(), session.seq, list(session.parked), edge.sessions.parked_bytes)
    assert after == before
