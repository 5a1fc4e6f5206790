"""One MessageQueue per Redis queue, on a real kube-apiserver: a second MessageQueue naming a
queue another one owns (here: from another namespace, with its own operator) gets
``Ready=False``, reason ``QueueClaimed``, no Deployment, never writes the queue's policy, and
deleting it with ``deletionPolicy: Delete`` keeps the owner's jobs. Deleting the owner releases
the claim and a waiting MessageQueue takes the queue over at its next poll; a claim left by a
MessageQueue that no longer exists is taken over too."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from reliable_queue import QueueClient, QueueOwner
from tests.cluster.conftest import KubeCluster, start_operator
from tests.helpers import CliProcess, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.integration]


@pytest.fixture
def two_teams(
    kube: KubeCluster, crd: KubeCluster, redis_url: str
) -> Iterator[tuple[KubeCluster, str, str, list[CliProcess]]]:
    """Two namespaces, an operator watching each, one Redis."""
    names = [f"team-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    procs = []
    for ns in names:
        kube.kubectl("create", "namespace", ns)
        procs.append(start_operator(kube, ns, redis_url))
    yield kube, names[0], names[1], procs
    codes = [p.stop() for p in procs]
    for ns in names:
        kube.kubectl("delete", "namespace", ns, "--wait=false")
    assert codes == [0, 0], "\n".join(p.output()[-2000:] for p in procs)


def apply(kube: KubeCluster, ns: str, name: str, queue: str, **spec: Any) -> None:
    mq = {
        "apiVersion": "conveyor.io/v1alpha1",
        "kind": "MessageQueue",
        "metadata": {"name": name},
        "spec": {"queue": queue, "minReplicas": 1, "pollingIntervalSeconds": 1, **spec},
    }
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(mq))


def ready(kube: KubeCluster, ns: str, name: str) -> dict[str, str]:
    status = kube.get(f"mq/{name}", "-n", ns).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def has_deployment(kube: KubeCluster, ns: str, name: str) -> bool:
    return kube.kubectl("get", f"deploy/{name}-worker", "-n", ns, check=False).returncode == 0


async def test_a_second_claim_is_refused_and_its_delete_keeps_the_owners_jobs(
    two_teams: tuple[KubeCluster, str, str, list[CliProcess]], client: QueueClient
) -> None:
    kube, team_a, team_b, procs = two_teams
    apply(kube, team_a, "orders", "orders", concurrency=2, retry={"maxRetries": 5})

    async def owned() -> bool:
        return (
            has_deployment(kube, team_a, "orders")
            and ready(kube, team_a, "orders").get("status") == "True"
        )

    await eventually(
        owned, timeout=60, interval=0.3, what="the owner", detail=lambda: procs[0].output()[-2000:]
    )
    owner = await client.queue_owner("orders")
    assert owner is not None
    assert (owner.namespace, owner.name) == (team_a, "orders")
    await client.enqueue_many("orders", [{"n": i} for i in range(50)])

    apply(
        kube,
        team_b,
        "hijack",
        "orders",
        concurrency=9,
        retry={"maxRetries": 0},
        deletionPolicy="Delete",
    )

    async def refused() -> bool:
        return ready(kube, team_b, "hijack").get("reason") == "QueueClaimed"

    await eventually(
        refused,
        timeout=60,
        interval=0.3,
        what="QueueClaimed",
        detail=lambda: procs[1].output()[-2000:],
    )
    condition = ready(kube, team_b, "hijack")
    assert condition["status"] == "False"
    assert f"queue orders is owned by MessageQueue {team_a}/orders" in condition["message"]

    async def told() -> bool:  # kopf posts Events on its own, after or before the status
        events = kube.kubectl(
            "get", "events", "-n", team_b, "--field-selector", "reason=QueueClaimed"
        )
        return "hijack" in events.stdout

    await eventually(told, timeout=15, interval=0.3, what="the QueueClaimed event")
    await asyncio.sleep(3)  # a negative check: several polls of the refused queue change nothing
    assert not has_deployment(kube, team_b, "hijack")
    policy = await client.get_policy("orders")
    assert (policy.concurrency, policy.max_retries) == (2, 5)

    kube.kubectl("delete", "-n", team_b, "mq/hijack", "--timeout=120s")
    stats = await client.queue_stats("orders")
    assert stats.pending + stats.processing == 50  # nothing of the queue deleted
    assert (await client.get_policy("orders")).concurrency == 2
    assert owner == await client.queue_owner("orders")

    # A MessageQueue waiting for the queue gets it once the owner is deleted.
    apply(kube, team_b, "successor", "orders", concurrency=3)
    await eventually(
        refused_as(kube, team_b, "successor"), timeout=60, interval=0.3, what="successor waits"
    )
    kube.kubectl("delete", "-n", team_a, "mq/orders", "--timeout=120s")  # Retain: jobs stay

    async def taken_over() -> bool:
        return (
            has_deployment(kube, team_b, "successor")
            and ready(kube, team_b, "successor").get("status") == "True"
        )

    await eventually(
        taken_over,
        timeout=60,
        interval=0.3,
        what="the successor",
        detail=lambda: procs[1].output()[-2000:],
    )
    successor = await client.queue_owner("orders")
    assert successor is not None
    assert (successor.namespace, successor.name) == (team_b, "successor")
    assert (await client.get_policy("orders")).concurrency == 3
    assert (await client.queue_stats("orders")).pending == 50


def refused_as(kube: KubeCluster, ns: str, name: str) -> Any:
    async def check() -> bool:
        return ready(kube, ns, name).get("reason") == "QueueClaimed"

    return check


async def test_a_claim_left_by_a_messagequeue_that_is_gone_is_taken_over(
    two_teams: tuple[KubeCluster, str, str, list[CliProcess]], client: QueueClient
) -> None:
    kube, team_a, _, procs = two_teams
    # As if its owner had been deleted while Redis was down: the claim was never released.
    ghost = QueueOwner(namespace=team_a, name="ghost", uid=str(uuid.uuid4()))
    await client.claim_queue("haunted", ghost)
    apply(kube, team_a, "living", "haunted")

    async def taken() -> bool:
        return has_deployment(kube, team_a, "living")

    await eventually(
        taken, timeout=60, interval=0.3, what="taken over", detail=lambda: procs[0].output()[-2000:]
    )
    owner = await client.queue_owner("haunted")
    assert owner is not None
    assert owner.name == "living"
    assert owner.uid == kube.get("mq/living", "-n", team_a)["metadata"]["uid"]


async def test_workers_of_a_queue_that_became_anothers_scale_to_zero(
    two_teams: tuple[KubeCluster, str, str, list[CliProcess]],
    client: QueueClient,
    redis_url: str,
    raw_redis: Redis,
) -> None:
    kube, team_a, team_b, procs = two_teams
    apply(kube, team_a, "first", "contested")
    await eventually(
        lambda: replicas(kube, team_a, "first") == 1,
        timeout=60,
        interval=0.3,
        what="the first's worker at one replica",
    )
    apply(kube, team_b, "second", "contested")
    await eventually(
        refused_as(kube, team_b, "second"), timeout=60, interval=0.3, what="second refused"
    )

    # The first's operator is down when Redis forgets the claim (a flush, a restore): the
    # second, waiting, claims the queue; the first, back, must stop consuming it.
    assert procs[0].stop() == 0
    await raw_redis.delete("conveyor:{contested}:owner")
    await eventually(
        lambda: replicas(kube, team_b, "second") == 1,
        timeout=60,
        interval=0.3,
        what="the second takes the queue",
        detail=lambda: procs[1].output()[-2000:],
    )
    procs[0] = start_operator(kube, team_a, redis_url)
    await eventually(
        refused_as(kube, team_a, "first"), timeout=60, interval=0.3, what="first refused, back"
    )
    await eventually(
        lambda: replicas(kube, team_a, "first") == 0,
        timeout=60,
        interval=0.3,
        what="the first's workers at zero",
        detail=lambda: procs[0].output()[-2000:],
    )
    owner = await client.queue_owner("contested")
    assert owner is not None
    assert (owner.namespace, owner.name) == (team_b, "second")


def replicas(kube: KubeCluster, ns: str, name: str) -> int | None:
    done = kube.kubectl(
        "get", f"deploy/{name}-worker", "-n", ns, "-o", "jsonpath={.spec.replicas}", check=False
    )
    return int(done.stdout) if done.returncode == 0 and done.stdout else None
