"""The operator keeps each queue's whole policy as its MessageQueue says, on a real kube-apiserver
with a real Redis: retries, lease, timeout and retention come back on the next poll after Redis
loses its data, and a hand change with ``conveyor policy`` to a managed queue is reverted, with
an Event; ``spec.timeoutSeconds`` is bounded by the CRD's schema."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from reliable_queue import QueueClient, QueuePolicy
from tests.cluster.conftest import KubeCluster, start_operator
from tests.helpers import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.integration]


@pytest.fixture
def namespace(kube: KubeCluster, crd: KubeCluster) -> Iterator[str]:
    ns = f"op-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    yield ns
    kube.kubectl("delete", "namespace", ns, "--wait=false")


def mq(name: str, **spec: object) -> str:
    return json.dumps(
        {
            "apiVersion": "conveyor.io/v1alpha1",
            "kind": "MessageQueue",
            "metadata": {"name": name},
            "spec": {"queue": name, **spec},
        }
    )


async def test_the_whole_policy_comes_back_after_redis_loses_it_or_a_person_changes_it(
    kube: KubeCluster, namespace: str, redis_url: str, client: QueueClient, raw_redis: Redis
) -> None:
    ns = namespace
    proc = start_operator(kube, ns, redis_url)
    spec = {
        "minReplicas": 1,
        "pollingIntervalSeconds": 1,
        "retry": {
            "maxRetries": 7,
            "backoffBaseSeconds": 1,
            "backoffFactor": 3,
            "outageSeconds": 120,
        },
        "leaseSeconds": 12,
        "timeoutSeconds": 45,
        "retention": {"deadLetters": {"maxCount": 50}},
    }
    expected = QueuePolicy(
        concurrency=1,
        max_retries=7,
        backoff_base_s=1,
        backoff_factor=3,
        outage_max_s=120,
        lease_s=12,
        timeout_s=45,
        dead_max_count=50,
    )

    async def as_specified() -> bool:
        return await client.get_policy("kept") == expected

    try:
        kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq("kept", **spec))
        await eventually(
            as_specified,
            timeout=30,
            interval=0.2,
            what="policy",
            detail=lambda: proc.output()[-2000:],
        )

        await raw_redis.flushall()  # a Redis restarted without its data
        lost = time.monotonic()
        await eventually(as_specified, timeout=10, interval=0.1, what="policy back after FLUSHALL")
        assert time.monotonic() - lost < 1 + 2  # the next poll, plus the API round trips

        async def claimed() -> bool:  # by the same poll, or by the next one when the flush
            return await client.queue_owner("kept") is not None  # fell between the two writes

        await eventually(claimed, timeout=5, interval=0.1, what="the claim made again")

        await client.set_policy("kept", lease_s=99, timeout_s=None, max_retries=0)
        await eventually(as_specified, timeout=10, interval=0.1, what="hand change reverted")

        async def said_so() -> bool:
            events = kube.kubectl(
                "get", "events", "-n", ns, "--field-selector", "reason=PolicyRestored"
            )
            return "max_retries, lease_s, timeout_s differed in Redis" in events.stdout

        await eventually(said_so, timeout=10, interval=0.3, what="the PolicyRestored event")
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "spec.timeoutSeconds in body should be greater than or equal to 1"),
        (86_401, "spec.timeoutSeconds in body should be less than or equal to 86400"),
        ("soon", 'spec.timeoutSeconds in body must be of type integer: "string"'),
    ],
)
def test_timeout_seconds_outside_its_bounds_is_refused_by_the_api(
    kube: KubeCluster, namespace: str, value: object, message: str
) -> None:
    bad = mq("bad", timeoutSeconds=value)
    done = kube.kubectl("apply", "-n", namespace, "-f", "-", stdin=bad, check=False)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    good = kube.kubectl("apply", "-n", namespace, "-f", "-", stdin=mq("good", timeoutSeconds=30))
    assert good.returncode == 0
