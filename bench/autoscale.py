"""``python -m bench autoscale``: how fast the operator answers a backlog, on a real control plane.

Runs on this machine: a kube-apiserver (kwokctl, binaries from hack/tools.sh), a Redis, and
``conveyor operator`` as a process. For each polling interval it applies a MessageQueue
(minReplicas 1, maxReplicas 10, 2,000 jobs per replica, a 10 s scale-down window), then per
round: enqueues 20,000 jobs at once and times until the worker Deployment's replicas are
patched up (read from the API every 50 ms); then drains the queue with an in-process worker and
times until the replicas are back at the minimum.

Then the scenarios with workers behind the pods (``autoscale_scenarios``): a burst sized by
depth alone against one with ``targetLatencySeconds``, and scale-in by the operator (deletion
costs from the jobs held) against the Deployment scaled directly, as an HPA does.

Beside it, what KEDA's defaults would give for the same load, computed rather than measured:
KEDA polls the queue every 30 s (pollingInterval) and the HPA it drives syncs every 15 s, so a
backlog that appears at a random moment waits 22.5 s on average (15 + 7.5) and 45 s at worst
before the HPA patches the replicas; downscale waits the HPA's 300 s stabilization window.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import ROOT
from bench import autoscale_scenarios as scenarios
from conveyor.local_cluster import MESSAGEQUEUE_CRD, KubeCluster, missing_tools, start_cluster
from conveyor.local_servers import RedisServer, find_binary
from conveyor.tables import render
from reliable_queue import Job, QueueClient

NAMESPACE = "bench"
KEDA_UP_MEAN_S = 30 / 2 + 15 / 2
KEDA_UP_WORST_S = 30 + 15
KEDA_DOWN_S = 300 + 15 / 2


def run(args: argparse.Namespace) -> int:
    redis_bin = find_binary("redis-server")
    if redis_bin is None or missing_tools():
        print(
            "bench autoscale: needs redis-server (hack/bootstrap.sh) and the control "
            f"plane (hack/tools.sh k8s); missing: {', '.join(missing_tools()) or 'redis-server'}",
            file=sys.stderr,
        )
        return 3
    logging.getLogger("reliable_queue").setLevel(logging.WARNING)  # the drain's worker
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-autoscale-"))
    print("starting a control plane (kwokctl) and Redis ...", flush=True)
    redis = RedisServer(redis_bin, work / "redis").start()
    cluster = start_cluster(work / "kwok", nodes=2)
    operator: subprocess.Popen[bytes] | None = None
    try:
        cluster.install_crd(ROOT / MESSAGEQUEUE_CRD)
        cluster.kubectl("create", "namespace", NAMESPACE)
        env = {
            **os.environ,
            "REDIS_URL": redis.url,
            "KUBECONFIG": str(cluster.kubeconfig),
            "OPERATOR_WORKER_IMAGE": "conveyor:bench",
            "PROBE_PORT": "0",
        }
        log = (work / "operator.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", "operator", "--namespace", NAMESPACE],
            env=env,
            stdout=log,
            stderr=log,
        )
        rows, latency_rows, scale_in_rows = asyncio.run(_run_all(cluster, redis.url, args))
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        cluster.delete()
        redis.stop()
    print()
    print(
        f"Autoscaling: {args.jobs:,} jobs enqueued at once, 2,000 per replica, {args.rounds} "
        "rounds per polling interval; KEDA figures computed from its defaults (polling 30 s, "
        "HPA sync 15 s, HPA downscale window 300 s), not measured."
    )
    print()
    headers = ("autoscaler", "polling", "backlog -> scaled up", "worst", "drained -> down")
    print(render(headers, rows, figures=True))
    print()
    print(
        f"Latency: {args.latency_jobs:,} jobs of {scenarios.JOB_S * 1000:.0f} ms at once, "
        "1 to 10 replicas of concurrency 1, polling 1 s; workers run behind the kwok pods."
    )
    print()
    print(
        render(
            ("sizing", "most pods running", "queue empty after", "oldest wait"),
            [
                (r.sizing, str(r.peak_replicas), f"{r.drained_s:.1f} s", f"{r.max_wait_s:.1f} s")
                for r in latency_rows
            ],
            figures=True,
        )
    )
    print()
    print(
        f"Scale-in: {args.scale_in_rounds} rounds of {len(scenarios.burst()) - 1} jobs of "
        f"{scenarios.SHORT_S:g} s and one of {scenarios.LONG_S:g} s (claimed last) on "
        f"{scenarios.SCALE_IN_PODS} pods of concurrency {scenarios.SCALE_IN_CONCURRENCY}, one "
        "replica per job in flight, so the pods go in to 1 as the jobs end; a removed pod "
        f"drains for {scenarios.DRAIN_S:g} s. A removed pod is busy if it still held a job when "
        "its deletion was seen (within 0.2 s and a kubectl call). Expected with deletion "
        "costs: no busy pod removed, no job interrupted."
    )
    print()
    print(
        render(
            ("scaler", "pods removed", "busy pods removed", "jobs interrupted"),
            [
                (r.scaler, str(r.removed), str(r.busy_removed), str(r.interrupted))
                for r in scale_in_rows
            ],
            figures=True,
        )
    )
    return 0


async def _run_all(
    cluster: KubeCluster, redis_url: str, args: argparse.Namespace
) -> tuple[list[tuple[str, ...]], list[scenarios.LatencyRow], list[scenarios.ScaleInRow]]:
    rows = await _bench(cluster, redis_url, args)
    async with QueueClient.from_url(redis_url) as client:
        print("latency target against depth alone ...", flush=True)
        latency_rows = await scenarios.latency(
            cluster, client, NAMESPACE, jobs=args.latency_jobs, target_s=args.latency_target
        )
        print("scale-in: deletion costs against a direct scale ...", flush=True)
        scale_in_rows = await scenarios.scale_in(
            cluster, client, NAMESPACE, rounds=args.scale_in_rounds
        )
    return rows, latency_rows, scale_in_rows


async def _bench(
    cluster: KubeCluster, redis_url: str, args: argparse.Namespace
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    async with QueueClient.from_url(redis_url) as client:
        for interval in (int(i) for i in args.intervals.split(",")):
            ups, downs = [], []
            name = f"bench-p{interval}"
            queue = name.replace("-", "_")
            spec = {
                "queue": queue,
                "minReplicas": 1,
                "maxReplicas": 10,
                "targetDepthPerReplica": 2000,
                "pollingIntervalSeconds": interval,
                "scaleDown": {"stabilizationWindowSeconds": 10, "cooldownSeconds": 10},
            }
            manifest = scenarios.messagequeue(name, spec)
            cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=manifest)
            at_min = functools.partial(_replicas_are, cluster, name, lambda r: r == 1)
            above_min = functools.partial(_replicas_are, cluster, name, lambda r: r > 1)
            await _until(at_min, 60)
            for _ in range(args.rounds):
                await client.enqueue_many(queue, [{"n": i} for i in range(args.jobs)])
                appeared = time.monotonic()
                await _until(above_min, 120)
                ups.append(time.monotonic() - appeared)

                async def work(job: Job) -> None:
                    return None

                stop = await client.start_worker(queue, work, concurrency=64)
                while True:
                    s = await client.queue_stats(queue)
                    if s.pending + s.processing == 0:
                        break
                    await asyncio.sleep(0.05)
                await stop()
                drained = time.monotonic()
                await _until(at_min, 300)
                downs.append(time.monotonic() - drained)
                print(
                    f"  polling {interval} s: up after {ups[-1]:.2f} s, down {downs[-1]:.1f} s "
                    "after the drain",
                    flush=True,
                )
            rows.append(
                (
                    "conveyor operator",
                    f"{interval} s",
                    f"{statistics.mean(ups):.2f} s",
                    f"{max(ups):.2f} s",
                    f"{statistics.mean(downs):.1f} s (10 s window)",
                )
            )
    rows.append(
        (
            "KEDA defaults (computed)",
            "30 s",
            f"{KEDA_UP_MEAN_S:.2f} s",
            f"{KEDA_UP_WORST_S:.2f} s",
            f"{KEDA_DOWN_S:.1f} s (300 s window)",
        )
    )
    return rows


def _replicas_are(cluster: KubeCluster, name: str, wanted: Callable[[int], bool]) -> bool:
    replicas = _replicas(cluster, name)
    return replicas is not None and wanted(replicas)


def _replicas(cluster: KubeCluster, name: str) -> int | None:
    done = cluster.kubectl(
        "get",
        "deploy",
        f"{name}-worker",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.replicas}",
        check=False,
    )
    return int(done.stdout) if done.returncode == 0 and done.stdout else None


async def _until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the operator did not act within {timeout:.0f} s (see operator.log)")
