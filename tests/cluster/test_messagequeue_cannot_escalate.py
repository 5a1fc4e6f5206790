"""A MessageQueue cannot escalate, on a real kube-apiserver with an operator that holds a Redis
password: a foreign image, a handler from a module the installer did not list (``antigravity``
runs ``$BROWSER`` on import), a toleration, node selector or priority class the installer did
not allow, or maxReplicas above the ceiling gets ``Ready=False``, reason ``InvalidSpec``, and no
Deployment (and a running queue switched to one keeps its workers as they were); what the installer
allows runs. Worker pods run as the worker ServiceAccount without a token,
carry the release's label and get a PodDisruptionBudget; and no Deployment, ReplicaSet, Pod or
ConfigMap holds the Redis password, only a reference to its Secret."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from reliable_queue import QueueClient
from tests.cluster.conftest import KubeCluster, start_operator
from tests.helpers import CliProcess, eventually
from tests.servers import RedisServer, require_binary

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

PASSWORD = f"pl4nt-{uuid.uuid4().hex}"
EVIL = "registry.example.com/team-evil/miner:1"
ALLOWED = "registry.example.com/team/app:1"
TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "conveyor", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = require_binary("redis-server", install="apt-get install redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("locked-redis")).start()
    with redis.Redis(host="127.0.0.1", port=server.port) as r:
        r.config_set("requirepass", PASSWORD)
    yield server
    server.stop(kill=True)


@pytest.fixture(scope="module")
def guarded(
    kube: KubeCluster, crd: KubeCluster, locked_redis: RedisServer
) -> Iterator[tuple[KubeCluster, str, CliProcess]]:
    """An operator with a password, the chart's env and an installer's allowances."""
    ns = f"esc-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    kube.kubectl("create", "serviceaccount", "conveyor-worker", "-n", ns)
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "conveyor-redis",
        "-n",
        ns,
        f"--from-literal=redis-password={PASSWORD}",
    )
    proc = start_operator(
        kube,
        ns,
        locked_redis.url,
        REDIS_PASSWORD=PASSWORD,
        OPERATOR_REDIS_SECRET="conveyor-redis",
        OPERATOR_REDIS_SECRET_KEY="redis-password",
        OPERATOR_RELEASE="plant",
        OPERATOR_WORKER_SERVICE_ACCOUNT="conveyor-worker",
        OPERATOR_IMAGE_PULL_SECRETS='[{"name": "regcred"}]',
        OPERATOR_ALLOWED_IMAGES='["registry.example.com/team/"]',
        OPERATOR_ALLOWED_HANDLERS='["plant."]',
        OPERATOR_ALLOWED_TOLERATIONS=json.dumps([TOLERATION]),
        OPERATOR_ALLOWED_NODE_SELECTORS='{"topology.kubernetes.io/zone": ["a"]}',
        OPERATOR_ALLOWED_PRIORITY_CLASSES='["conveyor-alerts"]',
        OPERATOR_MAX_REPLICAS_CEILING="20",
    )
    yield kube, ns, proc
    code = proc.stop()
    kube.kubectl("delete", "namespace", ns, "--wait=false")
    assert code == 0, proc.output()[-3000:]


def apply(kube: KubeCluster, ns: str, name: str, **spec: Any) -> None:
    mq = {
        "apiVersion": "conveyor.io/v1alpha1",
        "kind": "MessageQueue",
        "metadata": {"name": name},
        "spec": {"queue": f"{name}-{uuid.uuid4().hex[:6]}", "pollingIntervalSeconds": 1, **spec},
    }
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(mq))


def ready(kube: KubeCluster, ns: str, name: str) -> dict[str, str]:
    status = kube.get(f"mq/{name}", "-n", ns).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def exists(kube: KubeCluster, ns: str, what: str) -> bool:
    return kube.kubectl("get", what, "-n", ns, check=False).returncode == 0


async def invalid(guarded: tuple[KubeCluster, str, CliProcess], name: str) -> str:
    """Wait for Ready=False, reason InvalidSpec; its message."""
    kube, ns, proc = guarded

    async def reported() -> bool:
        return ready(kube, ns, name).get("reason") == "InvalidSpec"

    await eventually(
        reported, timeout=30, interval=0.3, what="InvalidSpec", detail=lambda: proc.output()[-2000:]
    )
    condition = ready(kube, ns, name)
    assert condition["status"] == "False"
    assert not exists(kube, ns, f"deploy/{name}-worker")
    assert not exists(kube, ns, f"pdb/{name}-worker")
    return condition["message"]


async def deployed(guarded: tuple[KubeCluster, str, CliProcess], name: str) -> dict[str, Any]:
    kube, ns, proc = guarded

    async def made() -> bool:
        return exists(kube, ns, f"deploy/{name}-worker")

    await eventually(
        made, timeout=30, interval=0.3, what="the Deployment", detail=lambda: proc.output()[-2000:]
    )
    return dict(kube.get(f"deploy/{name}-worker", "-n", ns))


async def test_a_foreign_image_gets_no_deployment_and_an_allowed_prefix_runs(
    guarded: tuple[KubeCluster, str, CliProcess],
) -> None:
    kube, ns, _ = guarded
    apply(kube, ns, "foreign", worker={"image": EVIL})
    message = await invalid(guarded, "foreign")
    assert f"spec.worker.image '{EVIL}' is not allowed" in message
    assert "chart value operator.allowedImages" in message

    apply(kube, ns, "allowed", minReplicas=1, worker={"image": ALLOWED})
    deploy = await deployed(guarded, "allowed")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == ALLOWED

    # Switching a running queue to a foreign image is refused; its workers keep their image.
    kube.kubectl(
        "patch",
        "-n",
        ns,
        "mq/allowed",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"worker": {"image": EVIL}}}),
    )

    async def refused() -> bool:
        return ready(kube, ns, "allowed").get("reason") == "InvalidSpec"

    await eventually(refused, timeout=30, interval=0.3, what="InvalidSpec after the switch")
    deploy = kube.get("deploy/allowed-worker", "-n", ns)
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == ALLOWED


async def test_a_handler_runs_only_from_the_installers_modules(
    guarded: tuple[KubeCluster, str, CliProcess],
) -> None:
    kube, ns, _ = guarded
    apply(kube, ns, "gadget", worker={"handler": "antigravity:geohash"})
    message = await invalid(guarded, "gadget")
    assert "spec.worker.handler 'antigravity:geohash' is not allowed" in message
    assert "workers run modules under ['plant.']" in message
    assert "chart value operator.allowedHandlers" in message

    apply(kube, ns, "own-handler", worker={"handler": "plant.energy:handle"})
    deploy = await deployed(guarded, "own-handler")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--handler", "plant.energy:handle"]

    # Switching a running queue to a gadget is refused; its workers keep their handler.
    patch = {"spec": {"worker": {"handler": "antigravity:geohash"}}}
    kube.kubectl("patch", "-n", ns, "mq/own-handler", "--type=merge", "-p", json.dumps(patch))

    async def refused() -> bool:
        return ready(kube, ns, "own-handler").get("reason") == "InvalidSpec"

    await eventually(refused, timeout=30, interval=0.3, what="InvalidSpec after the switch")
    deploy = kube.get("deploy/own-handler-worker", "-n", ns)
    assert deploy["spec"]["template"]["spec"]["containers"][0]["args"] == args


async def test_tolerations_and_node_selectors_only_as_the_installer_allows(
    guarded: tuple[KubeCluster, str, CliProcess],
) -> None:
    kube, ns, _ = guarded
    control_plane = {
        "key": "node-role.kubernetes.io/control-plane",
        "operator": "Exists",
        "effect": "NoSchedule",
    }
    apply(kube, ns, "onto-control-plane", worker={"tolerations": [control_plane]})
    message = await invalid(guarded, "onto-control-plane")
    assert "spec.worker.tolerations[0]" in message
    assert "chart value worker.allowedTolerations" in message

    apply(kube, ns, "zone-b", worker={"nodeSelector": {"topology.kubernetes.io/zone": "b"}})
    message = await invalid(guarded, "zone-b")
    assert "spec.worker.nodeSelector topology.kubernetes.io/zone=b is not allowed" in message
    assert "chart value worker.allowedNodeSelectors" in message

    apply(
        kube,
        ns,
        "placed",
        worker={"tolerations": [TOLERATION], "nodeSelector": {"topology.kubernetes.io/zone": "a"}},
    )
    pod = (await deployed(guarded, "placed"))["spec"]["template"]["spec"]
    assert pod["tolerations"] == [TOLERATION]
    assert pod["nodeSelector"] == {"topology.kubernetes.io/zone": "a"}


async def test_a_priority_class_only_as_the_installer_allows(
    guarded: tuple[KubeCluster, str, CliProcess],
) -> None:
    kube, ns, _ = guarded
    apply(kube, ns, "preempting", worker={"priorityClassName": "system-node-critical"})
    message = await invalid(guarded, "preempting")
    assert "spec.worker.priorityClassName 'system-node-critical' is not allowed" in message
    assert "chart value worker.allowedPriorityClasses: ['conveyor-alerts']" in message

    apply(kube, ns, "urgent", worker={"priorityClassName": "conveyor-alerts"})
    pod = (await deployed(guarded, "urgent"))["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "conveyor-alerts"


async def test_max_replicas_above_the_ceiling_gets_no_deployment(
    guarded: tuple[KubeCluster, str, CliProcess],
) -> None:
    kube, ns, _ = guarded
    apply(kube, ns, "greedy", maxReplicas=21)
    message = await invalid(guarded, "greedy")
    assert "spec.maxReplicas 21 is above the ceiling of 20" in message
    assert "chart value operator.maxReplicasCeiling" in message
    kube.kubectl(
        "patch", "-n", ns, "mq/greedy", "--type=merge", "-p", '{"spec": {"maxReplicas": 20}}'
    )
    await deployed(guarded, "greedy")


async def test_worker_pods_have_their_own_identity_label_and_disruption_budget(
    guarded: tuple[KubeCluster, str, CliProcess],
) -> None:
    kube, ns, _ = guarded
    apply(kube, ns, "ident", minReplicas=2)
    deploy = await deployed(guarded, "ident")
    template = deploy["spec"]["template"]
    assert template["spec"]["serviceAccountName"] == "conveyor-worker"
    assert template["spec"]["automountServiceAccountToken"] is False
    assert template["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert template["metadata"]["labels"]["conveyor.io/release"] == "plant"

    async def budget() -> bool:
        return exists(kube, ns, "pdb/ident-worker")

    await eventually(budget, timeout=30, interval=0.3, what="the PodDisruptionBudget")
    pdb = kube.get("pdb/ident-worker", "-n", ns)
    mq_uid = kube.get("mq/ident", "-n", ns)["metadata"]["uid"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deploy["spec"]["selector"]
    [owner] = pdb["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("MessageQueue", mq_uid, True)

    selector = ",".join(f"{k}={v}" for k, v in deploy["spec"]["selector"]["matchLabels"].items())

    async def pods() -> bool:
        return len(kube.get("pods", "-n", ns, "-l", selector)["items"]) == 2

    await eventually(pods, timeout=60, interval=0.5, what="two worker pods")
    for pod in kube.get("pods", "-n", ns, "-l", selector)["items"]:
        assert pod["spec"]["serviceAccountName"] == "conveyor-worker"
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert pod["metadata"]["labels"]["conveyor.io/release"] == "plant"
        assert not any(v.get("projected") for v in pod["spec"].get("volumes") or [])  # no token


async def test_no_object_holds_the_redis_password(
    guarded: tuple[KubeCluster, str, CliProcess], locked_redis: RedisServer
) -> None:
    kube, ns, proc = guarded
    apply(kube, ns, "secretive", minReplicas=1, concurrency=4)
    deploy = await deployed(guarded, "secretive")
    queue = kube.get("mq/secretive", "-n", ns)["spec"]["queue"]
    selector = ",".join(f"{k}={v}" for k, v in deploy["spec"]["selector"]["matchLabels"].items())

    async def replicaset() -> bool:
        return bool(kube.get("rs", "-n", ns, "-l", selector)["items"])

    await eventually(replicaset, timeout=60, interval=0.5, what="the ReplicaSet")
    # The operator did use the password: the policy reached the locked Redis.
    url = locked_redis.url.replace("redis://", f"redis://:{PASSWORD}@")
    async with QueueClient.from_url(url) as client:

        async def policy_written() -> bool:  # after the Deployment
            return (await client.get_policy(queue)).concurrency == 4

        await eventually(policy_written, timeout=15, interval=0.3, what="concurrency 4 in Redis")

    everything = kube.kubectl("get", "deploy,rs,pods,cm,pdb,mq,events", "-A", "-o", "json").stdout
    assert len(json.loads(everything)["items"]) > 5
    assert PASSWORD not in everything
    assert base64.b64encode(PASSWORD.encode()).decode() not in everything
    assert PASSWORD not in proc.output()
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"] == {
        "name": "REDIS_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "conveyor-redis", "key": "redis-password"}},
    }
    assert "@" not in env["REDIS_URL"]["value"]
