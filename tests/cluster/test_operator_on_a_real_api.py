"""The operator (``conveyor operator`` as a process) on a real kube-apiserver with a real Redis:
MessageQueues become worker Deployments; a backlog scales one up within two polls; the spec's
policy reaches Redis; deleting a MessageQueue removes its Deployment and honours
deletionPolicy."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis

from reliable_queue import Job, QueueClient
from tests.cluster.conftest import KubeCluster, start_operator
from tests.helpers import ROOT, CliProcess, eventually, run_cli
from tests.servers import RedisServer

pytestmark = [pytest.mark.cluster, pytest.mark.integration]


def replicas(kube: KubeCluster, ns: str, name: str) -> int | None:
    done = kube.kubectl(
        "get", "deploy", name, "-n", ns, "-o", "jsonpath={.spec.replicas}", check=False
    )
    return int(done.stdout) if done.returncode == 0 and done.stdout else None


async def test_default_queues_become_deployments_and_policy(
    operator: tuple[KubeCluster, str, CliProcess], client: QueueClient
) -> None:
    kube, ns, proc = operator
    for name in ("alerts", "mqtt-realtime", "mqtt-spc", "mqtt-tech"):
        kube.kubectl("apply", "-n", ns, "-f", str(ROOT / "manifests" / "samples" / f"{name}.yaml"))

    async def four() -> bool:
        return all(
            replicas(kube, ns, f"{n}-worker") is not None
            for n in ("alerts", "mqtt-realtime", "mqtt-spc", "mqtt-tech")
        )

    await eventually(
        four,
        timeout=60,
        interval=0.5,
        what="four worker Deployments",
        detail=lambda: proc.output()[-2000:],
    )
    assert replicas(kube, ns, "mqtt-realtime-worker") == 1  # minReplicas
    deploy = kube.get("deploy/mqtt-realtime-worker", "-n", ns)
    assert deploy["metadata"]["ownerReferences"][0]["kind"] == "MessageQueue"
    assert deploy["spec"]["template"]["spec"]["containers"][0]["args"][:3] == [
        "work",
        "--queue",
        "mqtt_realtime",
    ]

    async def policy_written() -> bool:  # after its Deployment
        policy = await client.get_policy("mqtt_realtime")
        # spec.priority 5; spec.retention.finished.maxCount 0
        return (policy.concurrency, policy.default_priority, policy.done_max_count) == (3, 5, 0)

    await eventually(
        policy_written,
        timeout=15,
        interval=0.3,
        what="concurrency 3, default_priority 5, done_max_count 0 in Redis",
    )

    kube.kubectl(
        "patch", "-n", ns, "mq/mqtt-realtime", "--type=merge", "-p", '{"spec": {"concurrency": 6}}'
    )

    async def live() -> bool:
        return (await client.get_policy("mqtt_realtime")).concurrency == 6

    await eventually(live, timeout=30, interval=0.5, what="concurrency 6 written to Redis")
    # Drift: someone edits the Deployment; the operator puts it back.
    kube.kubectl(
        "patch",
        "-n",
        ns,
        "deploy/alerts-worker",
        "--type=merge",
        "-p",
        '{"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 1}}}}',
    )

    async def repaired() -> bool:
        d = kube.get("deploy/alerts-worker", "-n", ns)
        return d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] != 1

    await eventually(repaired, timeout=30, interval=0.5, what="drift corrected")
    # Deleted by hand: the next poll makes it again, as the reconcile would.
    kube.kubectl("delete", "-n", ns, "deploy/alerts-worker")
    await eventually(
        lambda: replicas(kube, ns, "alerts-worker") is not None,
        timeout=30,
        interval=0.5,
        what="the deleted Deployment made again",
    )


async def test_backlog_scales_up_within_two_polls_and_delete_honours_policy(
    operator: tuple[KubeCluster, str, CliProcess], client: QueueClient, raw_redis: Redis
) -> None:
    kube, ns, proc = operator
    mq = """apiVersion: conveyor.io/v1alpha1
kind: MessageQueue
metadata: {name: bursty}
spec: {queue: bursty, minReplicas: 1, maxReplicas: 8, targetDepthPerReplica: 125,
       pollingIntervalSeconds: 1, deletionPolicy: Delete}
