"""The whole product on a real cluster: helm install, the default MessageQueues' workers,
a burst from a simulator pod, the operator scaling mqtt_realtime up while real worker pods
drain it (one of them killed on the way), every message accounted for, scale-down after the
cooldown, and a clean uninstall."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.kind.conftest import Kind

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]
BURST = 20_000


def wait_for(check: Callable[[], bool], what: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def replicas(kind: Kind, deployment: str) -> int:
    return int(kind.get("deployment", deployment)["spec"].get("replicas", 0))


def queue_stats(kind: Kind) -> dict[str, dict[str, int]]:
    out = kind.kubectl("exec", "deploy/conveyor-gateway", "--", "conveyor", "queues", "--json")
    stats: dict[str, dict[str, int]] = json.loads(out)["queues"]
    return stats


def test_install_scale_drain_and_uninstall(kind: Kind) -> None:
    repo, tag = kind.image.rsplit(":", 1)
    started = time.monotonic()
    kind.helm(
        "install",
        "conveyor",
        "charts/conveyor",
        "--create-namespace",
        "--wait",
        "--timeout",
        "10m",
        "--set",
        f"image.repository={repo}",
        "--set",
        f"image.tag={tag}",
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
    # Quick scaling for the test: poll every 2 s, scale down 20 s after the drain.
    patch = {
        "spec": {
            "pollingIntervalSeconds": 2,
            "scaleDown": {"stabilizationWindowSeconds": 10, "cooldownSeconds": 20},
        }
    }
    kind.kubectl("patch", "mq", "mqtt-realtime", "--type", "merge", "-p", json.dumps(patch))
    before = replicas(kind, "mqtt-realtime-worker")

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
    burst_started = time.monotonic()
    kind.timings["scale-up decision"] = wait_for(
        lambda: replicas(kind, "mqtt-realtime-worker") > before, "scale-up", 120
    )
    # Kill one worker pod mid-drain: its jobs come back after the lease.
    pods = kind.get("pods", "-l", "app.kubernetes.io/component=worker")["items"]
    victim = next(p["metadata"]["name"] for p in pods if "mqtt-realtime" in p["metadata"]["name"])
    kind.kubectl("delete", "pod", victim, "--grace-period=0", "--force")

    def drained() -> bool:
        q = queue_stats(kind)["mqtt_realtime"]
        return q["pending"] + q["processing"] + q["delayed"] == 0 and q["completed"] > 0

    wait_for(drained, "the backlog to drain", 900)
    kind.timings["drain"] = time.monotonic() - burst_started
    q = queue_stats(kind)["mqtt_realtime"]
    assert q["completed"] + q["failed"] == BURST, q  # every message accounted for

    kind.timings["scale-down"] = wait_for(
        lambda: replicas(kind, "mqtt-realtime-worker") == before, "scale-down", 300
    )
    kind.kubectl("delete", "pod", "simulator", "--wait=false")
    kind.helm("uninstall", "conveyor", "--wait")
    left = kind.kubectl("get", "all,mq", "-o", "name").split()
    assert left == [], left
