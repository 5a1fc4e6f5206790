"""Chaos on the three-node kind cluster, each in the middle of a burst of 30,000 realtime
messages that a simulator pod on the state node publishes (QoS 1: it succeeds only once the
broker acknowledged every one):

1. InfluxDB away for 30 s: jobs wait without spending attempts, nothing dead-lettered;
2. the broker's pod deleted: it comes back from its volume, ingestors resume their sessions;
3. Redis's pod deleted: it comes back from its AOF on its volume, ingestors and workers resume
   unrestarted;
4. the leading operator force-deleted while mqtt_realtime is held at no worker, then handed
   back to the autoscaler with a backlog: the standby (or the leader's replacement) takes over
   and scales up (a leader gone without a word, and its 15 s lease, are
   tests/cluster/test_operator_resilience.py's);
5. the second worker node stopped (``docker stop``): once NotReady it gets the out-of-service
   taint, as after a node's unplanned shutdown, its pods are replaced on the state node, and the
   jobs its workers held return after their lease.

For each: every published message is a point in InfluxDB (each has its own machine and
millisecond), none lost and none dead-lettered; duplicates (at-least-once: jobs processed again)
are counted and allowed. A table of them is printed at the end.

Not in the default run (about 6 minutes with the cluster's start): ``hack/test.sh --chaos``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from tests.helpers import ROOT, wait_until
from tests.kind.conftest import REPORT, Kind
from tests.kind.pipeline import (
    BURST,
    TEMPERATURE_POINTS,
    Release,
    influx_count,
    installed,
    patch_spec,
    realtime,
    replicas,
    start_simulator,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(3600)]

INFLUXDB_AWAY_S = 30.0
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"
# mqtt_realtime in this suite: one pod to start with, scaled up by depth; pods of a fifth of a
# core, as in the kind suite, so that one cannot keep up with a burst and a backlog builds.
SCALING = {
    "minReplicas": 1,
    "maxReplicas": 4,
    "targetDepthPerReplica": 2000,
    "pollingIntervalSeconds": 2,
    "scaleDown": {"stabilizationWindowSeconds": 10, "cooldownSeconds": 20},
    "worker": {
        "resources": {
            "requests": {"cpu": "50m", "memory": "96Mi"},
            "limits": {"cpu": "200m", "memory": "256Mi"},
        }
    },
}


@dataclass
class Outcome:
    scenario: str
    recovery: str  # what came back, and how long after the blow
    published: int
    points: int
    dead: int
    processed: int  # jobs completed or dead-lettered for the burst, duplicates included
    drain_s: float  # from the burst's start until every job was done

    @property
    def duplicates(self) -> int:
        """Jobs beyond one per message that became a point or a dead letter."""
        return self.processed - self.points - self.dead

    @property
    def lost(self) -> int:
        return self.published - self.points - self.dead


OUTCOMES: list[Outcome] = []


def table(outcomes: list[Outcome]) -> list[str]:
    head = ("scenario", "published", "in InfluxDB", "dead", "duplicates", "lost", "drain")
    rows = [
        (
            o.scenario,
            str(o.published),
            str(o.points),
            str(o.dead),
            str(o.duplicates),
            str(o.lost),
            f"{o.drain_s:.0f} s",
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))

    lines = [f"chaos, each in a burst of {BURST}:", line(head), *map(line, rows)]
    lines += [f"  {o.scenario}: {o.recovery}" for o in outcomes]
    return lines


@pytest.fixture(scope="module")
def release(kind: Kind) -> Iterator[Release]:
    try:
        with installed(kind, str(ROOT / "tests/infra/kind/chaos-values.yaml")) as release:
            patch_spec(kind, "mqtt-realtime", SCALING)
            kind.kubectl(
                "wait", "--for=condition=Available", "deploy/mqtt-realtime-worker", "--timeout=300s"
            )
            yield release
    finally:
        REPORT.extend(table(OUTCOMES))


def figures(kind: Kind) -> dict[str, float] | None:
    """mqtt_realtime's figures, or None while they cannot be read (a scenario took Redis away;
    kubectl says why, and a wait that times out shows it)."""
    try:
        return realtime(kind)
    except AssertionError:
        return None


def pod_phase(kind: Kind, name: str) -> str:
    return str(kind.get("pod", name)["status"].get("phase", ""))


def chaos_burst(kind: Kind, release: Release, scenario: str, blow: Callable[[], str]) -> Outcome:
    """A burst from a simulator pod on the state node; ``blow`` strikes once a tenth of it is
    in the queue and returns what came back and when; then the burst is drained and counted."""
    settled = wait_until(
        lambda: figures(kind), what="mqtt_realtime's figures", timeout=120, interval=1
    )
    assert settled is not None
    base = settled["completed"] + settled["failed"]
    points_before = influx_count(kind, TEMPERATURE_POINTS)
    simulator = f"chaos-{scenario.split()[0].lower()}"
    started = time.monotonic()
    start_simulator(kind, release, simulator, node=kind.state_node)
    try:
        # Under way: a tenth of it in the queue (one pod may keep up, so nothing need be pending).
        wait_until(
            lambda: (figures(kind) or settled)["enqueued"] - settled["enqueued"] >= BURST / 10,
            what=f"{simulator}'s burst to reach the queue",
            timeout=180,
            interval=0.5,
        )
        recovery = blow()
        wait_until(
            lambda: pod_phase(kind, simulator) in ("Succeeded", "Failed"),
            what=f"{simulator} to have every message acknowledged by the broker",
            timeout=900,
            interval=1,
        )
        said = kind.kubectl("logs", simulator, check=False)[-3000:]
        assert pod_phase(kind, simulator) == "Succeeded", said
        idle: dict[str, float] = {}

        def drained() -> bool:
            q = figures(kind)
            if q is None or q["pending"] + q["processing"] + q["delayed"]:
                idle.clear()
                return False
            if q["completed"] + q["failed"] - base >= BURST:  # as many jobs, duplicates counted
                points = influx_count(kind, TEMPERATURE_POINTS) - points_before
                if points + q["failed"] - settled["failed"] >= BURST:  # each message done
                    return True
            idle.setdefault("since", time.monotonic())  # the count below says what is missing
            return time.monotonic() - idle["since"] > 60

        wait_until(
            drained,
            what=f"the burst of {scenario} drained",
            timeout=900,
            interval=1,
            detail=lambda: f"mqtt_realtime: {figures(kind)}",
        )
        drain_s = time.monotonic() - started
        after = realtime(kind)
        outcome = Outcome(
            scenario=scenario,
            recovery=recovery,
            published=BURST,
            points=influx_count(kind, TEMPERATURE_POINTS) - points_before,
            dead=int(after["failed"] - settled["failed"]),
            processed=int(after["completed"] + after["failed"] - base),
            drain_s=drain_s,
        )
        OUTCOMES.append(outcome)
    finally:  # a failed scenario leaves no simulator behind to block the next
        kind.kubectl("delete", "pod", simulator, "--wait=false", check=False)
    assert outcome.lost == 0, outcome
    assert outcome.points <= outcome.published, outcome  # one point per message, at most
    # Nothing here makes a message unprocessable: a dead letter is a retry budget spent on an
    # outage (which costs no attempt: docs/reliable-queue.md), and would hide a loss above.
    assert outcome.dead == 0, outcome
    return outcome


def ready(kind: Kind, pod: str) -> bool:
    if not kind.kubectl("get", "pod", pod, "--ignore-not-found", check=False):
        return False  # not made again yet
    conditions = kind.get("pod", pod)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def restarts(kind: Kind) -> dict[str, int]:
    """Container restarts of the release's pods, by pod name."""
    pods = kind.get("pods", "-l", "app.kubernetes.io/name=conveyor")["items"]
    pods += kind.get("pods", "-l", "app.kubernetes.io/instance=mqtt-realtime")["items"]
    return {
        p["metadata"]["name"]: sum(
            c.get("restartCount", 0) for c in p["status"].get("containerStatuses", [])
        )
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    }


