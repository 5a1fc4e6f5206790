"""Normalised messages to InfluxDB line protocol, written by the workers.

- realtime: measurement ``realtime``, tags ``machine`` and ``signal``; a number goes to the
  float field ``value``, a boolean to ``flag``, a string to ``text`` (separate fields, so a
  signal that changes type never conflicts with itself).
- spc: measurement ``spc``, tags ``machine`` and ``characteristic``; fields ``value`` (the
  point: the value, or the subgroup mean), ``range`` and ``n`` for subgroups, the control
  limits ``cl``, ``ucl``, ``lcl`` in force when the point was judged (and the R chart's
  ``r_cl``, ``r_ucl``, ``r_lcl`` for subgroups), and ``rules``: the Western Electric rules the
  point broke, as text (``"1,4"``), when it broke any.
- tech: measurement ``tech``, tag ``machine``; fields ``config`` (JSON) and ``version``.
- alerts (delivered, best effort): measurement ``alerts``, tags ``machine``, ``type`` and
  ``severity``; fields ``message`` and ``state`` (``firing``/``resolved``, when it has one).

Each point carries the message's own timestamp, or the time the ingestor received it, in
milliseconds: the same message always makes the same point, so a retried write overwrites
instead of adding.

Escaping follows what InfluxDB 1.8's parser (``models/points.go``) undoes, so a query returns
exactly what was sent:

- measurement: ``,`` and space get a backslash; tag keys and values, field keys: ``,``, ``=``
  and space. A backslash is *not* escaped there: InfluxDB keeps ``\\\\`` as two characters.
- string field values: ``\\`` and ``"`` get a backslash; everything else, line breaks included,
  goes as it is inside the quotes (InfluxDB stores a written ``\\n`` as a backslash and an n).

What that syntax cannot carry raises ValueError, so the worker fails just that job: a line
break in a measurement, tag or field key (it would end the line), a name ending in a backslash
(it would escape the delimiter after it), an odd run of backslashes before ``,``, ``=`` or
space (InfluxDB's line splitter pairs backslashes differently from its tag parser, and would
then read a later line break inside a string field as the end of the line: the rest becomes a
line of the sender's choosing), lone surrogates (not UTF-8), an empty key, a float that is not
finite, an integer beyond int64, a time outside InfluxDB's range, a string field over 64 KiB, a
series key over InfluxDB's 65,535 bytes. The ingestor refuses all of these before they are
queued; this is the last line of defence.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from conveyor_messages.contract import RealtimeMessage

MIN_TIME_MS = -9_223_372_036_854
MAX_TIME_MS = 9_223_372_036_854
"""InfluxDB's time range (int64 ns, 1677-09-21 .. 2262-04-11) in whole milliseconds."""
MAX_KEY_BYTES = 65_535
"""InfluxDB's limit on a series key (measurement, tags and a field key)."""
MAX_STRING_FIELD_BYTES = 64 * 1024
"""InfluxDB's documented limit on a string field value."""
SPC_LIMITS = ("cl", "ucl", "lcl", "r_cl", "r_ucl", "r_lcl")
"""The control limits an SPC point carries, when it has them."""

_INT64 = 2**63
_FLOAT_EXACT = 2**53  # integers a float holds exactly (and so finite)
_CACHED = 256  # names up to this many characters are escaped once, then looked up
# A line break, a lone surrogate, an odd run of backslashes before a delimiter, a final one.
_UNWRITABLE_KEY = re.compile(r"[\n\ud800-\udfff]|(?<!\\)(?:\\\\)*\\[ ,=]|\\\Z")
_UNWRITABLE_STRING = re.compile(r"[\ud800-\udfff]")


def _tag_escaped(text: str) -> str | None:
    """``text`` escaped as a tag key or value (or field key); None if it cannot be one."""
    if _UNWRITABLE_KEY.search(text) is not None:
        return None
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


_tag_escaped_cached = lru_cache(maxsize=4096)(_tag_escaped)


def _escape_key(text: str, what: str) -> str:
    if type(text) is not str:
        raise TypeError(f"{what} must be a string, not {type(text).__name__}")
    escaped = _tag_escaped_cached(text) if len(text) <= _CACHED else _tag_escaped(text)
    if not escaped:  # None, or empty
        bad = _UNWRITABLE_KEY.search(text)
        raise ValueError(
            f"{what} {text[:48]!r} cannot be written to InfluxDB exactly"
            + (f" ({bad.group()[-1:]!r} at position {bad.start()})" if bad else " (empty)")
            + ": the ingestor refuses such names"
        )
    return escaped


def _escape_measurement(text: str) -> str:
    if text.startswith("#"):
        raise ValueError(f"measurement {text!r} would make the line a comment")
    escaped = _escape_key(text, "measurement")
    return escaped.replace("\\=", "=")  # '=' is not special in a measurement


