"""The autoscale bench's scenarios with workers behind the pods (``pod_workers``): replicas the
operator adds drain the queue, and a scale-in stops the removed pods' workers with their drain.

- **latency**: a burst of 50 ms jobs into a queue sized by depth alone (2,000 per replica) and
  into one with ``targetLatencySeconds``; printed: the most pods running at once, when the
  queue was empty and the oldest wait seen.
- **scale-in**: per round, a burst of short jobs (3 s) and one long one (12 s, claimed last)
  over four pods, sized at one job in flight per replica, so the replicas go down with the
  jobs in flight as the short ones end (the equal short jobs end together: mostly one step
  from four to one, once the long job is left). The operator, which sets pod-deletion-costs from
  the jobs each worker holds, against the same steps applied to a Deployment's replicas
  directly, as an HPA (and so KEDA) does: how many busy pods were removed, and how many jobs
  were still unfinished when their pod's drain ended (given back, to start over).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.pod_workers import PodWorkers
from conveyor.local_cluster import KubeCluster
from reliable_queue import Job, QueueClient

JOB_S = 0.05  # a latency job
SHORT_S, LONG_S = 3.0, 12.0  # scale-in jobs
DRAIN_S = 4.0  # shorter than the chart's 20 s, so a long job outlives a removed pod's drain
SCALE_IN_PODS, SCALE_IN_CONCURRENCY = 4, 2


@dataclass
class LatencyRow:
    sizing: str
    peak_replicas: int
    drained_s: float
    max_wait_s: float


@dataclass
class ScaleInRow:
    scaler: str
    removed: int
    busy_removed: int
    interrupted: int


def messagequeue(name: str, spec: dict[str, Any]) -> str:
    """A MessageQueue manifest, as JSON for ``kubectl apply -f -``."""
    return json.dumps(
        {
            "apiVersion": "conveyor.io/v1alpha1",
            "kind": "MessageQueue",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def _selector(name: str) -> str:
    return f"app.kubernetes.io/component=worker,app.kubernetes.io/instance={name}"


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s (see operator.log)")
        await asyncio.sleep(0.1)


async def _sleep_for(job: Job) -> None:
    await asyncio.sleep(float(job.data["seconds"]))


async def latency(
    cluster: KubeCluster, client: QueueClient, namespace: str, *, jobs: int, target_s: float
) -> list[LatencyRow]:
    rows = []
    for sizing, extra in (
        ("depth only (2,000 per replica)", {}),
        (f"targetLatencySeconds {target_s:g}", {"targetLatencySeconds": target_s}),
    ):
        name = "lat-target" if extra else "lat-depth"
        queue = name.replace("-", "_")
        spec = {
            "queue": queue,
            "minReplicas": 1,
            "maxReplicas": 10,
            "targetDepthPerReplica": 2000,
            "pollingIntervalSeconds": 1,
            "scaleDown": {"stabilizationWindowSeconds": 10, "cooldownSeconds": 10},
            **extra,
        }
        cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=messagequeue(name, spec))
        pods = PodWorkers(
            client, cluster, namespace, _selector(name), queue, _sleep_for, drain_timeout=DRAIN_S
        )

        await pods.start()
        try:
            await _until(_running(pods, 1), 60, f"{name}: one worker pod")
            await client.enqueue_many(queue, [{"seconds": JOB_S}] * jobs)
            burst = time.monotonic()
            peak, max_wait = 1, 0.0
            while True:
                stats = await client.queue_stats(queue)
                peak = max(peak, pods.running)
                max_wait = max(max_wait, stats.oldest_pending_age_s)
                if stats.pending + stats.processing == 0:
                    break
                if time.monotonic() - burst > 600:
                    raise TimeoutError(f"{name}: {jobs} jobs not done in 600 s")
                await asyncio.sleep(0.2)
            rows.append(LatencyRow(sizing, peak, time.monotonic() - burst, max_wait))
            print(
                f"  latency, {sizing}: at most {peak} pods running, empty after "
                f"{rows[-1].drained_s:.1f} s, oldest wait {max_wait:.1f} s",
                flush=True,
            )
        finally:
            await pods.close()
            cluster.kubectl("delete", "mq", name, "-n", namespace, "--wait=false")
    return rows


async def scale_in(
    cluster: KubeCluster, client: QueueClient, namespace: str, *, rounds: int
) -> list[ScaleInRow]:
    return [
        await _scale_in_by_operator(cluster, client, namespace, rounds),
        await _scale_in_directly(cluster, client, namespace, rounds),
    ]


def burst() -> list[tuple[dict[str, float], int]]:
    """Enough short jobs to fill the pods, and a long one at a lower priority (claimed last)."""
    shorts = 2 * SCALE_IN_PODS * SCALE_IN_CONCURRENCY - 1
    return [({"seconds": SHORT_S}, 0)] * shorts + [({"seconds": LONG_S}, -1)]


async def _enqueue_burst(client: QueueClient, queue: str) -> None:
    for data, priority in burst():
        await client.enqueue(queue, data, priority=priority)


def _row(scaler: str, pods: PodWorkers) -> ScaleInRow:
    return ScaleInRow(
        scaler,
        removed=len(pods.removals),
        busy_removed=sum(1 for r in pods.removals if r.held),
        interrupted=sum(r.interrupted for r in pods.removals),
    )


async def _scale_in_by_operator(
    cluster: KubeCluster, client: QueueClient, namespace: str, rounds: int
) -> ScaleInRow:
    name, queue = "scale-in", "scale_in"
    spec = {
        "queue": queue,
        "concurrency": SCALE_IN_CONCURRENCY,
        "minReplicas": 1,
        "maxReplicas": SCALE_IN_PODS,
        "targetDepthPerReplica": 1,  # so one pod is wanted only once one job is left
        "pollingIntervalSeconds": 1,
        "scaleDown": {"stabilizationWindowSeconds": 0, "cooldownSeconds": 0, "maxStep": 4},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=messagequeue(name, spec))
    pods = PodWorkers(
        client, cluster, namespace, _selector(name), queue, _sleep_for, drain_timeout=DRAIN_S
    )
    await pods.start()
    try:
        for _ in range(rounds):
            await _until(_running(pods, 1), 120, f"{name}: one worker pod")
            await pods.settled()
            await _enqueue_burst(client, queue)
            await _until(_running(pods, SCALE_IN_PODS), 60, f"{name}: scale-up")
            # Steps in by itself as the jobs end, to one pod once only the long job is left.
            await _until(_running(pods, 1), 120, f"{name}: scale-in")
            await _until(_empty(client, queue), 120, f"{name}: the jobs done")
        await pods.settled()
        row = _row("conveyor operator (pod-deletion-cost)", pods)
    finally:
        await pods.close()
        cluster.kubectl("delete", "mq", name, "-n", namespace, "--wait=false")
    return row


async def _scale_in_directly(
    cluster: KubeCluster, client: QueueClient, namespace: str, rounds: int
) -> ScaleInRow:
    """The same pods, jobs and steps, the Deployment's replicas set directly as an HPA sets
    them: one replica per job in flight (at least one), lowered as soon as that is lower."""
    name, queue = "plain", "plain_scale_in"
    cluster.kubectl(
        "create", "deployment", name, "-n", namespace, "--image", "conveyor:bench", "--replicas=1"
    )
    await client.set_policy(queue, concurrency=SCALE_IN_CONCURRENCY)
    pods = PodWorkers(
        client, cluster, namespace, f"app={name}", queue, _sleep_for, drain_timeout=DRAIN_S
    )
    await pods.start()
    try:
        for _ in range(rounds):
            await _until(_running(pods, 1), 120, f"{name}: one pod")
            await pods.settled()
            _scale(cluster, namespace, name, SCALE_IN_PODS)
            await _until(_running(pods, SCALE_IN_PODS), 60, f"{name}: four pods")
            await _enqueue_burst(client, queue)
            replicas = SCALE_IN_PODS

            async def stepped_in() -> bool:
                nonlocal replicas
                stats = await client.queue_stats(queue)
                wanted = min(SCALE_IN_PODS, max(1, stats.pending + stats.processing))
                if wanted < replicas:
                    replicas = wanted
                    await asyncio.to_thread(_scale, cluster, namespace, name, replicas)
                return replicas == 1

            await _until(stepped_in, 120, f"{name}: the steps in")
            await _until(_running(pods, 1), 60, f"{name}: scale-in")
            await _until(_empty(client, queue), 120, f"{name}: the jobs done")
        await pods.settled()
        row = _row("Deployment scaled directly (an HPA, KEDA)", pods)
    finally:
        await pods.close()
        cluster.kubectl("delete", "deployment", name, "-n", namespace, "--wait=false")
    return row


def _scale(cluster: KubeCluster, namespace: str, name: str, replicas: int) -> None:
    cluster.kubectl("scale", "deployment", name, "-n", namespace, f"--replicas={replicas}")


def _running(pods: PodWorkers, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return pods.running == n

    return check


def _empty(client: QueueClient, queue: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        stats = await client.queue_stats(queue)
        return stats.pending + stats.processing + stats.delayed == 0

    return check