def test_influxdb_away_for_30_s_costs_no_point_and_no_dead_letter(
    kind: Kind, release: Release
) -> None:
    def blow() -> str:
        struck = time.monotonic()
        kind.kubectl("scale", "statefulset/conveyor-influxdb", "--replicas=0")
        kind.kubectl("wait", "--for=delete", "pod/conveyor-influxdb-0", "--timeout=120s")
        # The outage's length is the scenario, not a wait for a condition.
        time.sleep(max(INFLUXDB_AWAY_S - (time.monotonic() - struck), 0))
        kind.kubectl("scale", "statefulset/conveyor-influxdb", "--replicas=1")
        wait_until(
            lambda: ready(kind, "conveyor-influxdb-0"),
            what="InfluxDB back",
            timeout=180,
            interval=1,
        )
        back = time.monotonic() - struck
        return f"InfluxDB away {INFLUXDB_AWAY_S:.0f} s, ready again {back:.1f} s after it went"

    try:
        chaos_burst(kind, release, "InfluxDB away 30 s", blow)
    finally:  # back, whatever happened, for the scenarios after this one
        kind.kubectl("scale", "statefulset/conveyor-influxdb", "--replicas=1", check=False)


def test_the_broker_pod_deleted_loses_nothing(kind: Kind, release: Release) -> None:
    def blow() -> str:
        struck = time.monotonic()
        kind.kubectl("delete", "pod", "conveyor-mosquitto-0")
        back = partial(ready, kind, "conveyor-mosquitto-0")
        wait_until(back, what="the broker back", timeout=180, interval=0.5)
        return f"broker ready again {time.monotonic() - struck:.1f} s after its pod was deleted"

    chaos_burst(kind, release, "broker pod deleted", blow)