"""
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq)

    async def made() -> bool:
        return replicas(kube, ns, "bursty-worker") == 1

    await eventually(
        made, timeout=60, interval=0.5, what="the Deployment", detail=lambda: proc.output()[-2000:]
    )
    # One script call (at most 1,000 jobs) is atomic: no poll sees half the backlog.
    await client.enqueue_many("bursty", [{"n": i} for i in range(1_000)])
    started = time.monotonic()

    async def scaled() -> bool:
        return replicas(kube, ns, "bursty-worker") == 8

    await eventually(scaled, timeout=30, interval=0.2, what="scaled to 8")
    took = time.monotonic() - started
    assert took < 2 * 1 + 2  # two polling intervals, plus the API round trips

    async def reported() -> bool:  # the status patch follows the Deployment's
        return bool(kube.get("mq/bursty", "-n", ns)["status"].get("depth") == 1_000)

    await eventually(reported, timeout=15, interval=0.3, what="status.depth 1000")
    expected = "Scaled bursty from 1 to 8 replicas: backlog 1,000"

    metrics = _http(proc.probe_port, "/metrics")
    assert 'conveyor_operator_decisions_total{direction="up",queue="bursty"} 1.0' in metrics
    assert 'conveyor_operator_desired_replicas{queue="bursty"} 8.0' in metrics
    assert '"operator": true' in _http(proc.probe_port, "/readyz")

    async def said_why() -> bool:
        events = kube.kubectl("get", "events", "-n", ns, "--field-selector", "reason=Scaled")
        return expected in events.stdout

    await eventually(
        said_why,
        timeout=15,
        interval=0.5,
        what="the Scaled event",
        detail=lambda: (
            kube.kubectl("get", "events", "-n", ns, "-o", "wide").stdout + proc.output()[-3000:]
        ),
    )

    # Its data goes with it, so the operator holds it by a finalizer until that is done.
    assert "conveyor.io/finalizer" in kube.get("mq/bursty", "-n", ns)["metadata"]["finalizers"]
    kube.kubectl("delete", "-n", ns, "mq/bursty", "--timeout=60s")

    async def gone() -> bool:
        return replicas(kube, ns, "bursty-worker") is None and not await raw_redis.exists(
            "conveyor:{bursty}:pending"
        )

    await eventually(gone, timeout=60, interval=0.5, what="Deployment and Redis data deleted")


async def test_a_queue_polls_on_its_own_interval_and_a_shorter_one_applies_soon(
    operator: tuple[KubeCluster, str, CliProcess], client: QueueClient
) -> None:
    """One autoscaler per MessageQueue sleeps that queue's pollingIntervalSeconds: polled
    hourly, a backlog waits; shortened to 1 s, the next poll comes within the daemon's recheck
    of the live spec (5 s), not an hour later."""
    kube, ns, proc = operator
    queue = f"hourly-{uuid.uuid4().hex[:6]}"
    mq = f"""apiVersion: conveyor.io/v1alpha1
kind: MessageQueue
metadata: {{name: {queue}}}
spec: {{queue: {queue}, maxReplicas: 3, targetDepthPerReplica: 10, pollingIntervalSeconds: 3600}}
"""
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq)

    def status() -> dict[str, object]:
        return dict(kube.get(f"mq/{queue}", "-n", ns).get("status") or {})

    # The daemon's first poll, right after the Deployment exists: it writes the depth.
    await eventually(
        lambda: replicas(kube, ns, f"{queue}-worker") == 0 and status().get("depth") == 0,
        timeout=30,
        interval=0.3,
        what="the first poll of an empty queue",
        detail=lambda: proc.output()[-2000:],
    )
    await client.enqueue_many(queue, [{"n": i} for i in range(25)])
    await asyncio.sleep(3)  # a negative check: an hourly queue is not polled again yet
    assert (status().get("depth"), replicas(kube, ns, f"{queue}-worker")) == (0, 0)

    kube.kubectl(
        "patch",
        "-n",
        ns,
        f"mq/{queue}",
        "--type=merge",
        "-p",
        '{"spec": {"pollingIntervalSeconds": 1}}',
    )
    await eventually(
        lambda: replicas(kube, ns, f"{queue}-worker") == 3 and status().get("depth") == 25,
        timeout=15,
        interval=0.3,
        what="3 replicas for 25 jobs after the interval became 1 s",
        detail=lambda: f"status {status()}; {proc.output()[-2000:]}",
    )


async def test_drain_scales_down_after_cooldown_and_redis_outage_changes_nothing(
    kube: KubeCluster, crd: KubeCluster, own_redis: RedisServer
) -> None:
    ns = f"op-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    proc = start_operator(kube, ns, own_redis.url)
    try:
        mq = """apiVersion: conveyor.io/v1alpha1
