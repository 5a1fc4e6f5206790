"""The scaling decision: how many worker replicas a queue should have. A pure function of the
MessageQueue's scaling spec, one observation of the queue in Redis and what the operator
remembers from earlier polls, so it is tested without a cluster or a clock.

The formula, per poll:

    backlog   = pending + processing                       (work waiting and work in flight)
    growth    = max(0, arrival_rate - drain_rate)          (jobs/s the backlog grows by)
    predicted = backlog + growth * lookahead_s             (lookahead = 2 polling intervals)
    wanted    = ceil(predicted / targetDepthPerReplica), within [minReplicas, maxReplicas]

With spec.targetLatencySeconds (T) the operator also keeps the oldest job's wait under T:

    per_replica = jobs one replica finishes per second, learned from the polls where jobs were
                  waiting (so every replica was busy): drain_rate / replicas, smoothed
                  (0.7 x the old + 0.3 x the new)
    needed      = arrival_rate + backlog / T             (drain what comes, and the backlog in T)
    for_latency = ceil(needed / per_replica)

and wants the larger of the two answers: a queue of 50 ms jobs and one of 5 s jobs both meet T
without a hand-tuned targetDepthPerReplica. Until a rate has been learned (a first burst), the
depth answer alone decides.

- 0 <-> 1: from zero, a replica starts only once backlog > activationDepth; a queue goes back
  to zero (when minReplicas is 0) only after it has been idle (no backlog, nothing arriving)
  for cooldownSeconds.
- Up at once: wanted above the current count is applied immediately, so a growing backlog is
  met before it piles up (the predictive term acts a poll or two early).
- Down slowly: the target is the highest recommendation of the last
  stabilizationWindowSeconds (as the HPA does), and at most maxStep replicas go per decision;
  so a load that oscillates faster than the window never makes replicas flap.
- Paused, or replicas set by hand (``kubectl scale``, spec.replicas): the operator does not
  decide; a hand-set count is only held within [minReplicas, maxReplicas].

Concurrency before replicas (``plan_capacity``, only when spec.maxConcurrency is set): the
decision above is in replicas at the spec's ``concurrency`` (c0), i.e. ``wanted x c0`` job slots.
Running replicas take those slots first, by raising the workers' live concurrency up to
maxConcurrency (no new pods: no scheduling, no image pull, no start-up); replicas are added
only for the slots that cannot absorb. Going down, concurrency falls back toward c0 first
and replicas follow the decision's own (stabilized, stepped) pace. From zero replicas, or
with the decision at or below the running replicas, it is the plain decision at c0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from conveyor_operator.spec import MessageQueueSpec, ScaleDown

_SPEC, _DOWN = MessageQueueSpec.model_fields, ScaleDown.model_fields


@dataclass(frozen=True, slots=True)
class ScalingSpec:
    """The scaling fields of a MessageQueue spec; the defaults are the spec model's."""

    min_replicas: int = _SPEC["min_replicas"].default
    max_replicas: int = _SPEC["max_replicas"].default
    target_per_replica: int = _SPEC["target_depth_per_replica"].default
    activation_depth: int = _SPEC["activation_depth"].default
    polling_interval_s: float = _SPEC["polling_interval_seconds"].default
    stabilization_s: float = _DOWN["stabilization_window_seconds"].default
    cooldown_s: float = _DOWN["cooldown_seconds"].default
    max_step: int = _DOWN["max_step"].default
    paused: bool = _SPEC["paused"].default
    manual_replicas: int | None = _SPEC["replicas"].default
    target_latency_s: float | None = _SPEC["target_latency_seconds"].default

    @classmethod
    def of(cls, spec: MessageQueueSpec) -> ScalingSpec:
        return cls(
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            target_per_replica=spec.target_depth_per_replica,
            activation_depth=spec.activation_depth,
            polling_interval_s=spec.polling_interval_seconds,
            stabilization_s=spec.scale_down.stabilization_window_seconds,
            cooldown_s=spec.scale_down.cooldown_seconds,
            max_step=spec.scale_down.max_step,
            paused=spec.paused,
            manual_replicas=spec.replicas,
            target_latency_s=spec.target_latency_seconds,
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """One poll of the queue: counts from Redis and rates from the counters' deltas."""

    now: float
    pending: int
    processing: int
    arrival_rate: float = 0.0
    drain_rate: float = 0.0

    @property
    def backlog(self) -> int:
        return self.pending + self.processing


@dataclass(frozen=True, slots=True)
class Memory:
    """What the operator keeps between polls of one queue."""

    recommendations: tuple[tuple[float, int], ...] = ()
    last_busy: float | None = None
    per_replica_rate: float | None = None
    """Jobs one replica finishes per second, learned while jobs waited (smoothed)."""


@dataclass(frozen=True, slots=True)
class Decision:
    replicas: int
    reason: str
    memory: Memory = field(default_factory=Memory)


SMOOTHING = 0.7
"""Weight of the learned per-replica rate against a new sample."""


def decide(spec: ScalingSpec, obs: Observation, current: int, memory: Memory) -> Decision:
    """The replicas the queue should have now, why, and what to remember for the next poll."""
    busy = obs.backlog > 0 or obs.arrival_rate > 0
    memory = replace(memory, last_busy=obs.now if busy else memory.last_busy)
    if current > 0 and obs.pending > 0 and obs.drain_rate > 0:  # every replica had work
        sample = obs.drain_rate / current
        old = memory.per_replica_rate
        learned = sample if old is None else SMOOTHING * old + (1 - SMOOTHING) * sample
        memory = replace(memory, per_replica_rate=learned)
    if spec.manual_replicas is not None:
        held = _clamp(spec.manual_replicas, spec)
        return Decision(held, f"replicas set by hand to {spec.manual_replicas}", memory)
    if spec.paused:
        return Decision(current, "paused: replicas left as they are", memory)

    lookahead = 2 * spec.polling_interval_s
    growth = max(0.0, obs.arrival_rate - obs.drain_rate)
    predicted = obs.backlog + growth * lookahead
    wanted = math.ceil(predicted / spec.target_per_replica) if predicted > 0 else 0
    why = (
        f"backlog {obs.backlog:,}"
        + (f" growing {growth:,.0f}/s" if growth else "")
        + f", {spec.target_per_replica:,} per replica"
    )
    rate = memory.per_replica_rate
    if spec.target_latency_s and rate and predicted > 0:
        needed = obs.arrival_rate + obs.backlog / spec.target_latency_s
        for_latency = math.ceil(needed / rate)
        if for_latency > wanted:
            wanted = for_latency
            why = (
                f"backlog {obs.backlog:,}, arriving {obs.arrival_rate:,.1f}/s: {needed:,.1f} "
                f"jobs/s to wait under {spec.target_latency_s:g}s, at {rate:,.2f}/s per replica"
            )

    if current == 0 and obs.backlog <= spec.activation_depth:
        wanted = 0
        why = f"backlog {obs.backlog:,} <= activationDepth {spec.activation_depth:,}"
    elif wanted == 0:
        # Keep one replica until the queue has been idle for the whole cooldown.
        idle_for = obs.now - memory.last_busy if memory.last_busy is not None else math.inf
        if busy or idle_for < spec.cooldown_s:
            wanted = 1
            why = f"idle for {idle_for:.0f}s of the {spec.cooldown_s:.0f}s cooldown"
        else:
            why = f"idle for {idle_for:.0f}s >= cooldown {spec.cooldown_s:.0f}s"
    wanted = _clamp(wanted, spec)

    window = tuple((t, r) for t, r in memory.recommendations if obs.now - t < spec.stabilization_s)
    window += ((obs.now, wanted),)
    memory = replace(memory, recommendations=window)
    if wanted >= current:
        return Decision(wanted, why, memory)
    stable = _clamp(max(r for _, r in window), spec)
    if stable >= current:
        return Decision(
            current,
            f"{why}; holding {current} for the {spec.stabilization_s:.0f}s stabilization window",
            memory,
        )
    target = max(stable, current - spec.max_step)
    return Decision(target, why, memory)


def _clamp(replicas: int, spec: ScalingSpec) -> int:
    return max(spec.min_replicas, min(spec.max_replicas, replicas))


@dataclass(frozen=True, slots=True)
class Capacity:
    replicas: int
    concurrency: int


def plan_capacity(
    wanted: int, current: int, *, base_concurrency: int, max_concurrency: int, max_replicas: int
) -> Capacity:
    """Replicas and live concurrency for ``wanted`` replicas' worth of slots at
    ``base_concurrency``, raising the concurrency of the ``current`` replicas first."""
    if wanted <= current or current == 0:
        return Capacity(wanted, base_concurrency)
    slots = wanted * base_concurrency
    replicas = max(current, math.ceil(slots / max_concurrency))
    replicas = min(replicas, max(max_replicas, current))
    concurrency = min(max_concurrency, math.ceil(slots / replicas))
    return Capacity(replicas, max(base_concurrency, concurrency))
