"""The whole product on a real cluster: helm install, the default MessageQueues' workers,
a burst from a simulator pod, the operator scaling mqtt_realtime up while real worker pods
drain it (one of them killed on the way), every message accounted for, scale-down after the
cooldown, and a clean uninstall."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.helpers import ROOT
from tests.kind.conftest import MOSQUITTO_IMAGE, REDIS_IMAGE, Kind

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]
BURST = 30_000


def wait_for(check: Callable[[], bool], what: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def replicas(kind: Kind, deployment: str) -> int:
    return int(kind.get("deployment", deployment)["spec"].get("replicas", 0))


def realtime(kind: Kind) -> dict[str, int]:
    out = kind.kubectl("exec", "deploy/conveyor-gateway", "--", "conveyor", "queues", "--json")
    stats: dict[str, int] = json.loads(out)["queues"].get("mqtt_realtime", {})
    return {k: stats.get(k, 0) for k in ("pending", "processing", "delayed", "completed", "failed")}


def worker_pods(kind: Kind, *, running: bool) -> list[str]:
    pods = kind.get("pods", "-l", "app.kubernetes.io/instance=mqtt-realtime")["items"]
    return [
        p["metadata"]["name"]
        for p in pods
        if not running
        or (p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"))
    ]


def test_install_scale_drain_and_uninstall(kind: Kind) -> None:
    # hack/kind/values.yaml (the offline node: local images, no volume provisioner), with the
    # images this run loaded.
    values = {
        "image.repository": kind.image.rsplit(":", 1)[0],
        "image.tag": kind.image.rsplit(":", 1)[1],
        "redis.image.repository": REDIS_IMAGE.rsplit(":", 1)[0],
        "redis.image.tag": REDIS_IMAGE.rsplit(":", 1)[1],
        "mqtt.image.repository": MOSQUITTO_IMAGE.rsplit(":", 1)[0],
        "mqtt.image.tag": MOSQUITTO_IMAGE.rsplit(":", 1)[1],
    }
    sets = [arg for key, value in values.items() for arg in ("--set-string", f"{key}={value}")]
    started = time.monotonic()
    kind.helm(
        "install",
        "conveyor",
        str(ROOT / "charts/conveyor"),
        "--create-namespace",
        "--wait",
        "--timeout",
        "10m",
        "-f",
        str(ROOT / "hack/kind/values.yaml"),
        *sets,
    )
    kind.timings["helm install"] = time.monotonic() - started

    workers = ["alerts-worker", "mqtt-realtime-worker", "mqtt-spc-worker", "mqtt-tech-worker"]
    wait_for(
        lambda: all(
            kind.kubectl("get", "deployment", w, check=False).strip() != "" for w in workers
        ),
        "the operator to create the four worker Deployments",
        120,
    )
    kind.kubectl(
        "wait", "--for=condition=Available", "deployment/mqtt-realtime-worker", "--timeout=300s"
    )
    # Unlimited, one worker here drains as fast as two ingestors fill (there is no InfluxDB to
    # wait for), so each worker pod gets a fifth of a core, as a worker pod sized for its
    # share of a node would; and the queue starts from zero pods, as one that scales to zero
    # when idle. A burst then builds a backlog, the operator scales up, real pods drain it.
    # Quick polling and cooldown for the test.
    patch = {
        "spec": {
            "minReplicas": 0,
            "maxReplicas": 4,
            "targetDepthPerReplica": 1000,
            "pollingIntervalSeconds": 2,
            "scaleDown": {"stabilizationWindowSeconds": 10, "cooldownSeconds": 20},
            "worker": {
                "resources": {
                    "requests": {"cpu": "50m", "memory": "96Mi"},
                    "limits": {"cpu": "200m", "memory": "256Mi"},
                }
            },
        }
    }
    kind.kubectl("patch", "mq", "mqtt-realtime", "--type", "merge", "-p", json.dumps(patch))
    wait_for(lambda: replicas(kind, "mqtt-realtime-worker") == 0, "scale to zero", 180)

    kind.kubectl(
        "run",
        "simulator",
        "--image",
        kind.image,
        "--restart",
        "Never",
        "--image-pull-policy",
        "IfNotPresent",
        "--env",
        "MQTT_BROKER_URL=mqtt://conveyor-mosquitto:1883",
        "--",
        "simulate",
        "--burst",
        str(BURST),
        "--duration",
        "0",
    )
    wait_for(lambda: realtime(kind)["pending"] > 0, "the burst to reach the queue", 120)
    backlog_seen = time.monotonic()
    kind.timings["scale-up decision"] = wait_for(
        lambda: replicas(kind, "mqtt-realtime-worker") > 0, "scale-up", 60
    )

    # Kill a worker pod mid-burst: the jobs it held come back after their lease.
    def running_pod() -> bool:
        return bool(worker_pods(kind, running=True))

    wait_for(running_pod, "a running mqtt-realtime worker pod", 120)
    victim = worker_pods(kind, running=True)[0]
    kind.kubectl("delete", "pod", victim, "--grace-period=0", "--force")
    q = realtime(kind)
    publishing = kind.get("pod", "simulator")["status"]["phase"] in ("Pending", "Running")
    assert publishing or q["pending"] + q["processing"] > 0, f"killed after the drain: {q}"

    peak = [0]
    empty_since: dict[str, float] = {}

    def drained() -> bool:
        # Until the simulator is done the queue may be momentarily empty between arrivals.
        peak[0] = max(peak[0], replicas(kind, "mqtt-realtime-worker"))
        if kind.get("pod", "simulator")["status"]["phase"] != "Succeeded":
            return False
        q = realtime(kind)
        if q["pending"] + q["processing"] + q["delayed"]:
            empty_since.clear()
            return False
        # Empty: done once every job is in, or when nothing more comes for 10 s (then the
        # count below tells what went missing).
        empty_since.setdefault("at", time.monotonic())
        return q["completed"] + q["failed"] >= BURST or time.monotonic() - empty_since["at"] > 10

    wait_for(drained, f"{BURST} jobs completed or dead-lettered", 900)
    kind.timings["drain"] = time.monotonic() - backlog_seen
    q = realtime(kind)
    assert q["completed"] + q["failed"] == BURST, q  # every message accounted for
    assert peak[0] > 1, "the backlog was drained without scaling beyond one pod"
    kind.notes.append(
        f"mqtt_realtime: {BURST} published, {q['completed']} completed, {q['failed']} dead, "
        f"peak {peak[0]} replicas, pod {victim} killed mid-burst"
    )

    kind.timings["scale-down"] = wait_for(
        lambda: replicas(kind, "mqtt-realtime-worker") == 0, "scale-down", 300
    )
    kind.kubectl("delete", "pod", "simulator", "--wait=false")
    started = time.monotonic()
    kind.helm("uninstall", "conveyor", "--wait")
    # helm deletes the Deployments; their pods end on their own (graceful drain) shortly after.
    kept_by_kubernetes = ("configmap/kube-root-ca.crt", "serviceaccount/default")

    def left() -> list[str]:
        names = kind.kubectl("get", "all,mq,cm,secret,pvc,sa,job", "-o", "name").split()
        return [x for x in names if x not in kept_by_kubernetes]

    try:
        wait_for(lambda: left() == [], "nothing left after uninstall", 180)
    except AssertionError:
        raise AssertionError(f"left after helm uninstall: {left()}") from None
    kind.timings["helm uninstall"] = time.monotonic() - started
