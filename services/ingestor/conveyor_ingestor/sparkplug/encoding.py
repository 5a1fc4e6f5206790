"""Sparkplug B payloads out: what an edge node sends (the simulator's) and what a host
application sends it (the ingestor's Rebirth request)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from conveyor_ingestor.sparkplug import sparkplug_b_pb2 as pb
from conveyor_ingestor.sparkplug.decoding import (
    BOOLEAN,
    DATETIME,
    DOUBLE,
    FLOAT,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    TEXT,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    UUID,
    Value,
)

_INT = {INT8: 32, INT16: 32, INT32: 32, UINT8: 32, UINT16: 32, UINT32: 32}


@dataclass(frozen=True, slots=True)
class OutMetric:
    """One metric to send: by ``name`` (births, commands) or ``alias`` (data), or both."""

    datatype: int
    value: Value | None
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    properties: tuple[tuple[str, str], ...] = ()
    """String properties, e.g. ``(("engUnit", "°C"),)``."""


def encode_payload(
    metrics: Iterable[OutMetric], *, timestamp: int, seq: int | None = None
) -> bytes:
    payload = pb.Payload(timestamp=timestamp)
    if seq is not None:
        payload.seq = seq
    for m in metrics:
        metric = payload.metrics.add()
        if m.name is not None:
            metric.name = m.name
        if m.alias is not None:
            metric.alias = m.alias
        if m.timestamp is not None:
            metric.timestamp = m.timestamp
        metric.datatype = m.datatype
        for key, text in m.properties:
            metric.properties.keys.append(key)
            metric.properties.values.add(type=STRING, string_value=text)
        if m.value is None:
            metric.is_null = True
        elif m.datatype in _INT:
            metric.int_value = int(m.value) & 0xFFFFFFFF  # two's complement, 32 bits (Tahu)
        elif m.datatype in (INT64, UINT64, DATETIME):
            metric.long_value = int(m.value) & 0xFFFFFFFFFFFFFFFF
        elif m.datatype == FLOAT:
            metric.float_value = float(m.value)
        elif m.datatype == DOUBLE:
            metric.double_value = float(m.value)
        elif m.datatype == BOOLEAN:
            metric.boolean_value = bool(m.value)
        elif m.datatype in (STRING, TEXT, UUID):
            metric.string_value = str(m.value)
        else:
            raise ValueError(f"cannot encode datatype {m.datatype} here")
    return payload.SerializeToString()