def test_the_redis_pod_deleted_loses_nothing_and_restarts_nobody(
    kind: Kind, release: Release
) -> None:
    before = restarts(kind)

    def blow() -> str:
        struck = time.monotonic()
        kind.kubectl("delete", "pod", "conveyor-redis-0")
        wait_until(
            lambda: figures(kind) is not None,
            what="Redis answering again",
            timeout=180,
            interval=0.5,
        )
        return f"Redis answering again {time.monotonic() - struck:.1f} s after its pod was deleted"

    chaos_burst(kind, release, "Redis pod deleted", blow)
    after = restarts(kind)
    still_here = {
        p: n for p, n in before.items() if p in after and not p.startswith("conveyor-redis")
    }
    assert {p: after[p] for p in still_here} == still_here, "a component restarted"


def test_the_leading_operator_killed_before_a_scale_up_hands_over(
    kind: Kind, release: Release
) -> None:
    # No worker until the leader is gone (spec.replicas 0, as `kubectl scale` sets it): the
    # backlog is certain, and scaling up from it is the standby's to do.
    def hold(replicas: int | None) -> None:
        least = SCALING["minReplicas"] if replicas is None else 0  # replicas within the bounds
        patch_spec(kind, "mqtt-realtime", {"replicas": replicas, "minReplicas": least})

    hold(0)
    wait_until(
        lambda: replicas(kind, "mqtt-realtime-worker") == 0,
        what="mqtt-realtime held at no pod",
        timeout=120,
        interval=1,
    )

    def blow() -> str:
        peering = kind.get("kopfpeering", "conveyor-operator")
        peers: dict[str, Any] = peering.get("status") or {}
        assert len(peers) == 2, peers
        leader = max(peers, key=lambda p: peers[p]["priority"])
        struck = time.monotonic()
        kind.kubectl("delete", "pod", leader, "--grace-period=0", "--force")
        hold(None)  # back to the autoscaler, with a backlog to scale for
        wait_until(
            lambda: replicas(kind, "mqtt-realtime-worker") > 1,
            what="the standby to scale mqtt-realtime up",
            timeout=120,
            interval=0.5,
        )
        return f"leader {leader} killed; scaled up {time.monotonic() - struck:.1f} s after"

    try:
        chaos_burst(kind, release, "operator leader killed", blow)
    finally:  # the autoscaler's again, whatever happened, for the scenarios after this one
        hold(None)


def test_a_worker_node_stopped_loses_nothing(kind: Kind, release: Release) -> None:
    node = kind.other_node

    def node_ready() -> bool:
        conditions = kind.get("node", node)["status"]["conditions"]
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def on_node() -> list[str]:
        pods = kind.get("pods", "--field-selector", f"spec.nodeName={node}")["items"]
        return [p["metadata"]["name"] for p in pods]

    assert on_node(), f"nothing of the release runs on {node}: the scenario would stop nothing"

    def blow() -> str:
        struck = time.monotonic()
        victims = on_node()
        subprocess.run(["docker", "stop", node], check=True, capture_output=True)
        wait_until(lambda: not node_ready(), what=f"{node} NotReady", timeout=180, interval=1)
        not_ready_s = time.monotonic() - struck
        kind.kubectl("taint", "node", node, OUT_OF_SERVICE)

        def replaced() -> bool:
            if on_node():
                return False
            ingestors = kind.get("statefulset", "conveyor-ingestor")["status"]
            workers = kind.get("deployment", "mqtt-realtime-worker")["status"]
            return bool(
                ingestors.get("readyReplicas", 0) == ingestors["replicas"]
                and workers.get("readyReplicas", 0) >= 1
            )

        wait_until(replaced, what=f"{node}'s pods replaced", timeout=300, interval=1)
        return (
            f"{len(victims)} pods ({', '.join(sorted(victims))}); NotReady {not_ready_s:.0f} s "
            f"after the stop (node-monitor-grace-period), then the out-of-service taint; all "
            f"replaced and ready {time.monotonic() - struck:.0f} s after the stop"
        )

    try:
        chaos_burst(kind, release, "worker node stopped", blow)
    finally:
        subprocess.run(["docker", "start", node], check=False, capture_output=True)
        wait_until(node_ready, what=f"{node} Ready again", timeout=300, interval=2)
        kind.kubectl("taint", "node", node, f"{OUT_OF_SERVICE.split('=')[0]}-", check=False)
