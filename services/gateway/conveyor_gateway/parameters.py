"""What a request carries besides its route's name: the path's queue and machine, the query's
page and window, the replay body. Each parameter is described once here - its name, bounds
and default - and that one description both reads it from the request (a 4xx that says what to
send instead) and states it in the OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import unquote

from pydantic import ValidationError
from starlette.requests import Request

from conveyor_gateway.config import GatewayConfig
from conveyor_gateway.errors import ApiError
from conveyor_gateway.limits import (
    MAX_CHANGES,
    MAX_IDS,
    MAX_MACHINE_ID,
    MAX_NAME,
    MAX_OFFSET,
    MAX_PAGE,
    MAX_SPC_POINTS,
    MAX_TREND_POINTS,
    MAX_WINDOW_MS,
    history_minutes,
)
from conveyor_gateway.models import ReplayRequest
from conveyor_gateway.state import state_of
from reliable_queue.keys import QUEUE_NAME_PATTERN, validate_queue_name


@dataclass(frozen=True, slots=True)
class IntQuery:
    """A whole number in the query string, from ``minimum`` to ``maximum`` (a bound, or one
    that follows the gateway's configuration); ``default`` when absent."""

    name: str
    default: int
    minimum: int
    maximum: int | Callable[[GatewayConfig], int]

    def upper(self, config: GatewayConfig) -> int:
        return self.maximum(config) if callable(self.maximum) else self.maximum

    def read(self, request: Request) -> int:
        raw = request.query_params.get(self.name)
        if raw is None:
            return self.default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(422, f"{self.name}={raw!r} is not a whole number") from None
        high = self.upper(state_of(request).config)
        if not self.minimum <= value <= high:
            raise ApiError(
                422, f"{self.name}={value} is out of range: use {self.minimum} to {high}"
            )
        return value

    def openapi(self, config: GatewayConfig) -> dict[str, Any]:
        schema = {"type": "integer", "minimum": self.minimum, "maximum": self.upper(config)}
        return {
            "name": self.name,
            "in": "query",
            "required": False,
            "schema": {**schema, "default": self.default},
            "description": f"default {self.default}",
        }


@dataclass(frozen=True, slots=True)
class TextParam:
    """A string in the path (required) or the query (optional), as ``schema`` bounds it."""

    name: str
    where: Literal["path", "query"]
    description: str
    schema: dict[str, Any]

    def openapi(self, config: GatewayConfig) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.where,
            "required": self.where == "path",
            "schema": self.schema,
            "description": self.description,
        }


Parameter = IntQuery | TextParam

