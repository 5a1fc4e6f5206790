"""What a message may carry: names, text, documents and times the sinks can hold exactly.

A message that breaks a limit is refused whole with an :class:`InvalidPayload` (and so becomes
one dead letter in ``dead:ingest``) rather than being cut short or cleaned up: what is written
is what was sent, and what cannot be written says why.

The limits come from where the data goes. Machine ids, signal and SPC characteristic names
become InfluxDB tags (and Redis key parts, live-stream channels): InfluxDB 1.8's line protocol
has no escape for a line break, keeps a backslash as it is, and so cannot carry a tag that ends
in a backslash or has an odd number of backslashes right before a space, comma or ``=`` (its
line splitter would then read the rest of the line as a string and could take the next line,
or a line the sender wrote, with it). Control characters have no business in a name and make
logs and dashboards lie, so names refuse them all (C0, DEL, C1, U+2028/U+2029), and lone UTF-16
surrogates, which are not text at all.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from conveyor_messages.contract import MAX_UNIT_CHARS

from conveyor_ingestor.errors import InvalidPayload

MAX_NAME_BYTES = 256
"""Machine ids, signal, characteristic and alert-type names, in UTF-8 bytes."""
MAX_STRING_BYTES = 1024
"""A realtime string value or an alert message, in UTF-8 bytes."""
MAX_CONFIG_BYTES = 64 * 1024
"""A tech config as the worker writes it to InfluxDB (``json.dumps(config, sort_keys=True)``):
InfluxDB's limit on a string field."""
MAX_DETAILS_BYTES = 4096
"""An alert's details as JSON: they go to Redis (alert history), webhooks and the live stream."""
MAX_NESTING = 32
"""Levels of objects and arrays in a tech config or alert details."""
MAX_NUMBER = 1e300
"""The largest SPC value (in magnitude), so that means, ranges and limits stay finite."""
MIN_TIME_MS = -9_223_372_036_854
MAX_TIME_MS = 9_223_372_036_854
"""InfluxDB's time range (int64 nanoseconds), in the whole milliseconds points are written in."""
TIME_RANGE = "1677-09-21T00:12:43.145224194Z .. 2262-04-11T23:47:16.854775806Z"

