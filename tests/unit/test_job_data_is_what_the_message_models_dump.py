"""The ingestor builds job data without the message models (``parse_job``, its hot path): for
every shape it is exactly ``parse_message(...).model_dump(mode="json")``, the models accept
it, the identity flag agrees with ``has_own_identity``, and what one refuses the other refuses
for the same reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conveyor_ingestor import InvalidPayload, parse_message
from conveyor_ingestor.payloads import (
    AlertMessage,
    RealtimeMessage,
    SpcMessage,
    TechMessage,
    has_own_identity,
    parse_job,
)
from conveyor_ingestor.routing import Kind
from pydantic_core import to_json

MODELS = {
    "realtime": RealtimeMessage,
    "spc": SpcMessage,
    "tech": TechMessage,
    "alert": AlertMessage,
}
TS = 1_750_000_000_000

VALID: list[tuple[Kind, Any]] = [
    ("realtime", {"temp": 21.5, "run": True, "mode": "auto"}),
    ("realtime", {"temp": 1, "timestamp": TS}),
    ("realtime", {"timestamp": "2025-06-15T15:06:40Z", "values": {"temp": 2, "n": -3}}),
    ("realtime", [{"ts": TS / 1000, "temp": 3}, {"ts": TS * 1000, "temp": 4}]),
    ("realtime", [{"ts": TS, "temp": 3}, {"temp": 4}]),
    ("realtime", [{"nodeId": "ns=2;s=Temp", "value": 5, "sourceTimestamp": TS}]),
    ("realtime", {"temp": {"value": 6.5, "quality": "good"}}),
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


def _parse(kind: Kind, payload: bytes) -> tuple[Any, Any]:
    args: dict[str, Any] = {"machine": "m1", "topic": f"m1/{kind}", "received_at": 7}
    return (
        parse_job(kind, payload=payload, **args),
        parse_message(kind, payload=payload, **args),
    )


@pytest.mark.parametrize(("kind", "doc"), VALID)
def test_job_data_equals_the_models_json_dump(kind: Kind, doc: Any) -> None:
    (data, own_identity), message = _parse(kind, json.dumps(doc).encode())
    assert data == message.model_dump(mode="json")
    assert to_json(data) == to_json(message.model_dump(mode="json"))  # same bytes, same order
    MODELS[kind].model_validate(data)
    assert own_identity is has_own_identity(message)


@pytest.mark.parametrize(("kind", "doc"), INVALID)
def test_both_refuse_the_same_payloads_for_the_same_reason(kind: Kind, doc: Any) -> None:
    reasons = []
    for parse in (parse_job, parse_message):
        with pytest.raises(InvalidPayload) as info:
            parse(kind, machine="m1", topic="m1/x", payload=json.dumps(doc).encode(), received_at=1)
        reasons.append((info.value.reason, info.value.detail))
    assert reasons[0] == reasons[1]
