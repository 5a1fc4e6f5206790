"""Normalised messages to InfluxDB line protocol, written by the workers.

- realtime: measurement ``realtime``, tags ``machine`` and ``signal``; a number goes to the
  float field ``value``, a boolean to ``flag``, a string to ``text`` (separate fields, so a
  signal that changes type never conflicts with itself).
- spc: measurement ``spc``, tags ``machine`` and ``characteristic``; fields ``value`` (the
  point: the value, or the subgroup mean), ``range`` and ``n`` for subgroups, and the control
  limits ``cl``, ``ucl``, ``lcl`` in force when the point was judged.
- tech: measurement ``tech``, tag ``machine``; fields ``config`` (JSON) and ``version``.

Each point carries the message's own timestamp, or the time the ingestor received it, in
milliseconds: the same message always makes the same point, so a retried write overwrites
instead of adding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _field_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any], ts_ms: int) -> str:
    """One point; tags with empty values are left out (InfluxDB rejects them)."""
    tag_part = "".join(
        f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items()) if v != ""
    )
    field_part = ",".join(f"{_escape_key(k)}={_field_value(v)}" for k, v in fields.items())
    return f"{_escape_measurement(measurement)}{tag_part} {field_part} {ts_ms}"


def point_time(message: Mapping[str, Any], part: Mapping[str, Any] | None = None) -> int:
    """Milliseconds: the sample's (or message's) own time, else when the ingestor received it.
    The same message always gives the same time, which makes retried writes overwrite."""
    own = (part if part is not None else message).get("ts")
    return int(own) if own is not None else int(message["received_at"])


def realtime_lines(message: Mapping[str, Any]) -> list[str]:
    out = []
    for sample in message["samples"]:
        ts = point_time(message, sample)
        for signal, value in sample["values"].items():
            if isinstance(value, bool):
                fields: dict[str, Any] = {"flag": value}
            elif isinstance(value, int | float):
                fields = {"value": float(value)}
            else:
                fields = {"text": value}
            out.append(
                line("realtime", {"machine": message["machine"], "signal": signal}, fields, ts)
            )
    return out


def spc_line(
    *,
    machine: str,
    characteristic: str,
    ts_ms: int,
    values: list[float],
    limits: Mapping[str, Any] | None,
) -> str:
    fields: dict[str, Any] = {"value": sum(values) / len(values)}
    if len(values) > 1:
        fields["range"] = max(values) - min(values)
        fields["n"] = len(values)
    if limits is not None:
        fields.update({k: float(limits[k]) for k in ("cl", "ucl", "lcl")})
    return line("spc", {"machine": machine, "characteristic": characteristic}, fields, ts_ms)


def tech_line(*, machine: str, ts_ms: int, config: Mapping[str, Any], version: int) -> str:
    fields = {"config": json.dumps(config, sort_keys=True), "version": version}
    return line("tech", {"machine": machine}, fields, ts_ms)
