"""The scaling decision, table-driven: up at once, down after the stabilization window and in
steps, 0 <-> 1 with activation and cooldown, the predictive term, flapping and oscillating
load, paused and hand-set replicas; a latency target sized by the per-replica rate learned from
the queue, the larger of it and the depth answer winning."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from conveyor_operator.scaling import (
    Capacity,
    Decision,
    Memory,
    Observation,
    ScalingSpec,
    decide,
    plan_capacity,
)

SPEC = ScalingSpec(
    min_replicas=0,
    max_replicas=10,
    target_per_replica=2000,
    activation_depth=10,
    polling_interval_s=5,
    stabilization_s=60,
    cooldown_s=300,
    max_step=4,
)


def run(spec: ScalingSpec, polls: list[tuple[float, int]], start: int = 0) -> list[int]:
    """Replicas after each (time, backlog) poll."""
    current, memory, out = start, Memory(), []
    for now, backlog in polls:
        d = decide(spec, Observation(now=now, pending=backlog, processing=0), current, memory)
        current, memory = d.replicas, d.memory
        out.append(current)
    return out


def test_scale_up_is_immediate_and_says_why() -> None:
    d = decide(SPEC, Observation(now=0, pending=11_000, processing=800), 2, Memory())
    assert d.replicas == 6
    assert d.reason == "backlog 11,800, 2,000 per replica"


@pytest.mark.parametrize(
    ("current", "backlog", "expected"),
    [(0, 5, 0), (0, 10, 0), (0, 11, 1), (3, 1_000_000, 10), (1, 2000, 1), (1, 2001, 2)],
)
def test_activation_and_bounds(current: int, backlog: int, expected: int) -> None:
    assert (
        decide(SPEC, Observation(now=0, pending=backlog, processing=0), current, Memory()).replicas
        == expected
    )


def test_a_growing_backlog_is_met_early() -> None:
    obs = Observation(now=0, pending=1000, processing=0, arrival_rate=500, drain_rate=100)
    d = decide(SPEC, obs, 1, Memory())
    assert d.replicas == 3  # 1000 + 400/s x 10 s = 5000 -> 3 replicas of 2000
    assert "growing 400/s" in d.reason
    steady = decide(
        SPEC,
        Observation(now=0, pending=1000, processing=0, arrival_rate=100, drain_rate=100),
        1,
        Memory(),
    )
    assert steady.replicas == 1


def test_scale_down_waits_for_the_window_then_steps() -> None:
    polls = [(0, 20_000), *[(t, 0) for t in range(5, 130, 5)]]
    replicas = run(SPEC, polls)
    assert replicas[0] == 10
    assert set(replicas[1:12]) == {10}  # held through the 60 s window
    after = replicas[12:]
    assert after[0] == 6
    assert after[1] == 2
    assert min(after) == 1  # still within the cooldown


def test_to_zero_only_after_the_cooldown() -> None:
    polls = [(0, 5000), *[(t, 0) for t in range(5, 500, 5)]]
    replicas = run(SPEC, polls)
    times = [t for t, _ in polls]
    first_zero = times[replicas.index(0)]
    assert 300 <= first_zero <= 300 + 60 + 5  # cooldown, then the stabilization window


def test_min_replicas_is_a_floor() -> None:
    spec = ScalingSpec(
        min_replicas=2, max_replicas=5, target_per_replica=100, cooldown_s=0, stabilization_s=0
    )
    assert run(spec, [(0, 0), (5, 0)], start=2) == [2, 2]


def test_oscillating_load_never_flaps() -> None:
    polls = [(t, 12_000 if (t // 5) % 2 == 0 else 0) for t in range(0, 300, 5)]
    replicas = run(SPEC, polls)
    assert set(replicas) == {6}


def test_brief_dips_do_not_flap_between_counts() -> None:
    polls = [(t, 4000 if t % 20 == 15 else 8000) for t in range(0, 200, 5)]
    replicas = run(SPEC, polls)
    changes = sum(1 for a, b in itertools.pairwise(replicas) if a != b)
    assert changes == 0
    assert replicas[0] == 4


def test_paused_and_hand_set_replicas_are_respected() -> None:
    obs = Observation(now=0, pending=50_000, processing=0)
    assert decide(ScalingSpec(paused=True), obs, 3, Memory()).replicas == 3
    hand = decide(ScalingSpec(manual_replicas=7, max_replicas=5), obs, 3, Memory())
    assert (hand.replicas, hand.reason) == (5, "replicas set by hand to 7")


def test_decision_carries_memory_forward() -> None:
    d: Decision = decide(SPEC, Observation(now=10, pending=100, processing=0), 1, Memory())
    assert d.memory.last_busy == 10
    assert d.memory.recommendations == ((10, 1),)


# --- concurrency before replicas (spec.maxConcurrency) ----------------------------------------


@pytest.mark.parametrize(
    ("wanted", "current", "base", "most", "expected"),
    [
        # 4 replicas' worth at concurrency 2 = 8 slots: the one replica runs 8 at once.
        (4, 1, 2, 8, Capacity(1, 8)),
        # 10 x 2 = 20 slots: 8 per replica is not enough for one; 3 replicas at 7.
        (10, 1, 2, 8, Capacity(3, 7)),
        # Already enough replicas: the plain decision at the base concurrency.
        (2, 2, 2, 8, Capacity(2, 2)),
        (1, 3, 2, 8, Capacity(1, 2)),
        # From zero a replica must start; concurrency stays at its base.
        (3, 0, 2, 8, Capacity(3, 2)),
        # maxConcurrency equal to concurrency: only replicas change.
        (5, 1, 4, 4, Capacity(5, 4)),
        # Going down: 6 replicas' worth on 3 running replicas -> concurrency back toward base.
        (6, 3, 2, 8, Capacity(3, 4)),
    ],
)
def test_concurrency_is_raised_before_replicas_are_added(
    wanted: int, current: int, base: int, most: int, expected: Capacity
) -> None:
    plan = plan_capacity(
        wanted, current, base_concurrency=base, max_concurrency=most, max_replicas=10
    )
    assert plan == expected
    # Never fewer slots than the decision asked for, never above the caps.
    assert plan.replicas * plan.concurrency >= wanted * base
    assert base <= plan.concurrency <= most


def test_the_replica_cap_bounds_the_plan() -> None:
    plan = plan_capacity(50, 2, base_concurrency=4, max_concurrency=8, max_replicas=10)
    assert plan == Capacity(10, 8)


def latency_run(
    spec: ScalingSpec, polls: list[tuple[float, int, float, float]], start: int
) -> tuple[list[int], Memory]:
    """Replicas after each (time, pending, arrival/s, drain/s) poll, and the memory left."""
    current, memory, out = start, Memory(), []
    for now, pending, arrival, drain in polls:
        obs = Observation(
            now=now, pending=pending, processing=0, arrival_rate=arrival, drain_rate=drain
        )
        d = decide(spec, obs, current, memory)
        current, memory = d.replicas, d.memory
        out.append(current)
    return out, memory


@pytest.mark.parametrize(
    ("job_s", "pending", "arrival", "expected", "by_depth"),
    [
        # 50 ms jobs: 20/s a replica. Keep up with 50/s and drain 1,000 in 10 s: 150/s, 8.
        # By depth (1,000 a replica): 1,000 + 30/s growing x 10 s lookahead: 2.
        (0.05, 1000, 50.0, 8, 2),
        # 5 s jobs: 0.2/s a replica. 0.5/s arriving and 20 waiting within 10 s: 2.5/s, 13 -> 10.
        (5.0, 20, 0.5, 10, 1),
        # 5 s jobs, a calmer queue: 0.1/s arriving, 2 waiting: 0.3/s, 2 replicas.
        (5.0, 2, 0.1, 2, 1),
    ],
)
def test_a_latency_target_sizes_by_the_learned_rate(
    job_s: float, pending: int, arrival: float, expected: int, by_depth: int
) -> None:
    spec = replace(SPEC, target_latency_s=10.0, target_per_replica=1000, activation_depth=0)
    per_replica = 1 / job_s
    # One replica, busy (jobs waiting), draining at its rate: the operator learns it.
    replicas, memory = latency_run(spec, [(0, pending, arrival, per_replica)], start=1)
    assert memory.per_replica_rate == pytest.approx(per_replica)
    assert replicas == [expected]
    depth_only = replace(spec, target_latency_s=None)
    assert latency_run(depth_only, [(0, pending, arrival, per_replica)], start=1)[0] == [by_depth]


def test_the_rate_is_learned_only_while_jobs_wait_and_smoothed() -> None:
    spec = replace(SPEC, target_latency_s=10.0)
    _, memory = latency_run(spec, [(0, 0, 5.0, 5.0)], start=2)  # nothing waits: idle capacity
    assert memory.per_replica_rate is None
    # Two replicas ran through both polls: 20/s (10 each), then 40/s (20 each).
    first = decide(spec, Observation(now=0, pending=100, processing=0, drain_rate=20), 2, Memory())
    assert first.memory.per_replica_rate == pytest.approx(10.0)
    second = decide(
        spec, Observation(now=5, pending=100, processing=0, drain_rate=40), 2, first.memory
    )
    assert second.memory.per_replica_rate == pytest.approx(0.7 * 10 + 0.3 * 20)


def test_with_no_rate_learned_the_depth_decides_and_the_larger_answer_wins() -> None:
    spec = replace(SPEC, target_latency_s=10.0, target_per_replica=100, activation_depth=0)
    # From zero replicas nothing was ever drained: the depth answer, 500 / 100.
    assert latency_run(spec, [(0, 500, 0.0, 0.0)], start=0)[0] == [5]
    # A fast queue: latency wants 1 (10/s needed at 100/s), depth wants 5: 5.
    assert latency_run(spec, [(0, 500, 0.0, 100.0)], start=1)[0] == [5]


def test_the_specs_latency_target_reaches_the_decision() -> None:
    from conveyor_operator.spec import MessageQueueSpec

    spec = MessageQueueSpec.parse({"queue": "q", "targetLatencySeconds": 12.5})
    assert ScalingSpec.of(spec).target_latency_s == 12.5
    assert ScalingSpec.of(MessageQueueSpec.parse({"queue": "q"})).target_latency_s is None
