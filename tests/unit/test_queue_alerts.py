"""Queue alerts (conveyor_operator.queue_alerts) as a table: a threshold fires only once it has
been crossed for its whole `for`, once; resolves at the first poll it is not; a drain-rate
floor never fires on an idle queue nor without a rate; a threshold removed from the spec, or
its MessageQueue deleted, sends the resolve; a restarted operator picks up what fired."""

from __future__ import annotations

import pytest
from conveyor_operator.queue_alerts import RULES, AlertMemory, Reading, judge, resumed, withdrawn
from conveyor_operator.spec import Alerts, MessageQueueSpec, Threshold

from reliable_queue import UsageError


def reading(now: float, *, pending: int = 0, age: float = 0, dead: int = 0, rate: float = 0):
    return Reading(now=now, pending=pending, oldest_age_s=age, dead_letters=dead, drain_rate=rate)


def alerts(**thresholds: tuple[float, str]) -> Alerts:
    return Alerts(**{k: Threshold(threshold=t, for_=f) for k, (t, f) in thresholds.items()})


def run(spec: Alerts, polls: list[Reading]) -> list[tuple[float, str, str]]:
    memory, seen = AlertMemory(), []
    for poll in polls:
        memory, changes = judge(spec, poll, memory)
        seen += [(poll.now, c.rule.alert_type, c.state) for c in changes]
    return seen


def test_depth_fires_after_its_for_once_and_resolves() -> None:
    spec = alerts(max_depth=(100, "30s"))
    polls = [
        reading(t, pending=p)
        for t, p in [(0, 500), (10, 500), (29, 500), (30, 500), (40, 900), (50, 90)]
    ]
    assert run(spec, polls) == [(30, "queue_depth", "firing"), (50, "queue_depth", "resolved")]


def test_a_blip_shorter_than_for_pages_nobody() -> None:
    spec = alerts(max_depth=(100, "1m"))
    polls = [
        reading(t, pending=p) for t, p in [(0, 500), (30, 500), (40, 10), (50, 500), (100, 500)]
    ]
    assert run(spec, polls) == []  # crossed since 50: 50 s, not a minute
    assert run(spec, [*polls, reading(110, pending=500)]) == [(110, "queue_depth", "firing")]


def test_each_threshold_has_its_type_and_reason() -> None:
    spec = alerts(
        max_depth=(10, "0s"),
        max_oldest_age_seconds=(60, "0s"),
        max_dead_letters=(5, "0s"),
        min_drain_rate=(100, "0s"),
    )
    memory, changes = judge(spec, reading(0, pending=11, age=61, dead=6, rate=50), AlertMemory())
    assert [(c.rule.alert_type, c.rule.reason) for c in changes] == [
        ("queue_depth", "QueueDepthHigh"),
        ("queue_age", "QueueBacklogOld"),
        ("dead_letters", "DeadLettersGrowing"),
        ("queue_drain_rate", "QueueDrainSlow"),
    ]
    assert changes[0].message == ("pending jobs 11 above the threshold 10 (spec.alerts.maxDepth)")
    assert len(memory.firing) == 4


def test_a_slow_drain_only_counts_while_jobs_wait() -> None:
    spec = alerts(min_drain_rate=(100, "0s"))
    assert run(spec, [reading(0, pending=0, rate=0), reading(5, pending=0, rate=0)]) == []
    assert run(spec, [reading(0, pending=3, rate=0)]) == [(0, "queue_drain_rate", "firing")]


def test_a_threshold_removed_or_a_queue_deleted_sends_the_resolve() -> None:
    memory, changes = judge(alerts(max_depth=(1, "0s")), reading(0, pending=5), AlertMemory())
    assert [c.state for c in changes] == ["firing"]
    after, changes = judge(Alerts(), reading(5, pending=5), memory)
    assert [(c.state, c.message) for c in changes] == [
        ("resolved", "resolved: the threshold removed (spec.alerts.maxDepth)")
    ]
    assert after.firing == frozenset()
    [gone] = withdrawn(memory, "the MessageQueue was deleted")
    assert (gone.rule.alert_type, gone.state) == ("queue_depth", "resolved")
    assert gone.message == "resolved: the MessageQueue was deleted (spec.alerts.maxDepth)"


def test_no_rate_on_a_first_poll_judges_no_drain_rate() -> None:
    spec = alerts(min_drain_rate=(100, "0s"))
    first = Reading(
        now=0, pending=9, oldest_age_s=0, dead_letters=0, drain_rate=0, rates_known=False
    )
    assert run(spec, [first]) == []
    assert run(spec, [first, reading(5, pending=9, rate=0)]) == [(5, "queue_drain_rate", "firing")]


def test_for_is_a_duration_and_the_spec_names_a_bad_one() -> None:
    spec = MessageQueueSpec.parse(
        {
            "queue": "q",
            "alerts": {
                "maxDepth": {"threshold": 5, "for": "2m"},
                "maxDeadLetters": {"threshold": 0},
            },
        }
    )
    depth, dead = spec.alerts.max_depth, spec.alerts.max_dead_letters
    assert depth is not None
    assert dead is not None
    assert (depth.for_seconds, dead.for_seconds) == (120, 60)  # 60: the default "1m"
    with pytest.raises(UsageError, match=r"spec\.alerts\.maxDepth\.for: String should match"):
        MessageQueueSpec.parse(
            {"queue": "q", "alerts": {"maxDepth": {"threshold": 5, "for": "2 min"}}}
        )


def test_a_restarted_operator_resolves_what_cleared_and_keeps_what_holds() -> None:
    fired, _ = judge(
        alerts(max_depth=(10, "0s"), max_dead_letters=(0, "0s")),
        reading(0, pending=50, dead=3),
        AlertMemory(),
    )
    message = "; ".join(
        r.describe(reading(0, pending=50, dead=3)) for r in RULES if r.field in fired.firing
    )
    status = [
        {"type": "Alerting", "status": "True", "reason": "QueueDepthHigh", "message": message}
    ]
    memory = resumed(status)
    assert memory.firing == fired.firing == frozenset({"maxDepth", "maxDeadLetters"})
    spec = alerts(max_depth=(10, "0s"), max_dead_letters=(0, "0s"))
    _, changes = judge(spec, reading(5, pending=0, dead=3), memory)
    assert [(c.rule.alert_type, c.state) for c in changes] == [("queue_depth", "resolved")]
    assert resumed([{"type": "Alerting", "status": "False", "message": ""}]) == AlertMemory()


def test_the_alerting_gauge_shows_only_fresh_judgements() -> None:
    from conveyor_operator.metrics import OperatorMetrics
    from prometheus_client import generate_latest

    metrics = OperatorMetrics()
    metrics.alerting.judged("fresh", {"queue_depth": True, "queue_age": False}, fresh_for_s=60)
    metrics.alerting.judged("stale", {"queue_depth": True}, fresh_for_s=-1)  # as if long ago
    text = generate_latest(metrics.registry).decode()
    assert 'conveyor_operator_queue_alerting{queue="fresh",type="queue_depth"} 1.0' in text
    assert 'conveyor_operator_queue_alerting{queue="fresh",type="queue_age"} 0.0' in text
    assert 'queue="stale"' not in text
    metrics.forget("fresh")
    assert 'queue="fresh"' not in generate_latest(metrics.registry).decode()