kind: MessageQueue
metadata: {name: wave}
spec: {queue: wave, minReplicas: 0, maxReplicas: 4, targetDepthPerReplica: 100,
       pollingIntervalSeconds: 1, scaleDown: {stabilizationWindowSeconds: 2, cooldownSeconds: 3}}
"""
        kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq)
        async with QueueClient.from_url(own_redis.url) as client:
            await client.enqueue_many("wave", [{"n": i} for i in range(350)])

            async def up() -> bool:
                return replicas(kube, ns, "wave-worker") == 4

            await eventually(
                up, timeout=30, interval=0.3, what="scaled up", detail=lambda: proc.output()[-2000:]
            )

            async def work(job: Job) -> None:
                return None

            stop = await client.start_worker("wave", work, concurrency=50)
            await eventually(lambda: _drained(client), timeout=30, what="backlog drained")
            await stop()
            drained_at = time.monotonic()

            async def zero() -> bool:
                return replicas(kube, ns, "wave-worker") == 0

            await eventually(zero, timeout=30, interval=0.3, what="scaled to zero")
            assert time.monotonic() - drained_at >= 3 - 1  # not before the cooldown

            await client.enqueue_many("wave", [{"n": i} for i in range(150)])
            await eventually(
                lambda: replicas(kube, ns, "wave-worker") == 2,
                timeout=30,
                interval=0.3,
                what="back up for the next wave",
            )
        own_redis.stop()

        async def reported() -> bool:
            conds = {
                c["type"]: c for c in kube.get("mq/wave", "-n", ns)["status"].get("conditions", [])
            }
            return conds.get("RedisUnavailable", {}).get("status") == "True"

        await eventually(reported, timeout=30, interval=0.5, what="RedisUnavailable in status")
        await asyncio.sleep(3)  # a negative check: several polls without Redis
        assert replicas(kube, ns, "wave-worker") == 2  # kept, not flapped to zero
    finally:
        code = proc.stop()
        kube.kubectl("delete", "namespace", ns, "--wait=false")
    assert code == 0, proc.output()[-3000:]


async def _drained(client: QueueClient) -> bool:
    s = await client.queue_stats("wave")
    return s.pending == 0 and s.processing == 0


def _http(port: int, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


async def test_delete_messagequeues_waits_for_the_operator_then_lets_go(
    operator: tuple[KubeCluster, str, CliProcess],
) -> None:
    # helm uninstall stops the operator while it deletes the MessageQueues, leaving them held
    # by its finalizer (found on kind); the chart's pre-delete hook runs this first.
    kube, ns, _proc = operator
    for name in ("first", "second"):
        mq = f"""apiVersion: conveyor.io/v1alpha1
kind: MessageQueue
metadata: {{name: {name}}}
spec: {{queue: {name}, minReplicas: 1, pollingIntervalSeconds: 1}}
"""
        kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq)

    async def made() -> bool:
        return replicas(kube, ns, "first-worker") == 1 == replicas(kube, ns, "second-worker")

    await eventually(made, timeout=60, interval=0.5, what="the Deployments")
    held = kube.get("mq/first", "-n", ns)["metadata"]["finalizers"]
    assert held == ["conveyor.io/finalizer"]
    kubeconfig = str(kube.kubeconfig)
    done = await asyncio.to_thread(
        run_cli,
        "delete-messagequeues",
        "--namespace",
        ns,
        "--timeout",
        "60",
        KUBECONFIG=kubeconfig,
    )
    assert done.returncode == 0, done.stderr
    assert kube.kubectl("get", "mq", "-n", ns, "-o", "name").stdout.strip() == ""
    assert "not released" not in done.stderr  # the operator let them go, in time

    # With no operator to release it, the command lets go itself, and says so.
    other = f"orphan-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", other)
    orphan = """apiVersion: conveyor.io/v1alpha1
kind: MessageQueue
metadata: {name: orphan, finalizers: [conveyor.io/finalizer]}
spec: {queue: orphan}
"""
    kube.kubectl("apply", "-n", other, "-f", "-", stdin=orphan)
    done = await asyncio.to_thread(
        run_cli,
        "delete-messagequeues",
        "--namespace",
        other,
        "--timeout",
        "2",
        KUBECONFIG=kubeconfig,
    )
    assert done.returncode == 0, done.stderr
    assert f"MessageQueue {other}/orphan was not released by the operator" in done.stderr
    assert kube.kubectl("get", "mq", "-n", other, "-o", "name").stdout.strip() == ""
