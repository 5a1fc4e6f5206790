"""Payload validation: MQTT bytes in, one normalised message per kind out.

OPC UA and PLC bridges publish JSON in a few common shapes; each kind accepts them all and
turns them into one model, so workers see one format:

- realtime: a flat object of values (``{"temp": 21.5, "timestamp": ...}``), an object with
  ``values`` (``{"timestamp": ..., "values": {...}}``), or an array of either, or of
  single-signal samples (``{"name"|"signal"|"nodeId": ..., "value": ..., "timestamp": ...}``);
  a value may be an OPC UA style object ``{"value": ..., "quality": ...}``.
- spc: ``{"characteristic": ..., "value": x}`` or ``"values": [subgroup]``, optionally with
  ``usl``/``lsl``/``target``; or a flat object of characteristic -> value; or an array.
- tech: a JSON object (or ``{"config": {...}}``): the machine's technical configuration.
- alert: an object with a ``type``/``code`` and/or ``message``, a ``severity``.

Timestamps may be ISO 8601 strings or UNIX times in s, ms, µs or ns (told apart by their
size); they become epoch milliseconds. Anything else raises :class:`InvalidPayload` with a reason
a person can act on, and so does anything the sinks could not hold exactly (names, text and
times out of bounds: :mod:`conveyor_ingestor.limits`).

The output is the message contract the worker reads (``conveyor_messages.contract``): plain
dicts, typed. Every field is checked while the shapes are read, so :func:`parse_job`, the
ingestor's hot path, builds them without checking them a second time;
:func:`parse_message` also checks its output against the contract (the tests hold the two
equal).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from conveyor_messages.contract import (
    AlertMessage,
    Envelope,
    Message,
    RealtimeMessage,
    Sample,
    Scalar,
    Severity,
    SpcSample,
    TechMessage,
    validate_message,
)

from conveyor_ingestor.errors import InvalidPayload
from conveyor_ingestor.limits import (
    MAX_CONFIG_BYTES,
    MAX_DETAILS_BYTES,
    MAX_NUMBER,
    check_document,
    check_name,
    check_tag,
    check_text,
    check_time_ms,
    check_unicode,
    clean_unit,
    shown,
    shown_number,
)
from conveyor_ingestor.routing import Kind

TIMESTAMP_KEYS = ("timestamp", "ts", "time", "sourceTimestamp", "SourceTimestamp")
SIGNAL_KEYS = ("name", "signal", "nodeId", "NodeId", "id")
MAX_SAMPLES = 10_000
MAX_UNITS = 10_000
"""Entries of one ``units`` object read (the signals of a message are as many at most)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_message(
    kind: Kind, *, machine: str, topic: str, payload: bytes, received_at: int
) -> Message:
    """Validate ``payload`` as a message of ``kind``; raise InvalidPayload if it is not one.
    ``machine`` is the topic level the route takes the machine id from. The job data
    :func:`parse_job` makes, checked against the message contract."""
    data, _ = parse_job(
        kind, machine=machine, topic=topic, payload=payload, received_at=received_at
    )
    return validate_message(kind, data)


def parse_job(
    kind: Kind, *, machine: str, topic: str, payload: bytes, received_at: int
) -> tuple[Message, bool]:
    """The job data of a message of ``kind`` (``conveyor_messages.contract``), and whether the
    message carries its own identity (:func:`has_own_identity`); InvalidPayload if it is not
    one. The ingestor's hot path: built as plain dicts, each field checked once."""
    doc, head = _decode(machine=machine, topic=topic, payload=payload, received_at=received_at)
    message: Message
    if kind == "realtime":
        units: dict[str, str] = {}
        realtime: RealtimeMessage = {
            "machine": head["machine"],
            "topic": head["topic"],
            "received_at": head["received_at"],
            "kind": "realtime",
            "samples": _realtime_samples(doc, units),
        }
        if units:
            realtime["units"] = units
        message = realtime
    elif kind == "spc":
        message = {**head, "kind": "spc", "samples": _spc_samples(doc)}
    else:
        message = _document(kind, doc, head)
    return message, has_own_identity(message)


