"""The scaling decision, table-driven: up at once, down after the stabilization window and in
steps, 0 <-> 1 with activation and cooldown, the predictive term, flapping and oscillating
load, paused and hand-set replicas."""

from __future__ import annotations

import itertools

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