_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_FORBIDDEN_OR_BACKSLASH = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\\\\]")
_SHORT = MAX_NAME_BYTES // 4  # characters that are surely within MAX_NAME_BYTES
# An odd run of backslashes right before a space, comma or '=' (the run is not itself
# preceded by a backslash, so the match starts where the run does).
_BACKSLASH_BEFORE_DELIMITER = re.compile(r"(?<!\\)(?:\\\\)*\\[ ,=]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def shown(text: str, limit: int = 48) -> str:
    """``text`` for a message to a person: quoted, control characters escaped, cut short."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def shown_number(value: object) -> str:
    """A number for a message to a person, cut short (JSON integers may have 4,300 digits)."""
    text = repr(value)
    return text if len(text) <= 32 else f"{text[:24]}... ({len(text)} digits)"


def check_name(name: str, *, what: str) -> str:
    """A name: not empty, no control characters, at most MAX_NAME_BYTES."""
    if 0 < len(name) <= _SHORT and _FORBIDDEN.search(name) is None:
        return name
    if not name:
        raise InvalidPayload("bad_name", f"{what} is empty: every name needs at least a character")
    bad = _FORBIDDEN.search(name)
    if bad is not None:
        char = ord(bad.group())
        kind = "a lone UTF-16 surrogate" if 0xD800 <= char <= 0xDFFF else "a control character"
        raise InvalidPayload(
            "bad_name",
            f"{what} {shown(name)} contains {kind} (U+{char:04X} at position {bad.start()}): "
            "names must be printable text; fix the name in the device or bridge configuration",
        )
    if len(name) > _SHORT:
        size = len(name.encode())
        if size > MAX_NAME_BYTES:
            raise InvalidPayload(
                "name_too_long",
                f"{what} {shown(name)} is {size:,} bytes of UTF-8, over the limit of "
                f"{MAX_NAME_BYTES}: use a shorter name",
            )
    return name


def check_tag(name: str, *, what: str) -> str:
    """A name that becomes an InfluxDB tag: :func:`check_name`, and one the line protocol can
    carry exactly (backslashes, see the module's docstring)."""
    if 0 < len(name) <= _SHORT and _FORBIDDEN_OR_BACKSLASH.search(name) is None:
        return name  # the common case, at half the cost
    check_name(name, what=what)
    if "\\" in name:
        if name.endswith("\\"):
            raise InvalidPayload(
                "bad_name",
                f"{what} {shown(name)} ends with a backslash, which InfluxDB's line protocol "
                "cannot carry in a tag: drop the trailing backslash",
            )
        bad = _BACKSLASH_BEFORE_DELIMITER.search(name)
        if bad is not None:
            raise InvalidPayload(
                "bad_name",
                f"{what} {shown(name)} has a backslash right before {bad.group()[-1]!r} "
                f"(position {bad.end() - 2}), which InfluxDB's line protocol cannot carry in a "
                "tag: double that backslash or remove it",
            )
    return name


def check_text(text: str, *, what: str) -> str:
    """A string value or an alert message: at most MAX_STRING_BYTES. Any character is fine
    (InfluxDB keeps line breaks in string fields exactly)."""
    if len(text) > MAX_STRING_BYTES // 4:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_STRING_BYTES:
            raise InvalidPayload(
                "value_too_long",
                f"{what} is {size:,} bytes of UTF-8, over the limit of {MAX_STRING_BYTES:,}: "
                "send shorter text",
            )
    return text


def clean_unit(unit: object) -> str | None:
    """A unit of measure as sent, if it is one: printable text of 1 to MAX_UNIT_CHARS
    characters; None for anything else (no unit, ``""``, an object, control characters)."""
    if isinstance(unit, str) and 0 < len(unit) <= MAX_UNIT_CHARS and not _FORBIDDEN.search(unit):
        return unit
    return None


def check_document(doc: Any, *, what: str, limit: int, reason: str) -> None:
    """A free-form JSON document (tech config, alert details): finite numbers, at most
    MAX_NESTING levels and ``limit`` bytes as ``json.dumps(doc, sort_keys=True)``."""
    if isinstance(doc, dict | list) and _too_deep(doc, MAX_NESTING):
        raise InvalidPayload(reason, f"{what} nests deeper than {MAX_NESTING} levels: flatten it")
    try:
        size = len(json.dumps(doc, sort_keys=True, allow_nan=False))  # ASCII: chars are bytes
    except ValueError as exc:
        raise InvalidPayload(
            "bad_value", f"{what} has {_non_finite(doc, '')}: only finite numbers"
        ) from exc
    if size > limit:
        raise InvalidPayload(
            reason,
            f"{what} is {size:,} bytes as JSON, over the limit of {limit:,}: "
            "send less, or split it over several messages",
        )


def _too_deep(node: Any, levels: int) -> bool:
    """Whether ``node`` (an object or array) nests more than ``levels`` deep; never descends
    further than that, so a deep document costs no more than a shallow one."""
    if levels <= 0:
        return True
    children = node.values() if isinstance(node, dict) else node
    return any(isinstance(c, dict | list) and _too_deep(c, levels - 1) for c in children)


def _non_finite(node: Any, path: str) -> str:
    """Where the first NaN or infinity in ``node`` is, as ``NaN at ['a'][0]``."""
    if isinstance(node, float) and not math.isfinite(node):
        return f"{node!r} at {path or 'the top'}"
    if isinstance(node, dict | list):
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            found = _non_finite(child, f"{path}[{key!r}]")
            if found:
                return found
    return ""


def check_unicode(text: str, doc: Any) -> None:
    """Refuse lone UTF-16 surrogates (``"\\ud800"``) anywhere in a decoded payload: they are
    not text, and nothing downstream (Redis, InfluxDB, JSON encoders) can encode them.
    ``text`` is the payload the document was decoded from: only a ``\\uD8xx``-``\\uDFxx`` escape
    can make one, so most payloads are not walked."""
    if _SURROGATE_ESCAPE.search(text) is None:
        return
    try:
        json.dumps(doc, ensure_ascii=False).encode()
    except RecursionError as exc:
        raise InvalidPayload("not_json", "payload nests too deeply") from exc
    except UnicodeEncodeError as exc:
        raise InvalidPayload(
            "not_utf8",
            f"payload has a lone UTF-16 surrogate escape ({exc.object[exc.start]!r}), "
            "which is not text: send UTF-8 text, with surrogate escapes only in pairs",
        ) from exc


def check_time_ms(ms: int, *, sent: object) -> int:
    """Epoch milliseconds InfluxDB can store."""
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        shown_value = shown(sent) if isinstance(sent, str) else shown_number(sent)
        raise InvalidPayload(
            "bad_timestamp",
            f"timestamp {shown_value} is outside InfluxDB's time range {TIME_RANGE}: check the "
            "device's clock and the unit (UNIX s, ms, µs or ns since 1970, or ISO 8601)",
        )
    return ms
