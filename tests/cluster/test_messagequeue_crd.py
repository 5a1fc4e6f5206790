"""The MessageQueue CRD on a real kube-apiserver: samples are accepted with defaults filled in,
nonsense is rejected with a message that says what is wrong (worker env that would read
Secrets, redirect the workers' credentials or change what they run included: only APP_*,
WORKER_* and ALERT_* names, upper case), the scale and status subresources and the printer
columns work."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from conveyor.local_cluster import MESSAGEQUEUE_CRD
from tests.cluster.conftest import KubeCluster
from tests.helpers import ROOT

pytestmark = pytest.mark.cluster

CRD = ROOT / MESSAGEQUEUE_CRD
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))


@pytest.fixture
def ns(crd: KubeCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    crd.kubectl("create", "namespace", name)
    yield name
    crd.kubectl("delete", "namespace", name, "--wait=false")


def _mq(name: str, **spec: object) -> str:
    lines = [f"  {k}: {v}" for k, v in spec.items()]
    return (
        "\n".join(
            [
                "apiVersion: conveyor.io/v1alpha1",
                "kind: MessageQueue",
                f"metadata:\n  name: {name}",
                "spec:",
                *lines,
            ]
        )
        + "\n"
    )


def test_samples_are_accepted_with_defaults(crd: KubeCluster, ns: str) -> None:
    for sample in SAMPLES:
        crd.kubectl("apply", "-n", ns, "-f", str(sample))
    items = {i["metadata"]["name"]: i["spec"] for i in crd.get("mq", "-n", ns)["items"]}
    assert set(items) == {"alerts", "mqtt-realtime", "mqtt-spc", "mqtt-tech", "energy-meters"}
    realtime = items["mqtt-realtime"]
    assert (realtime["queue"], realtime["priority"], realtime["concurrency"]) == (
        "mqtt_realtime",
        5,
        3,
    )
    assert realtime["retry"] == {
        "maxRetries": 3,
        "backoffBaseSeconds": 2,
        "backoffFactor": 2,
        "outageSeconds": 900,
    }
    assert realtime["deletionPolicy"] == "Retain"
    assert realtime["scaleDown"]["stabilizationWindowSeconds"] == 60
    assert items["energy-meters"]["retry"]["maxRetries"] == 5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"queue": "q", "minReplicas": 5, "maxReplicas": 2},
            "minReplicas must not be greater than maxReplicas",
        ),
        ({"queue": "'bad name'"}, "spec.queue in body should match"),
        (
            {"queue": "q", "concurrency": 0},
            "spec.concurrency in body should be greater than or equal to 1",
        ),
        ({"queue": "q", "deletionPolicy": "Maybe"}, 'Unsupported value: "Maybe"'),
        (
            {"queue": "q", "activationDepth": 5000},
            "activationDepth must be below targetDepthPerReplica",
        ),
        (
            {"queue": "q", "priority": 5000},
            "spec.priority in body should be less than or equal to 1000",
        ),
        ({"priority": 1}, "spec.queue: Required value"),
        (
            {
                "queue": "q",
                "worker": {
                    "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
                },
            },
            "valueFrom is not allowed: a MessageQueue's worker env takes literal values only",
        ),
        *(
            (
                {"queue": "q", "worker": {"env": [{"name": name, "value": value}]}},
                "env names must match ^(APP|WORKER|ALERT)_[A-Z0-9_]+$ (APP_* for a custom "
                "handler's own settings, WORKER_* and ALERT_* for the worker's sinks), upper "
                "case only",
            )
            for name, value in [
                ("REDIS_URL", "redis://evil"),
                ("redis_url", "redis://evil"),  # pydantic-settings reads it as REDIS_URL
                ("INFLUX_URL", "http://evil"),
                ("PYTHONWARNINGS", "ignore::antigravity.x"),
                ("BROWSER", "/opt/conveyor/bin/python -c 'print(1)' %s"),
                ("LD_PRELOAD", "/tmp/evil.so"),
                ("HTTPS_PROXY", "http://evil:3128"),
                ("app_plant", "north"),
            ]
        ),
        (
            {"queue": "q", "worker": {"handler": "plant.energy"}},
            "spec.worker.handler in body should match",
        ),
        (
            {"queue": "q", "retry": {"outageSeconds": -1}},
            "spec.retry.outageSeconds: Invalid value: -1",
        ),
        (
            {"queue": "q", "retry": {"outageSeconds": 10**9}},
            "spec.retry.outageSeconds: Invalid value: 1000000000",
        ),
        (
            {"queue": "q", "worker": {"tolerations": [{"operator": "Always"}]}},
            'spec.worker.tolerations[0].operator: Unsupported value: "Always"',
        ),
    ],
)
def test_nonsense_is_rejected_with_a_reason(
    crd: KubeCluster, ns: str, spec: dict[str, object], message: str
) -> None:
    done = crd.kubectl("apply", "-n", ns, "-f", "-", stdin=_mq("bad", **spec), check=False)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_valuefrom_is_refused_even_by_a_client_that_skips_field_validation(
    crd: KubeCluster, ns: str
) -> None:
    # --validate=false: the API server would drop an unknown field silently; valueFrom is
    # declared so that the rule can see it and refuse the object instead.
    mq = _mq(
        "sneaky",
        queue="q",
        worker={"env": [{"name": "T", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
    )
    done = crd.kubectl("apply", "--validate=false", "-n", ns, "-f", "-", stdin=mq, check=False)
    assert done.returncode != 0
    assert "valueFrom is not allowed" in done.stderr, done.stderr
    allowed = [
        {"name": "APP_PLANT", "value": "north"},
        {"name": "WORKER_BATCH_SIZE", "value": "50"},
        {"name": "ALERT_WEBHOOKS", "value": "https://alerts.example.com/hook"},
    ]
    plain = _mq("plain", queue="q", worker={"env": allowed})
    crd.kubectl("apply", "-n", ns, "-f", "-", stdin=plain)
    assert crd.get("mq/plain", "-n", ns)["spec"]["worker"]["env"] == allowed


def test_queue_name_is_immutable(crd: KubeCluster, ns: str) -> None:
    crd.kubectl("apply", "-n", ns, "-f", "-", stdin=_mq("q1", queue="first"))
    done = crd.kubectl("apply", "-n", ns, "-f", "-", stdin=_mq("q1", queue="second"), check=False)
    assert done.returncode != 0
    assert "queue is immutable" in done.stderr


def test_scale_status_and_columns(crd: KubeCluster, ns: str) -> None:
    crd.kubectl("apply", "-n", ns, "-f", str(ROOT / "manifests" / "samples" / "mqtt-realtime.yaml"))
    crd.kubectl("scale", "-n", ns, "mq/mqtt-realtime", "--replicas", "4")
    assert crd.get("mq/mqtt-realtime", "-n", ns)["spec"]["replicas"] == 4
    too_many = crd.kubectl("scale", "-n", ns, "mq/mqtt-realtime", "--replicas", "50", check=False)
    assert "replicas must lie between minReplicas and maxReplicas" in too_many.stderr
    status = (
        '{"status": {"depth": 11800, "replicas": 4, "concurrency": 3, "selector": "app=x", '
        '"conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled"}]}}'
    )
    crd.kubectl(
        "patch", "-n", ns, "mq/mqtt-realtime", "--subresource=status", "--type=merge", "-p", status
    )
    table = crd.kubectl("get", "-n", ns, "mq").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "QUEUE",
        "PRIORITY",
        "DEPTH",
        "REPLICAS",
        "CONCURRENCY",
        "READY",
        "AGE",
    ]
    assert table[1].split()[:7] == [
        "mqtt-realtime",
        "mqtt_realtime",
        "5",
        "11800",
        "4",
        "3",
        "True",
    ]
    path = f"/apis/conveyor.io/v1alpha1/namespaces/{ns}/messagequeues/mqtt-realtime/scale"
    scale = json.loads(crd.kubectl("get", "--raw", path).stdout)
    assert (scale["kind"], scale["spec"]["replicas"], scale["status"]["selector"]) == (
        "Scale",
        4,
        "app=x",
    )
