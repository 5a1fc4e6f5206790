"""Scale-in removes idle worker pods and keeps busy ones, on a real kube-apiserver whose real
ReplicaSet controller picks the pods (kube-controller-manager; pods simulated by kwok).

Three worker pods, started one after the other. Their workers run in this test under the
pods' names (a worker's id is ``<host name>:<pid>``, and a pod's host name is its name): the
newest pod's worker holds three jobs, the oldest's one, the middle one's none. The queue then
scales from 3 to 1. Left to its own ranking the ReplicaSet removes pods sharing a node first,
then by age in power-of-two buckets (newest first), ties at random: the newest pod would often
go. With the deletion costs the operator sets from the jobs held, the busiest pod stays, and
its annotation says 3.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from reliable_queue import Job, QueueClient, Worker
from tests.cluster.conftest import KubeCluster
from tests.helpers import CliProcess, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
COST = "controller.kubernetes.io/pod-deletion-cost"
QUEUE = "scale-in"


def running_pods(kube: KubeCluster, ns: str) -> list[dict[str, Any]]:
    """The queue's worker pods that are ready and not terminating, oldest first."""
    selector = f"app.kubernetes.io/component=worker,app.kubernetes.io/instance={QUEUE}"
    pods = kube.get("pods", "-n", ns, "-l", selector)["items"]
    ready = [
        p
        for p in pods
        if "deletionTimestamp" not in p["metadata"]
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions", [])
        )
    ]
    return sorted(ready, key=lambda p: p["metadata"]["creationTimestamp"])


def names(pods: Sequence[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


async def test_scale_in_removes_the_idle_pods_and_keeps_the_busy_one(
    operator: tuple[KubeCluster, str, CliProcess], client: QueueClient
) -> None:
    kube, ns, proc = operator
    spec = {
        "queue": QUEUE,
        "concurrency": 3,  # the workers' live concurrency, from the policy the operator writes
        "minReplicas": 1,
        "maxReplicas": 3,
        "targetDepthPerReplica": 10,
        "pollingIntervalSeconds": 1,
        "scaleDown": {"stabilizationWindowSeconds": 0, "cooldownSeconds": 0, "maxStep": 4},
    }
    manifest = {
        "apiVersion": "conveyor.io/v1alpha1",
        "kind": "MessageQueue",
        "metadata": {"name": QUEUE},
        "spec": spec,
    }
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(manifest))
    # One pod at a time: without costs the ReplicaSet leans to removing the newest.
    for n in (1, 2, 3):
        if n > 1:
            patch = json.dumps({"spec": {"minReplicas": n}})
            kube.kubectl("patch", "-n", ns, f"mq/{QUEUE}", "--type=merge", "-p", patch)

        async def up(n: int = n) -> bool:
            return len(running_pods(kube, ns)) == n

        await eventually(
            up,
            timeout=60,
            interval=0.5,
            what=f"{n} ready worker pods",
            detail=lambda: proc.output()[-2000:],
        )
    oldest, middle, newest = names(running_pods(kube, ns))

    release = asyncio.Event()

    async def hold(job: Job) -> None:
        await release.wait()

    workers: list[Worker] = []

    async def start(pod: str, jobs: int) -> None:
        worker = client.worker(QUEUE, hold, heartbeat_interval=0.2, worker_id=f"{pod}:1")
        await worker.start()
        workers.append(worker)
        if jobs:
            await client.enqueue_many(QUEUE, [{"for": pod}] * jobs)

            async def holding() -> bool:
                return (await client.jobs_held(QUEUE)).get(f"{pod}:1") == jobs

            await eventually(holding, timeout=15, interval=0.1, what=f"{pod} to hold {jobs}")

    try:
        await start(newest, 3)
        await start(oldest, 1)
        await start(middle, 0)
        # 4 jobs in flight, 10 per replica: one replica is enough.
        patch = json.dumps({"spec": {"minReplicas": 1}})
        kube.kubectl("patch", "-n", ns, f"mq/{QUEUE}", "--type=merge", "-p", patch)

        async def one_left() -> bool:
            return len(running_pods(kube, ns)) == 1

        await eventually(
            one_left,
            timeout=60,
            interval=0.5,
            what="the scale-in to one pod",
            detail=lambda: proc.output()[-2000:],
        )
        [kept] = running_pods(kube, ns)
        assert kept["metadata"]["name"] == newest, (oldest, middle, newest)
        assert kept["metadata"]["annotations"][COST] == "3"
    finally:
        release.set()
        for worker in workers:
            await worker.stop()
