"""Queue alerts: a MessageQueue's ``spec.alerts`` thresholds, judged at every poll.

A threshold fires once it has been crossed for its whole ``for`` duration (as a Prometheus
rule's ``for``), so a blip pages nobody; it resolves at the first poll it is no longer crossed.
Each firing and each resolve is a transition the handlers turn into a Warning (or Normal)
Event on the MessageQueue, an alert job on the alerts queue (the same stream, webhooks and
de-duplication as machine alerts) and the ``Alerting`` condition.

=================== ================ ================== ======================================
spec.alerts         alert type       Event reason       crossed while
=================== ================ ================== ======================================
maxDepth            queue_depth      QueueDepthHigh     pending > threshold
maxOldestAgeSeconds queue_age        QueueBacklogOld    oldest pending job's age > threshold
maxDeadLetters      dead_letters     DeadLettersGrowing dead letters > threshold
minDrainRate        queue_drain_rate QueueDrainSlow     jobs pending, finished/s < threshold
=================== ================ ================== ======================================

A pure function of the thresholds, one observation and what earlier polls left, so it is tested
without a cluster or a clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic.alias_generators import to_camel

from conveyor_operator.spec import Alerts, Threshold


@dataclass(frozen=True, slots=True)
class Rule:
    attr: str
    """Its threshold's name in ``spec.Alerts``."""
    reads: str
    """The ``Reading`` it judges."""
    alert_type: str
    reason: str
    what: str
    below: bool = False
    """Crossed when the value is below the threshold (else above)."""

    @property
    def field(self) -> str:
        """Its name in ``spec.alerts``."""
        return to_camel(self.attr)

    def value(self, reading: Reading) -> float:
        return float(getattr(reading, self.reads))

    def describe(self, reading: Reading) -> str:
        """What the queue shows now, for the Alerting condition."""
        return f"{self.what}: {self.value(reading):,.6g} (spec.alerts.{self.field})"


RULES = (
    Rule("max_depth", "pending", "queue_depth", "QueueDepthHigh", "pending jobs"),
    Rule(
        "max_oldest_age_seconds",
        "oldest_age_s",
        "queue_age",
        "QueueBacklogOld",
        "age of the oldest pending job (s)",
    ),
    Rule("max_dead_letters", "dead_letters", "dead_letters", "DeadLettersGrowing", "dead letters"),
    Rule(
        "min_drain_rate",
        "drain_rate",
        "queue_drain_rate",
        "QueueDrainSlow",
        "jobs finished per second",
        below=True,
    ),
)


@dataclass(frozen=True, slots=True)
class Reading:
    """What one poll saw of the queue."""

    now: float
    pending: int
    oldest_age_s: float
    dead_letters: int
    drain_rate: float
    rates_known: bool = True
    """False on a first poll (after a start or a take-over): no rate yet, so none is judged."""


@dataclass(frozen=True, slots=True)
class AlertMemory:
    crossed_since: Mapping[str, float] = field(default_factory=dict)
    """Rule field -> when the threshold was first seen crossed, while it stays crossed."""
    firing: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Transition:
    rule: Rule
    state: Literal["firing", "resolved"]
    value: float
    threshold: float
    for_s: float
    ended_by: str = ""
    """Why a resolve came without the value going back: the threshold was removed, or the
    MessageQueue deleted."""

    @property
    def message(self) -> str:
        if self.ended_by:
            return f"resolved: {self.ended_by} (spec.alerts.{self.rule.field})"
        relation = "below" if self.rule.below else "above"
        if self.state == "firing":
            held = f" for {self.for_s:g}s" if self.for_s else ""
            return (
                f"{self.rule.what} {self.value:,.6g} {relation} the threshold "
                f"{self.threshold:,.6g}{held} (spec.alerts.{self.rule.field})"
            )
        return (
            f"resolved: {self.rule.what} {self.value:,.6g}, no longer {relation} "
            f"{self.threshold:,.6g} (spec.alerts.{self.rule.field})"
        )


def judge(
    alerts: Alerts, reading: Reading, memory: AlertMemory
) -> tuple[AlertMemory, list[Transition]]:
    """The alerts' state after ``reading``, and what changed."""
    since = dict(memory.crossed_since)
    firing = set(memory.firing)
    changes: list[Transition] = []
    for rule in RULES:
        threshold: Threshold | None = getattr(alerts, rule.attr)
        value = rule.value(reading)
        if threshold is None:
            since.pop(rule.field, None)
            if rule.field in firing:  # removed from the spec: whoever was paged hears of it
                firing.discard(rule.field)
                changes.append(Transition(rule, "resolved", value, 0, 0, "the threshold removed"))
            continue
        if rule.below and not reading.rates_known:
            continue  # no rate to judge: as it was
        limit, for_s = threshold.threshold, threshold.for_seconds
        # An idle queue drains nothing: a floor on the drain rate holds only while jobs wait.
        crossed = (reading.pending > 0 and value < limit) if rule.below else value > limit
        if not crossed:
            since.pop(rule.field, None)
            if rule.field in firing:
                firing.discard(rule.field)
                changes.append(Transition(rule, "resolved", value, limit, for_s))
            continue
        start = since.setdefault(rule.field, reading.now)
        if rule.field not in firing and reading.now - start >= for_s:
            firing.add(rule.field)
            changes.append(Transition(rule, "firing", value, limit, for_s))
    return replace(memory, crossed_since=since, firing=frozenset(firing)), changes


def withdrawn(memory: AlertMemory, why: str) -> list[Transition]:
    """Resolves of what fires, for a MessageQueue that goes away (``why``)."""
    return [Transition(rule, "resolved", 0, 0, 0, why) for rule in firing_rules(memory)]


def resumed(conditions: Sequence[Mapping[str, Any]]) -> AlertMemory:
    """What was firing by the ``Alerting`` condition in status (each message names its
    ``spec.alerts`` field): an operator that restarts, or a standby that takes over, sends the
    resolve of an alert that cleared meanwhile, and does not fire again one that still holds."""
    for condition in conditions:
        if condition.get("type") == "Alerting" and condition.get("status") == "True":
            named = set(re.findall(r"\(spec\.alerts\.(\w+)\)", str(condition.get("message", ""))))
            return AlertMemory(firing=frozenset(r.field for r in RULES if r.field in named))
    return AlertMemory()


def firing_rules(memory: AlertMemory) -> list[Rule]:
    return [rule for rule in RULES if rule.field in memory.firing]
