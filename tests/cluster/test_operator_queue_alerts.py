"""Queue alerts on a real kube-apiserver, with a real Redis and `conveyor operator`: a backlog
above spec.alerts.maxDepth for its `for` becomes a Warning Event (QueueDepthHigh), the Alerting
condition, the operator's gauge, and a `queue_depth` alert job on the alerts queue beside the
machines' alerts; once the backlog drains, a Normal AlertResolved Event, the condition False
and a resolve alert."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from reliable_queue import Job, QueueClient
from tests.cluster.conftest import KubeCluster
from tests.helpers import CliProcess, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.integration]


def alerting(kube: KubeCluster, ns: str, name: str) -> dict[str, Any]:
    status = kube.get(f"mq/{name}", "-n", ns).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Alerting"), {})


def metrics(proc: CliProcess) -> str:
    answer = proc.probe("/metrics")
    assert answer is not None, "the operator's /metrics does not answer"
    return answer[1]


def events(kube: KubeCluster, ns: str, reason: str) -> str:
    return kube.kubectl("get", "events", "-n", ns, "--field-selector", f"reason={reason}").stdout


async def test_a_deep_queue_alerts_then_resolves(
    operator: tuple[KubeCluster, str, CliProcess], client: QueueClient
) -> None:
    kube, ns, proc = operator
    queue = f"orders-{uuid.uuid4().hex[:4]}"
    mq = f"""apiVersion: conveyor.io/v1alpha1
kind: MessageQueue
metadata: {{name: orders}}
spec:
  queue: {queue}
  minReplicas: 1
  pollingIntervalSeconds: 1
  alerts:
    maxDepth: {{threshold: 100, for: 2s}}
"""
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq)
    debug = lambda: proc.output()[-3000:] + kube.kubectl("get", "events", "-n", ns).stdout  # noqa: E731
    await eventually(
        lambda: alerting(kube, ns, "orders").get("status") == "False",
        timeout=60,
        interval=0.5,
        what="the Alerting condition, False while the queue is empty",
        detail=debug,
    )
    await client.enqueue_many(queue, [{"n": i} for i in range(500)])  # no pod runs here
    crossed = time.monotonic()
    await eventually(
        lambda: "QueueDepthHigh" in events(kube, ns, "QueueDepthHigh"),
        timeout=30,
        interval=0.3,
        what="the QueueDepthHigh Event",
        detail=debug,
    )
    assert time.monotonic() - crossed >= 2, "fired before the threshold held for its `for`"
    condition = alerting(kube, ns, "orders")
    assert (condition["status"], condition["reason"]) == ("True", "QueueDepthHigh")
    assert "pending jobs: 500" in condition["message"]
    assert "pending jobs 500 above the threshold 100 for 2s" in events(kube, ns, "QueueDepthHigh")

    gauge = f'conveyor_operator_queue_alerting{{queue="{queue}",type="queue_depth"}}'
    assert f"{gauge} 1.0" in metrics(proc)

    seen: list[Job] = []

    async def take(job: Job) -> None:  # this queue's alerts (the Redis is the suite's)
        if job.data.get("machine") == f"queue/{queue}":
            seen.append(job)

    stop = await client.start_worker("alerts", take)
    await eventually(lambda: len(seen) == 1, timeout=15, what="the queue alert job")
    alert = seen[0].data
    assert (alert["type"], alert["severity"], alert["machine"]) == (
        "queue_depth",
        "warning",
        f"queue/{queue}",
    )
    assert alert["details"]["state"] == "firing"
    assert alert["details"]["messagequeue"] == f"{ns}/orders"
    assert (alert["details"]["value"], alert["details"]["threshold"]) == (500, 100)

    # Drained: the backlog goes, the alert resolves.
    drained: list[Job] = []

    async def drain(job: Job) -> None:
        drained.append(job)

    stop_drain = await client.start_worker(queue, drain, concurrency=50)
    await eventually(lambda: len(drained) == 500, timeout=30, what="the backlog drained")
    await stop_drain()
    await eventually(
        lambda: "resolved: pending jobs" in events(kube, ns, "AlertResolved"),
        timeout=30,
        interval=0.3,
        what="the AlertResolved Event",
        detail=debug,
    )
    await eventually(lambda: len(seen) == 2, timeout=15, what="the resolve alert job")
    await stop()
    resolve = seen[1].data
    assert (resolve["type"], resolve["severity"], resolve["details"]["state"]) == (
        "queue_depth",
        "info",
        "resolved",
    )
    assert alerting(kube, ns, "orders")["status"] == "False"
    assert f"{gauge} 0.0" in metrics(proc)
