"""The operator beyond the happy path, on a real kube-apiserver with a real Redis: a spec the
API refuses is reported in status (and recovers when fixed); a concurrency change in the spec
reaches a running ``conveyor work`` without a restart; an HA pair keeps one leader and the
standby takes over when the leader dies."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest

from reliable_queue import QueueClient
from tests.cluster.conftest import KubeCluster, start_operator
from tests.cluster.test_operator_on_a_real_api import replicas
from tests.helpers import ROOT, CliProcess, eventually, start_cli
from tests.servers import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
PEERING_CRD = ROOT / "charts" / "conveyor" / "crds" / "kopf.dev_peerings.yaml"


@pytest.fixture
def namespace(kube: KubeCluster, crd: KubeCluster) -> Iterator[str]:
    ns = f"op-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    yield ns
    kube.kubectl("delete", "namespace", ns, "--wait=false")


def conditions(kube: KubeCluster, ns: str, name: str) -> dict[str, dict[str, str]]:
    status = kube.get(f"mq/{name}", "-n", ns).get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or []}


def mq(name: str, queue: str, **spec: object) -> str:
    return json.dumps(
        {
            "apiVersion": "conveyor.io/v1alpha1",
            "kind": "MessageQueue",
            "metadata": {"name": name},
            "spec": {"queue": queue, "minReplicas": 1, "pollingIntervalSeconds": 1, **spec},
        }
    )


@pytest.mark.parametrize(
    ("worker", "message", "env"),
    [
        # Free-form in the CRD; the operator checks it before applying.
        (
            {"resources": {"requests": {"cpu": "lots"}}},
            "spec.worker.resources.requests.cpu: 'lots' is not a quantity",
            {},
        ),
        # Only the API's Deployment validation knows this one (422 on apply), once the
        # installer allows the value.
        (
            {"nodeSelector": {"kubernetes.io/os": "linux or windows"}},
            'the API refused it: Deployment.apps "bad-worker" is invalid',
            {"OPERATOR_ALLOWED_NODE_SELECTORS": '{"kubernetes.io/os": ["linux or windows"]}'},
        ),
    ],
)
async def test_a_spec_that_cannot_run_is_reported_in_status(
    kube: KubeCluster,
    namespace: str,
    redis_url: str,
    worker: object,
    message: str,
    env: dict[str, str],
) -> None:
    ns = namespace
    proc = start_operator(kube, ns, redis_url, **env)
    try:
        kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq("bad", "bad", worker=worker))

        async def reported() -> bool:
            ready = conditions(kube, ns, "bad").get("Ready", {})
            return ready.get("reason") == "InvalidSpec"

        await eventually(
            reported,
            timeout=30,
            interval=0.5,
            what="InvalidSpec",
            detail=lambda: proc.output()[-2000:],
        )
        ready = conditions(kube, ns, "bad")["Ready"]
        assert ready["status"] == "False"
        assert message in ready["message"]
        assert replicas(kube, ns, "bad-worker") is None

        async def told() -> bool:  # kopf posts Events on its own, after or before the status
            return "InvalidSpec" in kube.kubectl("get", "events", "-n", ns, "-o", "json").stdout

        await eventually(told, timeout=15, interval=0.3, what="the InvalidSpec event")

        fixed = {"worker": {"resources": {"requests": {"cpu": "100m"}}, "nodeSelector": None}}
        kube.kubectl("patch", "-n", ns, "mq/bad", "--type=merge", "-p", json.dumps({"spec": fixed}))

        async def recovered() -> bool:
            return conditions(kube, ns, "bad").get("Ready", {}).get("status") == "True"

        await eventually(recovered, timeout=30, interval=0.5, what="Ready once fixed")
        assert replicas(kube, ns, "bad-worker") == 1
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]


async def test_concurrency_in_the_spec_reaches_a_running_worker(
    kube: KubeCluster, namespace: str, redis_url: str
) -> None:
    ns = namespace
    proc = start_operator(kube, ns, redis_url)
    probe = free_port()
    worker = start_cli(
        "work",
        "--queue",
        "lines",
        "--handler",
        "tests.queue.handlers:record",
        redis_url=redis_url,
        PROBE_PORT=str(probe),
    )
    pid = worker.proc.pid

    def concurrency() -> float | None:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{probe}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        found = re.search(r'conveyor_worker_concurrency\{queue="lines"\} (\S+)', text)
        return float(found.group(1)) if found else None

    try:
        kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq("lines", "lines", concurrency=2))

        async def at(n: int) -> bool:
            return concurrency() == n

        await eventually(lambda: at(2), timeout=30, interval=0.3, what="concurrency 2")
        kube.kubectl(
            "patch", "-n", ns, "mq/lines", "--type=merge", "-p", '{"spec": {"concurrency": 9}}'
        )
        await eventually(lambda: at(9), timeout=30, interval=0.3, what="concurrency 9, live")
        assert worker.returncode is None
        assert worker.proc.pid == pid  # the same process: no restart

        async def status_says_9() -> bool:
            return bool(kube.get("mq/lines", "-n", ns)["status"].get("concurrency") == 9)

        await eventually(status_says_9, timeout=10, what="status.concurrency 9")
        assert concurrency() == 9  # no stale poll of the old spec put 2 back
    finally:
        assert worker.stop() == 0, worker.output()[-2000:]
        assert proc.stop() == 0, proc.output()[-3000:]


async def test_an_ha_pair_keeps_one_leader_and_the_standby_takes_over(
    kube: KubeCluster, namespace: str, redis_url: str
) -> None:
    ns = namespace
    kube.install_crd(PEERING_CRD)
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering"}
    peering["metadata"] = {"name": "conveyor-operator"}  # type: ignore[assignment]
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(peering))
    common = {"OPERATOR_PEERING": "true", "OPERATOR_PEERING_LIFETIME_S": "6"}
    # Each starts paused (peering is mandatory) and resumes when it sees no peer above it; two
    # started at the very same moment may both run for a second before one yields (kopf).
    resuming = "Resuming operations after the pause"
    leader = start_operator(kube, ns, redis_url, OPERATOR_PRIORITY="200", POD_ID="leader", **common)
    standby: CliProcess | None = None
    try:

        async def leading() -> bool:
            return resuming in leader.output()

        await eventually(leading, timeout=30, interval=0.3, what="the leader resumes")
        standby = start_operator(
            kube, ns, redis_url, OPERATOR_PRIORITY="100", POD_ID="standby", **common
        )

        async def standing_by() -> bool:  # its keep-alive is in the record it watches
            record = kube.get("kopfpeering/conveyor-operator", "-n", ns)
            return "standby" in (record.get("status") or {})

        await eventually(standing_by, timeout=30, interval=0.3, what="the standby in the peering")
        kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq("first", "first"))
        await eventually(
            lambda: replicas(kube, ns, "first-worker") == 1,
            timeout=30,
            interval=0.3,
            what="the leader makes the Deployment",
        )
        assert resuming not in standby.output()

        leader.kill()  # no goodbye: the standby must notice the lapsed lease
        kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq("second", "second"))

        async def resumed() -> bool:
            return replicas(kube, ns, "second-worker") == 1

        await eventually(
            resumed,
            timeout=60,
            interval=0.5,
            what="the standby takes over",
            detail=lambda: standby.output()[-3000:],
        )
        assert resuming in standby.output()
    finally:
        if leader.returncode is None:
            leader.stop()
        if standby is not None:
            assert standby.stop() == 0, standby.output()[-3000:]


async def test_with_max_concurrency_a_backlog_raises_concurrency_before_replicas(
    kube: KubeCluster, namespace: str, redis_url: str
) -> None:
    ns = namespace
    proc = start_operator(kube, ns, redis_url)
    spec = {
        "concurrency": 2,
        "maxConcurrency": 8,
        "maxReplicas": 10,
        "targetDepthPerReplica": 100,
        "scaleDown": {"stabilizationWindowSeconds": 2, "cooldownSeconds": 60},
    }
    try:
        kube.kubectl("apply", "-n", ns, "-f", "-", stdin=mq("dense", "dense", **spec))
        await eventually(
            lambda: replicas(kube, ns, "dense-worker") == 1,
            timeout=30,
            interval=0.3,
            what="one replica",
        )
        async with QueueClient.from_url(redis_url) as client:
            # One script call (at most 1,000 jobs) is atomic: no poll sees half the backlog.
            await client.enqueue_many("dense", [{"n": i} for i in range(1_000)])

            async def dense() -> bool:
                policy = await client.get_policy("dense")
                return policy.concurrency == 7 and replicas(kube, ns, "dense-worker") == 3

            # 1,000 / 100 = 10 replicas' worth at concurrency 2 = 20 slots: 3 replicas at 7
            # rather than 10 replicas at 2.
            await eventually(
                dense,
                timeout=30,
                interval=0.3,
                what="3 replicas at concurrency 7",
                detail=lambda: proc.output()[-3000:],
            )

            # The status patch and the Event follow the policy write; on a slow machine the
            # decision may also pass through a concurrency between 2 and 7.
            async def reported() -> bool:
                status = kube.get("mq/dense", "-n", ns)["status"].get("concurrency")
                events = kube.kubectl("get", "events", "-n", ns, "-o", "json").stdout
                said = re.search(r"Set concurrency of dense from [2-6] to 7 \(at most 8\)", events)
                return status == 7 and said is not None

            await eventually(reported, timeout=15, interval=0.3, what="status and Event say 7")

            # Drained by a worker process, as in a pod, that follows the live concurrency.
            worker = start_cli(
                "work",
                "--queue",
                "dense",
                "--handler",
                "tests.queue.handlers:record",
                redis_url=redis_url,
            )
            try:

                async def relaxed() -> bool:
                    return (await client.get_policy("dense")).concurrency == 2

                await eventually(relaxed, timeout=60, interval=0.5, what="back to concurrency 2")
            finally:
                assert worker.stop() == 0, worker.output()[-2000:]
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]