def _field_value(key: str, value: Any) -> str:
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"field {key!r}: {value!r} is not a number InfluxDB can store")
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        if not -_INT64 <= value < _INT64:
            raise ValueError(f"field {key!r}: integer {value} is beyond InfluxDB's int64")
        return f"{value}i"
    if kind is not str:
        raise TypeError(f"field {key!r}: cannot write a {kind.__name__}")
    if _UNWRITABLE_STRING.search(value) is not None:
        raise ValueError(f"field {key!r}: a lone surrogate is not UTF-8 text")
    if len(value) > MAX_STRING_FIELD_BYTES // 4 and len(value.encode()) > MAX_STRING_FIELD_BYTES:
        raise ValueError(f"field {key!r}: over InfluxDB's {MAX_STRING_FIELD_BYTES:,} bytes")
    text: str = value
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any], ts_ms: int) -> str:
    """One point; tags with empty values are left out (InfluxDB rejects them).
    Raises ValueError (or TypeError) for what InfluxDB cannot hold exactly."""
    if type(ts_ms) is not int:
        raise TypeError(f"the time must be integer milliseconds, not {type(ts_ms).__name__}")
    if not MIN_TIME_MS <= ts_ms <= MAX_TIME_MS:
        raise ValueError(f"time {ts_ms} ms is outside InfluxDB's range (years 1677..2262)")
    if not fields:
        raise ValueError("a point needs at least one field")
    key = _escape_measurement(measurement) + "".join(
        f",{_escape_key(k, 'tag key')}={_escape_key(v, 'tag value')}"
        for k, v in sorted(tags.items())
        if v != ""
    )
    field_part = ",".join(
        f"{_escape_key(k, 'field key')}={_field_value(k, v)}" for k, v in fields.items()
    )
    if len(key) + len(field_part) > MAX_KEY_BYTES // 4:  # else surely within
        longest = max(len(_escape_key(k, "field key").encode()) for k in fields)
        if len(key.encode()) + longest > MAX_KEY_BYTES:
            raise ValueError(f"the series key is over InfluxDB's {MAX_KEY_BYTES:,} bytes")
    return f"{key} {field_part} {ts_ms}"


def point_time(message: Mapping[str, Any], part: Mapping[str, Any] | None = None) -> int:
    """Milliseconds: the sample's (or message's) own time, else when the ingestor received it.
    The same message always gives the same time, which makes retried writes overwrite."""
    own = (part if part is not None else message).get("ts")
    return int(own) if own is not None else int(message["received_at"])


def realtime_lines(message: RealtimeMessage) -> list[str]:
    """The message's points, one per signal of each sample. The common point (a plain name, a
    number or a boolean, a time in range) is written here directly, which is what a worker
    spends most of its time on; anything else goes through :func:`line`, which gives the same
    line or the same error."""
    machine = message["machine"]
    head = None  # "realtime,machine=<escaped>", escaped at its first use as in line()
    short = type(machine) is str and 0 < len(machine) <= _CACHED
    out = []
    value: Any  # checked by type here: a job from elsewhere may not keep the contract
    for sample in message["samples"]:
        ts = point_time(message, sample)
        plain = short and MIN_TIME_MS <= ts <= MAX_TIME_MS
        for signal, value in sample["values"].items():
            kind = type(value)
            if plain and type(signal) is str and 0 < len(signal) <= _CACHED:
                if kind is float and math.isfinite(value):
                    field = f"value={value!r}"
                elif kind is bool:
                    field = "flag=true" if value else "flag=false"
                elif kind is int and -_FLOAT_EXACT < value < _FLOAT_EXACT:
                    field = f"value={float(value)!r}"
                else:
                    field = ""
                if field:
                    if head is None:
                        head = "realtime,machine=" + _escape_key(machine, "tag value")
                    key = f"{head},signal={_escape_key(signal, 'tag value')}"
                    if len(key) + len(field) <= MAX_KEY_BYTES // 4:
                        out.append(f"{key} {field} {ts}")
                        continue
            if kind is bool:
                fields: dict[str, Any] = {"flag": value}
            elif isinstance(value, int | float):
                fields = {"value": float(value)}
            else:
                fields = {"text": value}
            out.append(line("realtime", {"machine": machine, "signal": signal}, fields, ts))
    return out


def spc_line(
    *,
    machine: str,
    characteristic: str,
    ts_ms: int,
    values: list[float],
    limits: Mapping[str, Any] | None,
    rules: Sequence[int] = (),
) -> str:
    """``limits``: those in force (``cl``, ``ucl``, ``lcl``, and ``r_cl``, ``r_ucl``,
    ``r_lcl`` for subgroups); ``rules``: the Western Electric rules the point broke."""
    fields: dict[str, Any] = {"value": sum(values) / len(values)}
    if len(values) > 1:
        fields["range"] = max(values) - min(values)
        fields["n"] = len(values)
    if limits is not None:
        fields.update({k: float(limits[k]) for k in SPC_LIMITS if k in limits})
    if rules:
        fields["rules"] = ",".join(str(r) for r in sorted(rules))
    return line("spc", {"machine": machine, "characteristic": characteristic}, fields, ts_ms)


def alert_line(alert: Mapping[str, Any]) -> str:
    """A delivered alert as a point of ``alerts`` (tags ``machine``, ``type``, ``severity``;
    fields ``message`` and, when it has one, ``state``) at its own time, for dashboards'
    annotations."""
    fields: dict[str, Any] = {"message": alert.get("message") or alert["type"]}
    details = alert.get("details")
    if isinstance(details, Mapping) and isinstance(details.get("state"), str):
        fields["state"] = details["state"]
    tags = {"machine": alert["machine"], "type": alert["type"], "severity": alert["severity"]}
    return line("alerts", tags, fields, point_time(alert))


def tech_line(*, machine: str, ts_ms: int, config: Mapping[str, Any], version: int) -> str:
    fields = {"config": json.dumps(config, sort_keys=True), "version": version}
    return line("tech", {"machine": machine}, fields, ts_ms)
