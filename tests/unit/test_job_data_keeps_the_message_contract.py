"""The message contract (``conveyor_messages.contract``) holds: the job data the ingestor makes
for every shape it accepts keeps it, with the identity flag ``has_own_identity`` gives; the
contract refuses what breaks it (a missing, extra or mistyped field), so the checks can fail;
and the alerts the worker and the operator make themselves keep it too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conveyor_ingestor import InvalidPayload, parse_message
from conveyor_ingestor.payloads import has_own_identity, parse_job
from conveyor_ingestor.routing import Kind
from conveyor_messages.contract import validate_message
from conveyor_operator.alert_posting import queue_alert
from conveyor_operator.queue_alerts import RULES, Transition
from conveyor_worker.processors import _spc_alert
from conveyor_worker.spc import Limits
from pydantic import ValidationError
from pydantic_core import to_json

TS = 1_750_000_000_000

VALID: list[tuple[Kind, Any]] = [
    ("realtime", {"temp": 21.5, "run": True, "mode": "auto"}),
    ("realtime", {"temp": 1, "timestamp": TS}),
    ("realtime", {"timestamp": "2025-06-15T15:06:40Z", "values": {"temp": 2, "n": -3}}),
    ("realtime", [{"ts": TS / 1000, "temp": 3}, {"ts": TS * 1000, "temp": 4}]),
    ("realtime", [{"ts": TS, "temp": 3}, {"temp": 4}]),
    ("realtime", [{"nodeId": "ns=2;s=Temp", "value": 5, "sourceTimestamp": TS}]),
    ("realtime", {"temp": {"value": 6.5, "quality": "good"}}),
    ("realtime", {"values": {"temp": 7, "rpm": 8}, "units": {"temp": "°C"}}),
    ("realtime", {"temp": {"value": 6.5, "unit": "°C"}, "units": 3}),
    ("spc", {"characteristic": "bore", "values": [10.01, 9.99], "usl": 10.1, "lsl": 9.9}),
    ("spc", {"bore": 10.0, "depth": [5, 5.1], "timestamp": TS}),
    ("spc", [{"characteristic": "b", "value": 1, "ts": TS}, {"characteristic": "b", "value": 2}]),
    ("tech", {"config": {"fw": "2.1", "axes": [1, 2]}, "timestamp": TS}),
    ("tech", {"fw": "2.1"}),
    ("alert", {"code": "E42", "level": "error", "text": "spindle stall", "axis": "Z"}),
    ("alert", {"type": "door", "timestamp": TS}),
]

INVALID: list[tuple[Kind, Any]] = [
    ("realtime", {}),
    ("realtime", {"temp": [1, 2]}),
    ("realtime", 42),
    ("realtime", {"temp": 1, "timestamp": -5}),
    ("realtime", {"bad\nname": 1}),
    ("spc", {"characteristic": "x", "value": True}),
    ("spc", []),
    ("tech", {}),
    ("alert", {"severity": "info"}),
]


ARGS: dict[str, Any] = {"machine": "m1", "received_at": 7}


def _parse(kind: Kind, doc: Any) -> tuple[Any, bool]:
    return parse_job(kind, topic=f"m1/{kind}", payload=json.dumps(doc).encode(), **ARGS)


@pytest.mark.parametrize(("kind", "doc"), VALID)
def test_job_data_keeps_the_contract(kind: Kind, doc: Any) -> None:
    data, own_identity = _parse(kind, doc)
    # Byte for byte: the same keys in the same order, and the same types (1 is not 1.0).
    assert to_json(validate_message(kind, data)) == to_json(data)
    assert (data["kind"], data["machine"], data["received_at"]) == (kind, "m1", 7)
    assert own_identity is has_own_identity(data)
    payload = json.dumps(doc).encode()
    assert parse_message(kind, topic=f"m1/{kind}", payload=payload, **ARGS) == data


@pytest.mark.parametrize(("kind", "doc"), INVALID)
def test_what_the_ingestor_refuses_it_says_why(kind: Kind, doc: Any) -> None:
    with pytest.raises(InvalidPayload) as info:
        _parse(kind, doc)
    assert info.value.reason
    assert info.value.detail


BROKEN = [
    ("a field missing", lambda d: d.pop("received_at")),
    ("a field extra", lambda d: d.update(extra=1)),
    ("a sample's field extra", lambda d: d["samples"][0].update(quality="good")),
    ("a time as text", lambda d: d["samples"][0].update(ts="1750000000000")),
    ("a value that is a list", lambda d: d["samples"][0]["values"].update(temp=[1, 2])),
    ("another kind", lambda d: d.update(kind="spc")),
]


@pytest.mark.parametrize(("what", "breaking"), BROKEN, ids=[b[0] for b in BROKEN])
def test_the_contract_refuses_what_breaks_it(what: str, breaking: Any) -> None:
    data, _ = _parse("realtime", {"temp": 21.5, "timestamp": TS})
    breaking(data)
    with pytest.raises(ValidationError):
        validate_message("realtime", data)


def test_the_alerts_the_worker_and_the_operator_make_keep_it() -> None:
    spc, _ = _parse("spc", {"characteristic": "bore", "value": 10.2, "ts": TS})
    limits = Limits(centre=10.0, sigma=0.033, chart="I-MR")
    job = _spc_alert(spc, "bore", TS, 1, (10.2,), limits, "p1")
    assert validate_message("alert", job.data) == job.data
    for rule in RULES:
        for state in ("firing", "resolved"):
            change = Transition(rule=rule, state=state, value=1.0, threshold=2.0, for_s=60.0)
            body = {"metadata": {"name": "mq", "namespace": "ns"}}
            alert = queue_alert(body, "q", change, now_ms=TS)
            assert validate_message("alert", alert) == alert
