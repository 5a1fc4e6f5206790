"""The message contract: the data of a job on a default queue, as the ingestor writes it and the
worker reads it, one ``TypedDict`` per kind of message. Plain dicts at run time (the hot paths
build and read them without a model in between), typed for mypy wherever they are built or
read, and checked whole by :func:`validate_message` (pydantic) where a test or a producer wants
proof.

Every message has the envelope: ``machine`` (the topic level its route names), ``topic`` and
``received_at`` (epoch ms, when the ingestor took it; for a queue alert, when the operator made
it), and ``kind``. Times (``ts``) are epoch milliseconds, or None when the machine sent none
(the worker then uses ``received_at``). Every field is present in what the ingestor writes
(``details`` and ``spec`` empty when there are none), but for a realtime message's ``units``,
present only when it names any. What the types cannot say (names, texts and times within the
sinks' bounds, finite numbers, JSON-safe documents) the ingestor checks as it builds them
(``conveyor_ingestor.limits``).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal, NotRequired

from pydantic import ConfigDict, TypeAdapter, with_config
from typing_extensions import TypedDict

from conveyor_messages.queues import Kind

Scalar = float | int | bool | str
MAX_UNIT_CHARS = 32
"""The longest unit of measure a realtime message carries (``"°C"``, ``"mm/s"``)."""
Severity = Literal["info", "warning", "critical"]
_STRICT = ConfigDict(extra="forbid")


@with_config(_STRICT)
class Sample(TypedDict):
    """A realtime sample: signal -> value, at one time."""

    ts: int | None
    values: dict[str, Scalar]


@with_config(_STRICT)
class SpcSample(TypedDict):
    """A subgroup of one SPC characteristic, with the specification limits sent with it
    (``usl``, ``lsl``, ``target``; empty when none)."""

    ts: int | None
    characteristic: str
    values: list[float]
    spec: dict[str, float]


@with_config(_STRICT)
class Envelope(TypedDict):
    """What every message has: where it came from and when the ingestor took it."""

    machine: str
    topic: str
    received_at: int


@with_config(_STRICT)
class RealtimeMessage(Envelope):
    """``units``: signal -> unit of measure (``"°C"``), present when the machine sent any (a
    Sparkplug B node with its births' ``engUnit``); the latest values keep them beside."""

    kind: Literal["realtime"]
    samples: list[Sample]
    units: NotRequired[dict[str, str]]


@with_config(_STRICT)
class SpcMessage(Envelope):
    kind: Literal["spc"]
    samples: list[SpcSample]


@with_config(_STRICT)
class TechMessage(Envelope):
    """A machine's technical configuration, whole (each message replaces the last)."""

    kind: Literal["tech"]
    ts: int | None
    config: dict[str, Any]


@with_config(_STRICT)
class AlertMessage(Envelope):
    """A machine's alert, or a queue's (``machine`` ``queue/<queue>``, from the operator, with
    ``details.state`` ``firing`` or ``resolved``)."""

    kind: Literal["alert"]
    ts: int | None
    type: str
    severity: Severity
    message: str
    details: dict[str, Any]


Message = RealtimeMessage | SpcMessage | TechMessage | AlertMessage

_BY_KIND: dict[Kind, Any] = {
    "realtime": RealtimeMessage,
    "spc": SpcMessage,
    "tech": TechMessage,
    "alert": AlertMessage,
}


@cache
def _adapter(kind: Kind) -> TypeAdapter[Any]:
    return TypeAdapter(_BY_KIND[kind])


def validate_message(kind: Kind, data: Any) -> Message:
    """``data`` checked against the contract of ``kind``: every field there, none extra, each
    of its type in pydantic's strict mode (no text for a number; an int where a float is
    declared is taken, and comes back as a float). Returns the checked copy; raises pydantic's
    ``ValidationError`` saying what differs."""
    checked: Message = _adapter(kind).validate_python(data, strict=True)
    return checked
