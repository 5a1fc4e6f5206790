"""Topic routing: which queue (and priority) an MQTT message goes to, and which machine sent it.

A route of kind ``sparkplug`` takes Sparkplug B (``spBv1.0/...``) messages: its filter starts
with ``spBv1.0/``, the machine comes from the Sparkplug topic (group, edge node, device; see
:mod:`conveyor_ingestor.sparkplug`), and its queue receives the realtime messages they make.

A route maps an MQTT topic filter (``+`` one level, ``#`` the rest) to a queue, the kind of
payload to expect and, optionally, a priority (without one, a job takes its queue's default
priority: the MessageQueue's ``spec.priority``, which the operator keeps in the queue's
policy). The machine id is the topic level at ``machine_level`` (by default the level matched by
the filter's first ``+``). The first matching route wins, so list
specific filters before general ones. The table is validated when the ingestor starts: a bad
filter, queue name or priority stops it with a message naming the route.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from conveyor_messages import DEFAULT_QUEUES
from conveyor_messages import Kind as Kind  # the kinds of JSON message, as payloads.py knows them
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conveyor_ingestor.errors import RoutingError
from reliable_queue import PRIORITY_MAX, PRIORITY_MIN, UsageError, validate_queue_name

RouteKind = Kind | Literal["sparkplug"]
SPARKPLUG_NAMESPACE = "spBv1.0"


class Route(BaseModel):
    """One line of the routing table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    filter: str = Field(description="MQTT topic filter, e.g. '+/realtime' or 'plant/+/spc/#'")
    queue: str
    priority: int | None = Field(
        default=None,
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
        description="priority of its jobs; unset: the queue's default_priority (spec.priority)",
    )
    kind: RouteKind
    machine_level: int | None = Field(
        default=None, ge=0, description="topic level holding the machine id; default: first '+'"
    )

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        check_filter(value)
        return value

    @field_validator("queue")
    @classmethod
    def _valid_queue(cls, value: str) -> str:
        try:
            return validate_queue_name(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _machine_level(self) -> Route:
        levels = self.filter.split("/")
        if self.kind == "sparkplug":
            if levels[0] != SPARKPLUG_NAMESPACE:
                raise ValueError(
                    f"a sparkplug route's filter starts with {SPARKPLUG_NAMESPACE}/, "
                    f"not {self.filter!r}"
                )
            if self.machine_level is not None:
                raise ValueError("a sparkplug route takes the machine from the Sparkplug topic")
            return self
        if levels[0] == SPARKPLUG_NAMESPACE:
            raise ValueError(
                f"{self.filter!r} is Sparkplug B's namespace: give the route kind 'sparkplug'"
            )
        if self.machine_level is None:
            if "+" not in levels:
                raise ValueError(
                    f"filter {self.filter!r} has no '+' level for the machine id: "
                    "add one or set machine_level"
                )
        elif self.machine_level >= len(levels) or levels[self.machine_level] == "#":
            raise ValueError(f"machine_level {self.machine_level} is beyond filter {self.filter!r}")
        return self

    @property
    def machine_index(self) -> int:
        if self.kind == "sparkplug":
            return 0
        return (
            self.filter.split("/").index("+") if self.machine_level is None else self.machine_level
        )


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    machine: str


class RoutingTable:
    """Routes in order; ``match`` returns the first that fits a topic, with the machine id."""

    def __init__(self, routes: Sequence[Route]) -> None:
        if not routes:
            raise RoutingError("the routing table is empty: give at least one route")
        self.routes = tuple(routes)
        self._split = [(r, r.filter.split("/")) for r in self.routes]
        self._cache: dict[str, Match | None] = {}

    def match(self, topic: str) -> Match | None:
        # Plants have a bounded set of topics (machines x kinds): remember the answers.
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = self._match(topic)
        if len(self._cache) >= 100_000:
            self._cache.clear()
        self._cache[topic] = found
        return found

    def _match(self, topic: str) -> Match | None:
        levels = topic.split("/")
        for route, pattern in self._split:
            if _matches(pattern, levels):
                if route.kind == "sparkplug":
                    return Match(route, "")  # the Sparkplug topic names the machine
                machine = levels[route.machine_index]
                if machine:
                    return Match(route, machine)
        return None

    @property
    def filters(self) -> list[str]:
        return [r.filter for r in self.routes]

    @property
    def sparkplug_filters(self) -> list[str]:
        return [r.filter for r in self.routes if r.kind == "sparkplug"]

    @classmethod
    def from_json(cls, text: str, *, source: str) -> RoutingTable:
        """Parse ``[{"filter": ..., "queue": ..., "priority": ..., "kind": ...}, ...]``."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RoutingError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(raw, list):
            raise RoutingError(f"{source} must be a JSON list of routes")
        routes = []
        for i, item in enumerate(raw):
            try:
                routes.append(Route.model_validate(item))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'route'}: {e['msg']}"
                    for e in exc.errors()
                )
                raise RoutingError(f"{source}, route {i} ({item!r}): {problems}") from exc
        return cls(routes)

    @classmethod
    def from_file(cls, path: Path) -> RoutingTable:
        try:
            return cls.from_json(path.read_text(), source=str(path))
        except OSError as exc:
            raise RoutingError(f"cannot read the routing file {path}: {exc}") from exc


def check_filter(value: str) -> None:
    """Raise ValueError unless ``value`` is a valid MQTT subscription filter."""
    if not value or len(value.encode()) > 65535 or "\x00" in value:
        raise ValueError("a topic filter must be 1-65535 bytes without NUL")
    levels = value.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be a whole level and the last one in {value!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level in {value!r}")
    if value.startswith("$share/"):
        raise ValueError("write the filter without $share/; set the share group instead")


def _matches(pattern: list[str], levels: list[str]) -> bool:
    if levels and levels[0].startswith("$") and pattern and pattern[0] in ("+", "#"):
        return False  # MQTT: wildcards at the first level do not match $SYS topics
    for i, p in enumerate(pattern):
        if p == "#":
            return True
        if i >= len(levels):
            return False
        if p != "+" and p != levels[i]:
            return False
    return len(pattern) == len(levels)


DEFAULT_ROUTES: tuple[Route, ...] = tuple(
    Route(filter=q.topic_filter, queue=q.name, kind=q.kind) for q in DEFAULT_QUEUES
)
"""One route into each default queue (conveyor_messages.DEFAULT_QUEUES), in its order. They set
no priority: each queue's own default priority (its MessageQueue's) applies."""
