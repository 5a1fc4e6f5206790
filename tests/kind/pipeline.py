"""The release the kind suites install and what they drive it with: a simulator pod's burst,
mqtt_realtime's figures, points counted in the in-chart InfluxDB."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.helpers import ROOT
from tests.kind.conftest import (
    INFLUXDB_IMAGE,
    MOSQUITTO_IMAGE,
    REDIS_IMAGE,
    Kind,
    restricted_overrides,
)

BURST = 30_000
DEVICE = "press-01"  # a machine's own broker user: it may publish under press-01/ only
DEVICE_PASSWORD = secrets.token_hex(16)
# One point per burst message: each has its own machine and millisecond (Plant.burst).
TEMPERATURE_POINTS = "SELECT count(value) FROM realtime WHERE signal='temperature'"


def replicas(kind: Kind, deployment: str) -> int:
    return int(kind.get("deployment", deployment)["spec"].get("replicas", 0))


def patch_spec(kind: Kind, mq: str, spec: dict[str, Any]) -> None:
    """A merge patch of MessageQueue ``mq``'s spec."""
    patch = json.dumps({"spec": spec})
    kind.kubectl("patch", "mq", mq, "--type", "merge", "-p", patch)


def queue_stats(kind: Kind, queue: str) -> dict[str, Any]:
    """A queue's figures, as ``conveyor queues --json`` in the gateway's pod says them."""
    out = kind.kubectl("exec", "deploy/conveyor-gateway", "--", "conveyor", "queues", "--json")
    stats: dict[str, Any] = json.loads(out)["queues"].get(queue, {})
    return stats


def realtime(kind: Kind) -> dict[str, float]:
    stats = queue_stats(kind, "mqtt_realtime")
    counts = ["pending", "processing", "delayed", "completed", "failed", "enqueued"]
    counts.append("oldest_pending_age_s")
    return {k: stats.get(k, 0) for k in counts}


@dataclass
class Release:
    """The chart installed with tests/infra/kind/values.yaml; ``simulator_password`` is the broker
    password of the publisher user the simulator runs as."""

    simulator_password: str


@contextmanager
def installed(kind: Kind, *values_files: str) -> Iterator[Release]:
    """helm install of the chart with tests/infra/kind/values.yaml, then ``values_files``, and the
    images this run loaded; uninstalled at the end (the suite's last test checks that nothing is
    left; after a failure, this cleans up)."""
    images = {
        "image.repository": kind.image.rsplit(":", 1)[0],
        "image.tag": kind.image.rsplit(":", 1)[1],
        "redis.image.repository": REDIS_IMAGE.rsplit(":", 1)[0],
        "redis.image.tag": REDIS_IMAGE.rsplit(":", 1)[1],
        "mqtt.image.repository": MOSQUITTO_IMAGE.rsplit(":", 1)[0],
        "mqtt.image.tag": MOSQUITTO_IMAGE.rsplit(":", 1)[1],
        "influxdb.image.repository": INFLUXDB_IMAGE.rsplit(":", 1)[0],
        "influxdb.image.tag": INFLUXDB_IMAGE.rsplit(":", 1)[1],
    }
    sets = [arg for key, value in images.items() for arg in ("--set-string", f"{key}={value}")]
    files = [arg for f in values_files for arg in ("-f", f)]
    # The broker's users beyond the ingestor (mqtt.devicesSecret in tests/infra/kind/values.yaml):
    # the simulator, a publisher of every machine's topics, and one machine's device user.
    simulator_password = secrets.token_hex(16)
    kind.kubectl(
        "create",
        "secret",
        "generic",
        "conveyor-devices",
        f"--from-literal=simulator={simulator_password}",
        f"--from-literal={DEVICE}={DEVICE_PASSWORD}",
    )
    started = time.monotonic()
    try:
        kind.helm(
            *("install", "conveyor", str(ROOT / "charts/conveyor"), "--wait", "--timeout", "10m"),
            *("-f", str(ROOT / "tests/infra/kind/values.yaml"), *files, *sets),
        )
        kind.timings["helm install"] = time.monotonic() - started
        yield Release(simulator_password)
    finally:
        kind.helm("uninstall", "conveyor", "--wait", check=False)
        kind.kubectl("delete", "secret", "conveyor-devices", "--ignore-not-found")


def start_simulator(kind: Kind, release: Release, name: str, node: str = "") -> None:
    """A pod publishing BURST realtime messages as fast as it can, then done (Succeeded: every
    one acknowledged by the broker); on ``node`` when given."""
    overrides = json.loads(restricted_overrides(name))
    if node:
        overrides["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    kind.kubectl(
        "run",
        name,
        "--image",
        kind.image,
        "--restart",
        "Never",
        "--image-pull-policy",
        "IfNotPresent",
        "--override-type",  # the namespace enforces the restricted Pod Security Standard
        "strategic",
        "--overrides",
        json.dumps(overrides),
        "--env",
        "MQTT_BROKER_URL=mqtt://conveyor-mosquitto:1883",
        "--env",
        "MQTT_USERNAME=simulator",
        "--env",  # the test's own throwaway password, as a value in its own pod
        f"MQTT_PASSWORD={release.simulator_password}",
        "--labels",
        "conveyor.io/mqtt-client=true",  # the NetworkPolicy admits labelled pods to the broker
        "--",
        "simulate",
        "--burst",
        str(BURST),
        "--duration",
        "0",
    )


def influx_count(kind: Kind, query: str) -> int:
    """A count from the in-chart InfluxDB, asked inside its pod with the reader's token (which
    never leaves the pod)."""
    ask = 'curl -sS -u "$READER_TOKEN" --data-urlencode "q=$1" "http://127.0.0.1:8086/query?db=$DATABASE"'
    out = kind.kubectl("exec", "statefulset/conveyor-influxdb", "--", "sh", "-c", ask, "sh", query)
    series = json.loads(out)["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0