def _decode(*, machine: str, topic: str, payload: bytes, received_at: int) -> tuple[Any, Envelope]:
    check_tag(machine, what="machine id (from the topic)")
    try:
        text = payload.decode("utf-8-sig")  # strict: no surrogates, no UTF-16
    except UnicodeDecodeError as exc:
        raise InvalidPayload(
            "not_utf8", f"payload is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload("not_json", f"payload is not JSON: {exc.msg} at {exc.pos}") from exc
    except ValueError as exc:  # an integer of more digits than Python converts
        raise InvalidPayload("not_json", f"payload has a number Python cannot read: {exc}") from exc
    except RecursionError as exc:
        raise InvalidPayload("not_json", "payload nests too deeply") from exc
    check_unicode(text, doc)
    return doc, {"machine": machine, "topic": topic, "received_at": received_at}


def _document(kind: Kind, doc: Any, head: Envelope) -> TechMessage | AlertMessage:
    obj = _object(doc, kind)
    if kind == "tech":
        config = obj.get("config", obj)
        if not isinstance(config, dict) or not config:
            raise InvalidPayload("no_config", "a tech message needs a non-empty JSON object")
        ts = _pop_ts(dict(obj))
        config = {k: v for k, v in config.items() if k not in TIMESTAMP_KEYS}
        check_document(
            config, what="tech config", limit=MAX_CONFIG_BYTES, reason="config_too_large"
        )
        return TechMessage(**head, kind="tech", ts=ts, config=config)
    return _alert(obj, head)


def _object(doc: Any, kind: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidPayload("wrong_shape", f"a {kind} message must be a JSON object")
    return doc


def _items(doc: Any, kind: str) -> list[dict[str, Any]]:
    """A message's samples: one JSON object or an array of them, each a copy to take apart."""
    items = doc if isinstance(doc, list) else [doc]
    if len(items) > MAX_SAMPLES:
        raise InvalidPayload("too_many_samples", f"{len(items)} samples, at most {MAX_SAMPLES}")
    if not all(isinstance(item, dict) for item in items):
        raise InvalidPayload("wrong_shape", f"{kind} samples must be JSON objects")
    return [dict(item) for item in items]


def _realtime_samples(doc: Any, units: dict[str, str]) -> list[Sample]:
    """Each sample as a ``Sample``: ``{"ts": ..., "values": {...}}``; the units the samples
    name go into ``units`` (signal -> unit). Units are extra: one that is not a unit, or names
    a signal the message does not carry, is left out - never the values with it."""
    samples: list[Sample] = []
    named: dict[str, object] = {}
    for item in _items(doc, "realtime"):
        ts = _pop_ts(item)
        if "values" in item:
            values = item["values"]
            if not isinstance(values, dict):
                raise InvalidPayload("wrong_shape", "'values' must be an object of signal -> value")
            if "units" in item:
                _take_units(item["units"], named)
        elif "value" in item and any(k in item for k in SIGNAL_KEYS):
            name = next(str(item[k]) for k in SIGNAL_KEYS if k in item)
            values = {name: item["value"]}
            if "unit" in item or "units" in item:
                named[name] = item.get("unit", item.get("units"))
        else:
            values = item
            # In a flat object, "units" is the units when it is an object of names (an OPC UA
            # value object, {"value": ...}, is a signal called "units").
            if "units" in values:
                maybe = values["units"]
                if isinstance(maybe, dict) and "value" not in maybe:
                    values = {k: v for k, v in values.items() if k != "units"}
                    _take_units(maybe, named)
        checked = {
            check_tag(k, what="signal name"): _scalar(k, v, named) for k, v in values.items()
        }
        samples.append({"ts": ts, "values": checked})
    if named:  # most messages name no unit: nothing to look for
        carried = {signal for sample in samples for signal in sample["values"]}
        for signal, unit in named.items():
            if signal in carried and (clean := clean_unit(unit)) is not None:
                units[signal] = clean
    if not samples or not any(s["values"] for s in samples):
        raise InvalidPayload("no_values", "the message carries no values")
    return samples


def _spc_samples(doc: Any) -> list[SpcSample]:
    """Each sample as an ``SpcSample``."""
    samples: list[SpcSample] = []
    for item in _items(doc, "SPC"):
        ts = _pop_ts(item)
        spec: dict[str, float] = {
            k: _number(k, item.pop(k)) for k in ("usl", "lsl", "target") if k in item
        }
        if "characteristic" in item:
            name = check_tag(str(item["characteristic"]), what="SPC characteristic")
            raw = item.get("values", item.get("value"))
            values = raw if isinstance(raw, list) else [raw]
            numbers = [_number(name, v) for v in values]
            samples.append({"ts": ts, "characteristic": name, "values": numbers, "spec": spec})
        else:
            for name, value in item.items():
                check_tag(name, what="SPC characteristic")
                values = value if isinstance(value, list) else [value]
                numbers = [_number(name, v) for v in values]
                samples.append(
                    {"ts": ts, "characteristic": str(name), "values": numbers, "spec": {}}
                )
    if not samples or any(not s["values"] for s in samples):
        raise InvalidPayload("no_values", "an SPC message needs at least one measured value")
    if len(samples) > MAX_SAMPLES:
        raise InvalidPayload("too_many_samples", f"{len(samples)} samples, at most {MAX_SAMPLES}")
    return samples


def _alert(obj: dict[str, Any], head: Envelope) -> AlertMessage:
    obj = dict(obj)
    ts = _pop_ts(obj)
    kind = next((str(obj.pop(k)) for k in ("type", "code", "alarm", "name") if k in obj), "")
    message = next((str(obj.pop(k)) for k in ("message", "text", "description") if k in obj), "")
    if not kind and not message:
        raise InvalidPayload("no_alert", "an alert needs a 'type' (or 'code') or a 'message'")
    raw = str(obj.pop("severity", obj.pop("level", "warning"))).lower()
    severity: str = {
        "error": "critical",
        "fatal": "critical",
        "high": "critical",
        "warn": "warning",
        "medium": "warning",
        "low": "info",
        "notice": "info",
    }.get(raw, raw)
    if severity not in ("info", "warning", "critical"):
        raise InvalidPayload(
            "bad_severity", f"severity {shown(raw)}: use info, warning or critical"
        )
    check_document(obj, what="alert details", limit=MAX_DETAILS_BYTES, reason="details_too_large")
    return AlertMessage(
        **head,
        kind="alert",
        ts=ts,
        type=check_name(kind or "alert", what="alert type"),
        severity=cast(Severity, severity),
        message=check_text(message, what="alert message"),
        details=obj,
    )


def _take_units(sent: object, named: dict[str, object]) -> None:
    """A ``units`` object's signal -> unit, into ``named`` (anything else names none)."""
    if isinstance(sent, dict):
        named.update((str(k), v) for k, v in list(sent.items())[:MAX_UNITS])


def _scalar(name: Any, value: Any, units: dict[str, object] | None = None) -> Scalar:
    if isinstance(value, dict) and "value" in value:  # OPC UA style {"value": .., "quality": ..}
        if units is not None and "unit" in value:
            units[name] = value["unit"]
        value = value["value"]
    if isinstance(value, str):
        return check_text(value, what=f"value of {shown(name)}")
    if isinstance(value, int):  # bool included
        if not -1e308 < value < 1e308:  # the worker writes numbers as floats
            raise InvalidPayload(
                "bad_value", f"value of {shown(name)} is too large for a 64-bit float"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPayload("bad_value", f"value of {shown(name)} is not a finite number")
        return value
    raise InvalidPayload(
        "bad_value",
        f"value of {shown(name)} must be a number, boolean or string, not {_type(value)}",
    )


def _number(name: Any, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPayload(
            "bad_value", f"{shown(str(name))} must be a finite number, not {_type(value)}"
        )
    if not -MAX_NUMBER <= value <= MAX_NUMBER:  # also NaN; and ints a float cannot hold
        raise InvalidPayload(
            "bad_value",
            f"{shown(str(name))} is {_magnitude(value)}: SPC values must be finite and within "
            f"±{MAX_NUMBER:g}",
        )
    return float(value)


def _magnitude(value: float) -> str:
    try:
        return f"{float(value):.6g}"
    except OverflowError:
        return "beyond a 64-bit float"


def _pop_ts(item: dict[str, Any]) -> int | None:
    for key in TIMESTAMP_KEYS:
        if key in item:
            return parse_timestamp(item.pop(key))
    return None


def parse_timestamp(value: Any) -> int:
    """Epoch milliseconds from an ISO 8601 string (UTC unless it says otherwise) or a UNIX time
    in s, ms, µs or ns, told apart by size: up to 1e11 is seconds (a float to the nearest ms),
    up to 1e14 ms, up to 1e17 µs, beyond that ns (both cut to the ms). The time must be in
    InfluxDB's range; a number must not be negative (for times before 1970 send ISO 8601)."""
    if isinstance(value, bool):
        raise InvalidPayload("bad_timestamp", "a timestamp cannot be a boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidPayload("bad_timestamp", f"timestamp {value!r} is not a finite number")
        if value < 0:
            raise InvalidPayload(
                "bad_timestamp",
                f"timestamp {shown_number(value)} is negative: UNIX times count from 1970 "
                "(for earlier times send ISO 8601)",
            )
        return check_time_ms(_epoch_ms(value), sent=value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidPayload(
                "bad_timestamp", f"timestamp {shown(value)} is not ISO 8601"
            ) from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return check_time_ms((parsed - _EPOCH) // _MS, sent=value)
    raise InvalidPayload(
        "bad_timestamp", f"timestamp must be a string or number, not {_type(value)}"
    )


def _epoch_ms(value: int | float) -> int:
    if value > 1e11:
        div = 1_000_000 if value > 1e17 else 1_000 if value > 1e14 else 1
        return value // div if isinstance(value, int) else math.floor(value / div)
    return value * 1000 if isinstance(value, int) else round(value * 1000)


def has_own_identity(message: Message) -> bool:
    """True when the message carries its own time, so equal bytes mean the same message."""
    if message["kind"] == "realtime" or message["kind"] == "spc":
        return all(s["ts"] is not None for s in message["samples"])
    return message["ts"] is not None


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__
