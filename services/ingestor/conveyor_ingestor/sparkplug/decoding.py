"""Sparkplug B payloads: protobuf bytes in, metrics with typed values out.

Every data type of the specification (Sparkplug 3.0, 6.4.16) becomes a value a realtime sample
can hold (``conveyor_messages.contract.Scalar``):

- integers (signed ones read as two's complement of their width, whether the edge node wrote
  them 32 bits wide, as Tahu does, or of their own width), floats, doubles, booleans, strings,
  text and UUIDs as themselves;
- DateTime as epoch milliseconds (an integer);
- Bytes and File as base64 text;
- DataSet, Template, PropertySet(List) and the arrays as JSON text (a DataSet as
  ``{"columns", "types", "rows"}``, a Template with its metrics and parameters).

A metric sent with ``is_null`` has the value None. A metric's datatype comes from the metric
itself, or for an aliased DATA metric that leaves it out, from its birth
(:func:`typed_value` takes it). Its properties (``engUnit``, ``engLow``, ...) are kept as plain
values. What cannot be read raises :class:`~conveyor_ingestor.errors.InvalidPayload` saying
what, so the message is parked in ``dead:ingest`` with that reason.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from conveyor_ingestor.errors import InvalidPayload
from conveyor_ingestor.limits import MAX_STRING_BYTES
from conveyor_ingestor.sparkplug import sparkplug_b_pb2 as pb

Value = float | int | bool | str

# Sparkplug data types (the schema's DataType enum), by name.
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT, UUID = 9, 10, 11, 12, 13, 14, 15
DATASET, BYTES, FILE, TEMPLATE, PROPERTYSET, PROPERTYSETLIST = 16, 17, 18, 19, 20, 21
BOOLEAN_ARRAY, STRING_ARRAY, DATETIME_ARRAY = 32, 33, 34

_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
_UNSIGNED_BITS = {UINT8: 8, UINT16: 16, UINT32: 32, UINT64: 64}
# Numeric arrays: little-endian, packed (struct's format character per element).
_ARRAYS = {22: "b", 23: "h", 24: "i", 25: "q", 26: "B", 27: "H", 28: "I", 29: "Q", 30: "f", 31: "d"}
_NAMES = {v.number: v.name for v in pb.DataType.DESCRIPTOR.values}
MAX_METRICS = 10_000
MAX_NESTING = 32
"""Deepest nesting of Templates in a metric."""
MAX_ARRAY_BYTES = 8 * MAX_STRING_BYTES
"""Largest packed array read: beyond, its JSON text could not be within MAX_STRING_BYTES."""


def datatype_name(datatype: int | None) -> str:
    return _NAMES.get(datatype or 0, f"datatype {datatype}")


@dataclass(slots=True)
class Metric:
    """One metric as sent: ``name`` and/or ``alias``; the wire value (``raw``, the protobuf
    field it came in as ``sent_as``) until :func:`typed_value` reads it with its datatype."""

    name: str | None
    alias: int | None
    timestamp: int | None
    datatype: int | None
    is_null: bool
    sent_as: str | None
    raw: Any
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Payload:
    timestamp: int | None
    seq: int | None
    metrics: list[Metric]


def decode(data: bytes) -> Payload:
    """The payload's timestamp, seq and metrics; InvalidPayload if it is not a Sparkplug B
    payload."""
    message = pb.Payload()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:  # RuntimeError: recursion too deep
        raise InvalidPayload(
            "not_sparkplug",
            f"payload is not a Sparkplug B protobuf payload ({exc or 'cannot parse'}): check "
            "that the edge node speaks Sparkplug B on this topic",
        ) from exc
    if len(message.metrics) > MAX_METRICS:
        raise InvalidPayload(
            "too_many_metrics",
            f"payload has {len(message.metrics):,} metrics, over the limit of {MAX_METRICS:,}",
        )
    return Payload(
        timestamp=message.timestamp if message.HasField("timestamp") else None,
        seq=message.seq if message.HasField("seq") else None,
        metrics=[_metric(m) for m in message.metrics],
    )


def _metric(m: pb.Payload.Metric) -> Metric:
    which = m.WhichOneof("value")
    raw: Any = getattr(m, which) if which is not None else None
    return Metric(
        name=m.name if m.HasField("name") else None,
        alias=m.alias if m.HasField("alias") else None,
        timestamp=m.timestamp if m.HasField("timestamp") else None,
        datatype=m.datatype if m.HasField("datatype") else None,
        is_null=m.is_null or which is None,
        sent_as=which,
        raw=raw,
        properties=_property_set(m.properties) if m.HasField("properties") else {},
    )


def typed_value(metric: Metric, datatype: int | None, *, what: str) -> Value | None:
    """The metric's value as its ``datatype`` says (None for a null metric); InvalidPayload,
    naming ``what``, when the value and the type do not fit together."""
    value = _plain(metric, datatype, what=what, depth=0)
    if not isinstance(value, dict | list):
        scalar: Value | None = value
        return scalar
    try:
        return _json(value)
    except ValueError as exc:  # a float that is not finite, deep in a DataSet or Template
        raise InvalidPayload(
            "bad_value", f"{what} holds a number that is not finite: only finite ones are stored"
        ) from exc


def _plain(metric: Metric, datatype: int | None, *, what: str, depth: int) -> Any:
    """The value as plain Python: scalars, and dicts and lists for the structured types
    (serialised once, by :func:`typed_value`)."""
    if metric.is_null:
        return None
    raw = metric.raw
    if datatype is None:
        raise InvalidPayload(
            "unknown_datatype",
            f"{what} has no datatype, in itself or its birth: send the datatype in the BIRTH",
        )
    try:
        if datatype in _SIGNED_BITS:
            bits = _SIGNED_BITS[datatype]
            value = _integer(raw) & ((1 << bits) - 1)
            return value - (1 << bits) if value >= 1 << (bits - 1) else value
        if datatype in _UNSIGNED_BITS:
            value = _integer(raw)
            if not 0 <= value < 1 << _UNSIGNED_BITS[datatype]:
                raise ValueError(f"{value} is out of range")
            return value
        if datatype in (FLOAT, DOUBLE):
            number = float(raw) if isinstance(raw, float) else _fail(raw)
            if not math.isfinite(number):
                raise InvalidPayload(
                    "bad_value", f"{what} is {number}: only finite numbers can be stored"
                )
            return number
        if datatype == BOOLEAN:
            return bool(raw) if isinstance(raw, bool) else _fail(raw)
        if datatype in (STRING, TEXT, UUID):
            return raw if isinstance(raw, str) else _fail(raw)
        if datatype == DATETIME:
            return _integer(raw)
        if datatype in (BYTES, FILE):
            return base64.b64encode(raw).decode() if isinstance(raw, bytes) else _fail(raw)
        if datatype == DATASET:
            return _dataset(raw)
        if datatype == TEMPLATE:
            if depth >= MAX_NESTING:
                raise InvalidPayload(
                    "too_deep", f"{what} nests Templates more than {MAX_NESTING} deep"
                )
            return _template(raw, depth=depth)
        if datatype in (PROPERTYSET, PROPERTYSETLIST):
            return _property_value_of(raw)
        if datatype in _ARRAYS:
            return _numeric_array(raw, _ARRAYS[datatype])
        if datatype == BOOLEAN_ARRAY:
            return _boolean_array(raw)
        if datatype == STRING_ARRAY:
            _short_enough(raw)
            parts = raw.split(b"\0")
            if parts and parts[-1] == b"":
                parts.pop()  # each string ends with a NUL; the last one's may be missing
            return [part.decode() for part in parts]
        if datatype == DATETIME_ARRAY:
            return _numeric_array(raw, "q")
    except InvalidPayload:
        raise
    except (
        TypeError,
        ValueError,
        OverflowError,
        AttributeError,
        struct.error,
        UnicodeDecodeError,
    ) as exc:
        raise InvalidPayload(
            "bad_value",
            f"{what} is not a valid {datatype_name(datatype)} (sent as {metric.sent_as}): {exc}",
        ) from exc
    raise InvalidPayload(
        "unknown_datatype",
        f"{what} has {datatype_name(datatype)}, which Sparkplug B does not define",
    )


def _integer(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise TypeError(f"a {type(raw).__name__} value where an integer belongs")
    return raw


def _short_enough(raw: bytes) -> None:
    """An array's JSON text is at least as long as its elements: one far beyond the text limit
    is refused before it is built (a few hundred thousand booleans would cost a second)."""
    if len(raw) > MAX_ARRAY_BYTES:
        raise InvalidPayload(
            "value_too_long",
            f"an array of {len(raw):,} bytes: its JSON text would be over the limit of "
            f"{MAX_STRING_BYTES:,} bytes a value may have",
        )


def _fail(raw: Any) -> Any:
    raise TypeError(f"a {type(raw).__name__} value")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


def _numeric_array(raw: bytes, code: str) -> list[Any]:
    _short_enough(raw)
    size = struct.calcsize(code)
    if len(raw) % size:
        raise ValueError(f"{len(raw)} bytes is not a whole number of {size}-byte elements")
    values = list(struct.unpack(f"<{len(raw) // size}{code}", raw))
    if code in "fd" and not all(math.isfinite(v) for v in values):
        raise ValueError("an element is not a finite number")
    return values


def _boolean_array(raw: bytes) -> list[bool]:
    """A 4-byte little-endian count, then the bits, most significant first."""
    if len(raw) < 4:
        raise ValueError("a boolean array starts with its 4-byte count")
    _short_enough(raw[4:])
    count = int.from_bytes(raw[:4], "little")
    if count > (len(raw) - 4) * 8:
        raise ValueError(f"{count} booleans in {len(raw) - 4} bytes")
    return [bool(raw[4 + i // 8] & (0x80 >> (i % 8))) for i in range(count)]


def _dataset(ds: pb.Payload.DataSet) -> dict[str, Any]:
    return {
        "columns": list(ds.columns),
        "types": [datatype_name(t) for t in ds.types],
        "rows": [[_oneof(v) for v in row.elements] for row in ds.rows],
    }


def _template(t: pb.Payload.Template, *, depth: int) -> dict[str, Any]:
    metrics = []
    for m in t.metrics:
        metric = _metric(m)
        name = metric.name or f"alias {metric.alias}"
        value = _plain(metric, metric.datatype, what=f"metric {name}", depth=depth + 1)
        metrics.append({"name": name, "value": value})
    return {
        "template_ref": t.template_ref,
        "version": t.version,
        "is_definition": t.is_definition,
        "metrics": metrics,
        "parameters": {p.name: _oneof(p) for p in t.parameters},
    }


def _property_set(ps: pb.Payload.PropertySet) -> dict[str, Any]:
    return {
        key: None if value.is_null else _property_value_of(value)
        for key, value in zip(ps.keys, ps.values, strict=False)
    }


def _property_value_of(value: Any) -> Any:
    if isinstance(value, pb.Payload.PropertySet):
        return _property_set(value)
    if isinstance(value, pb.Payload.PropertySetList):
        return [_property_set(s) for s in value.propertyset]
    if isinstance(value, pb.Payload.PropertyValue):
        which = value.WhichOneof("value")
        return None if which is None else _property_value_of(getattr(value, which))
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int | float | str | bool | None):
        return value
    return None  # an extension this schema does not know


def _oneof(message: Any) -> Any:
    which = message.WhichOneof("value")
    value = None if which is None else getattr(message, which)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, int | float | str | bool | None) else str(value)