OFFSET = IntQuery("offset", default=0, minimum=0, maximum=MAX_OFFSET)
LIMIT = IntQuery("limit", default=50, minimum=1, maximum=MAX_PAGE)
MINUTES = IntQuery(
    "minutes", default=10, minimum=1, maximum=lambda config: history_minutes(config.history_s)
)
QUEUE = TextParam(
    "queue",
    "path",
    "the queue name (dead:<queue> is accepted too)",
    {"type": "string", "pattern": "^(dead:)?" + QUEUE_NAME_PATTERN.removeprefix("^")},
)
MACHINE = TextParam(
    "machine",
    "path",
    "a machine id; it may have slashes (a Sparkplug B device's <group>/<node>/<device>), sent "
    "as they are or as %2F",
    {"type": "string", "minLength": 1, "maxLength": MAX_MACHINE_ID},
)
IDS = TextParam(
    "ids", "query", "comma-separated job ids; absent: every dead letter", {"type": "string"}
)
SIGNAL = TextParam(
    "signal",
    "query",
    "one signal's name; absent: every numeric signal of the machine",
    {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
)
CHARACTERISTIC = TextParam(
    "characteristic",
    "path",
    "the SPC characteristic's name (the last path segment)",
    {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
)
MAX_EPOCH_MS = 9_223_372_036_854
"""The latest time a window may name: InfluxDB's last (2262-04-11), in ms since the epoch."""
_EPOCH_MS = {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS}
FROM = TextParam(
    "from",
    "query",
    "the window's start, ms since the epoch; default: to - 1 h "
    "(a trend), to - 24 h (a control chart) or to - 31 days (changes)",
    _EPOCH_MS,
)
TO = TextParam("to", "query", "the window's end, ms since the epoch; default: now", _EPOCH_MS)
TREND_POINTS = IntQuery("points", default=600, minimum=10, maximum=MAX_TREND_POINTS)
SPC_POINTS = IntQuery("points", default=500, minimum=1, maximum=MAX_SPC_POINTS)
CHANGES = IntQuery("limit", default=20, minimum=1, maximum=MAX_CHANGES)


async def known_queue(request: Request) -> str:
    """The path's queue (``dead:`` dropped): a valid name (else 400) of a queue in use (404)."""
    queue = validate_queue_name(cast(str, request.path_params["queue"]).removeprefix("dead:"))
    known = await state_of(request).client.queues()
    if queue not in known:
        raise ApiError(404, f"no queue named {queue!r}; known queues: {', '.join(known) or 'none'}")
    return queue


def machine_id(request: Request) -> str:
    machine = cast(str, request.path_params["machine"])
    if not 0 < len(machine) <= MAX_MACHINE_ID:
        raise ApiError(422, f"a machine id has 1 to {MAX_MACHINE_ID} characters")
    return machine


def _raw_path(request: Request) -> str | None:
    """The path as sent, its escapes (``%2F``) kept; None if the server does not say."""
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return None
    return raw.split(b"?", 1)[0].decode("latin-1")


def _unquoted(text: str, what: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ApiError(422, f"the {what} in the path is not UTF-8 once %-decoded") from None


def machine_and_last_segment(request: Request) -> tuple[str, str]:
    """``/spc/{machine}/{characteristic}``: both names may have slashes, so the split is made
    on the path as sent - the characteristic is its last segment, its own slashes sent as
    ``%2F`` (the dashboard escapes both names whole) - not on the decoded one."""
    raw = _raw_path(request)
    if raw is None or raw.count("/") < 3:
        machine = cast(str, request.path_params["machine"])
        characteristic = cast(str, request.path_params["characteristic"])
    else:
        head, _, last = raw.rpartition("/")
        machine = _unquoted(head.split("/", 2)[2], "machine id")
        characteristic = _unquoted(last, "characteristic")
    if not 0 < len(machine) <= MAX_MACHINE_ID:
        raise ApiError(422, f"a machine id has 1 to {MAX_MACHINE_ID} characters")
    if not 0 < len(characteristic) <= MAX_NAME:
        raise ApiError(422, f"a characteristic has 1 to {MAX_NAME} characters")
    return machine, characteristic


def sent_with_suffix(request: Request, suffix: str) -> bool:
    """Whether the path as sent ends with ``suffix`` (``/series``): False for a machine id
    that ends so, its slash sent as ``%2F``, which the decoded path cannot tell apart."""
    raw = _raw_path(request)
    return raw is None or raw.endswith(suffix)


def signal_name(request: Request) -> str | None:
    """``?signal=``; None (every signal) without it."""
    value = request.query_params.get("signal")
    if value is not None and not 0 < len(value) <= MAX_NAME:
        raise ApiError(422, f"signal has 1 to {MAX_NAME} characters")
    return value


def time_window(request: Request, *, default_ms: int, now_ms: int) -> tuple[int, int]:
    """``?from=&to=`` in ms since the epoch: ``to`` defaults to ``now_ms``, ``from`` to
    ``default_ms`` before it; the window is 1 s to :data:`MAX_WINDOW_MS` long."""

    def read(name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(
                422, f"{name}={raw[:40]!r} is not a time: send milliseconds since the epoch"
            ) from None
        if not 0 <= value <= MAX_EPOCH_MS:
            raise ApiError(422, f"{name}={value} is not a time in milliseconds since the epoch")
        return value

    to = read("to", now_ms)
    start = read("from", to - default_ms)
    if not 1000 <= to - start <= MAX_WINDOW_MS:
        raise ApiError(
            422,
            f"from={start} to={to} is a window of {(to - start) / 1000:g} s: ask for 1 s to "
            f"{MAX_WINDOW_MS // 86_400_000} days, from before to",
        )
    return start, to


def purge_ids(request: Request) -> list[str] | None:
    """``?ids=a,b``; None (every dead letter) without it."""
    raw = request.query_params.get("ids")
    return [i for i in raw.split(",") if i] if raw else None


async def replay_ids(request: Request) -> list[str] | None:
    """The body's ``ids``; None (every dead letter) for an empty body or no ``ids``. The checks
    before the model's say in the API's words what is wrong; the model has the last word."""
    body = await request.body()
    if not body.strip():
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        raise ApiError(422, 'the body must be JSON: {"ids": ["<job id>", ...]} or empty') from None
    if not isinstance(doc, dict) or set(doc) - {"ids"}:
        raise ApiError(422, 'the body must be {"ids": [...]} (or empty for every dead letter)')
    ids = doc.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(422, '"ids" must be a list of job id strings')
    if len(ids) > MAX_IDS:
        raise ApiError(422, f'"ids" has {len(ids)} entries; send at most {MAX_IDS} at a time')
    try:
        return ReplayRequest.model_validate(doc).ids
    except ValidationError as exc:
        raise ApiError(422, f"the body is not a replay request: {exc.errors()[0]['msg']}") from None
