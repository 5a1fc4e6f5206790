"""The whole product on a real cluster: helm install, the default MessageQueues' workers,
a burst from a simulator pod, the operator scaling mqtt_realtime up while real worker pods
drain it (one of them killed on the way), every message accounted for, the burst's queue alert
fired and resolved, scale-down after the cooldown, the same burst with a latency target and by
depth alone, and a clean uninstall."""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, wait_until
from tests.kind.conftest import (
    RESTRICTED_CONTAINER,
    RESTRICTED_POD,
    Kind,
    memory,
    restricted_namespace,
)
from tests.kind.pipeline import (
    BURST,
    DEVICE,
    DEVICE_PASSWORD,
    TEMPERATURE_POINTS,
    Release,
    influx_count,
    installed,
    patch_spec,
    queue_stats,
    realtime,
    replicas,
    start_simulator,
)

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]
REDIS = "conveyor-redis.conveyor.svc.cluster.local"
BROKER = "conveyor-mosquitto.conveyor.svc.cluster.local"
INFLUXDB = "conveyor-influxdb.conveyor.svc.cluster.local"
ATTEMPT_S = 5  # a connection attempt gives up after this long
# mqtt_realtime's spec.alerts.maxDepth in the burst test: low, so that the backlog crosses it
# for its 2 s while the first pod starts, however slowly the burst is ingested.
ALERT_DEPTH = 200
LATENCY_TARGET_S = 5  # mqtt_realtime's spec.targetLatencySeconds in the latency burst
LATENCY_BOUND_S = 60.0  # with it, the oldest wait is back under it within this long
DEPTH_ONLY_TARGET = 100_000  # targetDepthPerReplica: by depth alone a burst stays on one pod
# The labels of the release's ingestor pods: an intruder copies them.
INGESTOR_LABELS = {
    "app.kubernetes.io/name": "conveyor",
    "app.kubernetes.io/instance": "conveyor",
    "app.kubernetes.io/component": "ingestor",
    "conveyor.io/mqtt-client": "true",
}

# Run by the Conveyor image's Python in a probe pod: a TCP connection to HOST:PORT, bounded.
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3])).close()
    print("reached")
except OSError as exc:
    print("blocked", type(exc).__name__)
"""
# Run in the gateway's pod: its /alerts, with the token it was given.
ALERTS = """
import json, os, urllib.request
request = urllib.request.Request(
    "http://127.0.0.1:" + os.environ.get("GATEWAY_PORT", "8000") + "/alerts?limit=200",
    headers={"Authorization": "Bearer " + os.environ["GATEWAY_API_TOKEN"]},
)
print(urllib.request.urlopen(request, timeout=10).read().decode())
"""
# An MQTT 5 client: connect as USER (or "-" for anonymous) with CLIENT_ID, subscribe to TOPICS;
# prints what the broker answered, as JSON.
MQTT = """
import json, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, user, password, client_id, *topics = sys.argv[1:]
done, seen = threading.Event(), {}
def on_connect(client, userdata, flags, code, properties):
    seen["connect"] = str(code)
    if code.is_failure or not topics:
        done.set()
    else:
        client.subscribe([(t, 1) for t in topics])
def on_subscribe(client, userdata, mid, codes, properties):
    seen["subscribe"] = [str(c) for c in codes]
    done.set()
def on_disconnect(client, userdata, flags, code, properties):
    seen.setdefault("connect", str(code))
    done.set()
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
if user != "-":
    client.username_pw_set(user, password)
client.on_connect, client.on_subscribe = on_connect, on_subscribe
client.on_disconnect = on_disconnect
client.connect_timeout = 5
try:
    client.connect(host, 1883, 30)
except OSError as exc:
    print(json.dumps({"connect": "unreachable: " + type(exc).__name__}))
    sys.exit()
client.loop_start()
done.wait(10)
client.loop_stop()
print(json.dumps(seen))
"""


WORKERS = ("conveyor", "workers", "--json")
WEBHOOK_TIMEOUT_S = 30.0  # the scale-in test's job: an alert whose webhook never answers


def worker_pods(kind: Kind, *, running: bool) -> list[str]:
    pods = kind.get("pods", "-l", "app.kubernetes.io/instance=mqtt-realtime")["items"]
    return [
        p["metadata"]["name"]
        for p in pods
        if not running
        or (p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"))
    ]


@dataclass
class Drain:
    """One burst's drain: the most worker pods, the oldest wait seen, and how long after the
    backlog was first seen the oldest wait was last above the latency target."""

    peak: int = 0
    oldest_s: float = 0.0
    back_under_s: float = 0.0

    def describe(self) -> str:
        return (
            f"peak {self.peak} pods, oldest wait {self.oldest_s:.1f} s, under "
            f"{LATENCY_TARGET_S:g} s from {self.back_under_s:.1f} s after the backlog"
        )


def drain_burst(kind: Kind, simulator: str, since: float, *, expected: int) -> Drain:
    """Wait until the simulator is done and mqtt_realtime is empty with ``expected`` jobs
    finished (or nothing more for 10 s: the caller's count says what went missing)."""
    seen, empty_since = Drain(), dict[str, float]()

    def drained() -> bool:
        seen.peak = max(seen.peak, replicas(kind, "mqtt-realtime-worker"))
        q = realtime(kind)
        seen.oldest_s = max(seen.oldest_s, q["oldest_pending_age_s"])
        if q["oldest_pending_age_s"] > LATENCY_TARGET_S:
            seen.back_under_s = time.monotonic() - since
        # Until the simulator is done the queue may be momentarily empty between arrivals.
        if kind.get("pod", simulator)["status"]["phase"] != "Succeeded":
            return False
        if q["pending"] + q["processing"] + q["delayed"]:
            empty_since.clear()
            return False
        empty_since.setdefault("at", time.monotonic())
        done = q["completed"] + q["failed"] >= expected
        return done or time.monotonic() - empty_since["at"] > 10

    wait_until(
        drained,
        what=f"{expected} jobs completed or dead-lettered in all",
        timeout=900,
        interval=1,
        detail=lambda: f"mqtt_realtime: {realtime(kind)}",
    )
    return seen


def burst(
    kind: Kind, release: Release, simulator: str, spec: dict[str, Any], *, expected: int
) -> Drain:
    """mqtt_realtime's spec patched with ``spec``, then a burst drained; ``expected`` jobs
    finished in all, this burst's included."""
    patch_spec(kind, "mqtt-realtime", spec)
    start_simulator(kind, release, simulator)
    wait_until(
        lambda: realtime(kind)["pending"] > 0,
        what=f"{simulator}'s burst to reach the queue",
        timeout=120,
        interval=1,
    )
    drain = drain_burst(kind, simulator, time.monotonic(), expected=expected)
    q = realtime(kind)
    assert q["completed"] + q["failed"] == expected, q
    kind.kubectl("delete", "pod", simulator, "--wait=false")
    return drain


@pytest.fixture(scope="module")
def release(kind: Kind) -> Iterator[Release]:
    with installed(kind) as release:
        yield release


def probe_pod(kind: Kind, name: str, labels: dict[str, str]) -> Any:
    """A pod of the Conveyor image that only waits, for ``kubectl exec`` of the probes."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "securityContext": RESTRICTED_POD,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": name,
                    "image": kind.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "infinity"],
                    "securityContext": RESTRICTED_CONTAINER,
                }
            ],
        },
    }


def run_python(kind: Kind, where: str, namespace: str, script: str, *args: str) -> str:
    out = kind.kubectl(
        "exec", where, "--", "python", "-c", script, *args, namespace=namespace, timeout=60
    )
    return out.strip()


def connects(kind: Kind, where: str, namespace: str, host: str, port: int) -> bool:
    out = run_python(kind, where, namespace, CONNECT, host, str(port), str(ATTEMPT_S))
    assert out == "reached" or out.startswith("blocked"), out
    return out == "reached"


def mqtt_answer(kind: Kind, where: str, user: str, client_id: str, *topics: str) -> Any:
    password = DEVICE_PASSWORD if user == DEVICE else "-"
    out = run_python(kind, where, "conveyor", MQTT, BROKER, user, password, client_id, *topics)
    return json.loads(out)


def test_the_release_refuses_intruders(kind: Kind, release: Release) -> None:
    """The attacks of issue 14 on the installed release, with its NetworkPolicies enforced and
    its broker authenticating: a pod of another namespace wearing the ingestor's labels, and a
    pod of the release's namespace without them, reach neither Redis nor the broker; a pod the
    broker's policy admits is refused anonymously, and its device user can neither subscribe
    to `#` nor join the ingestors' share group, nor pose as an ingestor by its client id."""
    intruders = f"intruders-{secrets.token_hex(3)}"
    kind.kubectl("apply", "-f", "-", stdin=restricted_namespace(intruders))
    try:
        listed = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [probe_pod(kind, "copycat", INGESTOR_LABELS)],
        }
        kind.kubectl("apply", "-f", "-", stdin=json.dumps(listed), namespace=intruders)
        here = [
            probe_pod(kind, "stranger", {}),
            probe_pod(kind, "device", {"conveyor.io/mqtt-client": "true"}),
        ]
        listed = {"apiVersion": "v1", "kind": "List", "items": here}
        kind.kubectl("apply", "-f", "-", stdin=json.dumps(listed))
        for namespace, name in (
            (intruders, "copycat"),
            ("conveyor", "stranger"),
            ("conveyor", "device"),
        ):
            kind.kubectl(
                "wait",
                "--for=condition=Ready",
                f"pod/{name}",
                "--timeout=180s",
                namespace=namespace,
            )

        # The release's own pods get through: a refusal below is the policies' doing.
        assert connects(kind, "deploy/conveyor-gateway", "conveyor", REDIS, 6379)
        assert connects(kind, "deploy/conveyor-gateway", "conveyor", INFLUXDB, 8086)
        assert connects(kind, "device", "conveyor", BROKER, 1883)

        for namespace, name in ((intruders, "copycat"), ("conveyor", "stranger")):
            assert not connects(kind, name, namespace, REDIS, 6379), f"{name} reached Redis"
            assert not connects(kind, name, namespace, BROKER, 1883), f"{name} reached the broker"
            assert not connects(kind, name, namespace, INFLUXDB, 8086), f"{name} reached InfluxDB"
        assert not connects(kind, "device", "conveyor", REDIS, 6379), "an MQTT client reached Redis"
        assert not connects(kind, "device", "conveyor", INFLUXDB, 8086), "a client reached InfluxDB"

        anonymous = mqtt_answer(kind, "device", "-", "anonymous-probe")
        assert anonymous["connect"] != "Success", anonymous
        assert not anonymous["connect"].startswith("unreachable"), anonymous
        device = mqtt_answer(kind, "device", DEVICE, DEVICE, "$share/conveyor/+/realtime", "#")
        assert device["connect"] == "Success", device
        assert len(device["subscribe"]) == 2, device
        assert not any(code.startswith("Granted") for code in device["subscribe"]), device
        posing = mqtt_answer(kind, "device", DEVICE, "conveyor-ingestor-0")
        assert posing["connect"] != "Success", posing
        kind.notes.append(
            f"intruders refused: Redis, broker and InfluxDB unreachable from {intruders}/copycat "
            f"and conveyor/stranger; anonymous MQTT: {anonymous['connect']}; device subscribing to "
            f"the share group and #: {device['subscribe']}; device posing as an ingestor: "
            f"{posing['connect']}"
        )
    finally:
        kind.kubectl("delete", "namespace", intruders, "--wait=false", check=False)
        kind.kubectl("delete", "pod", "stranger", "device", "--wait=false", check=False)


def test_helm_upgrade_applies_the_charts_newer_crds(kind: Kind, release: Release) -> None:
    """An older chart's MessageQueue CRD (without spec.alerts) in the cluster: `helm upgrade`
    runs the chart's pre-upgrade hook, a real Job as its own ServiceAccount, which puts the
    chart's CRD back before the upgrade's objects, so MessageQueues keep their alerts."""
    path = ROOT / "charts/conveyor/crds/conveyor.io_messagequeues.yaml"
    [crd] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]

    def spec_fields() -> set[str]:
        served = kind.get("crd", crd["metadata"]["name"])["spec"]["versions"][0]
        return set(served["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])

    older = copy.deepcopy(crd)
    schema = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    del schema["properties"]["spec"]["properties"]["alerts"]
    apply = ("apply", "--server-side", "--force-conflicts", "-f", "-")
    kind.kubectl(*apply, stdin=json.dumps(older))
    assert "alerts" not in spec_fields()
    started = time.monotonic()
    try:
        kind.helm("upgrade", "conveyor", str(ROOT / "charts/conveyor"), "--reuse-values", "--wait")
    finally:
        kind.timings["helm upgrade (CRD hook)"] = time.monotonic() - started
    assert "alerts" in spec_fields()
    # The hook's identity went with it: its ClusterRole may patch CRDs.
    assert kind.kubectl("get", "sa", "conveyor-crds", check=False).strip() == ""
    hook_rbac = "clusterrole,clusterrolebinding"
    left = kind.kubectl("get", hook_rbac, "conveyor-crds.conveyor", check=False).strip()
    assert left == ""


def test_scale_in_removes_the_idle_pods_and_interrupts_nothing(
    kind: Kind, release: Release
) -> None:
    """The alerts queue on 4 real pods, one of them busy with a job of 30 s (an alert whose
    webhook the workers' NetworkPolicy never lets through, with ALERT_WEBHOOK_TIMEOUT_S 30);
    its minReplicas lowered to 1 meanwhile. The operator sets the pods' deletion costs from the
    jobs they hold, so the 3 idle pods go and the busy one stays. Its job's one attempt ends
    where it would have anyway, at the webhook's timeout: had its pod been removed, the 20 s
    drain would have cut it short and it would have run again from the start on the pod left
    (ending 50 s or more after it was queued), or been recovered after a SIGKILL."""
    original = kind.get("mq", "alerts")["spec"]
    hook = "http://conveyor-gateway:8000/hook"  # inside the release; egress refused
    spec = {
        "minReplicas": 4,
        "maxReplicas": 4,
        "concurrency": 1,
        "targetDepthPerReplica": 1,
        "pollingIntervalSeconds": 1,
        "scaleDown": {"stabilizationWindowSeconds": 0},
        "retry": {"maxRetries": 0},
        "worker": {
            "env": [
                {"name": "ALERT_WEBHOOKS", "value": hook},
                {"name": "ALERT_WEBHOOK_TIMEOUT_S", "value": str(WEBHOOK_TIMEOUT_S)},
                {"name": "WORKER_BATCH_SIZE", "value": "1"},
            ]
        },
    }
    patch_spec(kind, "alerts", spec)
    try:

        def pods() -> set[str]:
            items = kind.get("pods", "-l", "app.kubernetes.io/instance=alerts")["items"]
            return {p["metadata"]["name"] for p in items}

        def held() -> dict[str, int]:
            out = kind.kubectl("exec", "deploy/conveyor-gateway", "--", *WORKERS, "alerts")
            return {w.rpartition(":")[0]: n for w, n in json.loads(out).items()}

        def four_new_workers() -> bool:  # the new template's pods, Ready, each with its worker
            items = kind.get("pods", "-l", "app.kubernetes.io/instance=alerts")["items"]
            ready = {
                p["metadata"]["name"]
                for p in items
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions", [])
                )
            }
            # A pod not Ready would go first whatever its cost (the ReplicaSet's own ranking).
            return len(items) == len(ready) == 4 and set(held()) == ready

        wait_until(four_new_workers, what="4 Ready alerts worker pods", timeout=180, interval=1)
        recovered = queue_stats(kind, "alerts")["recovered"]
        alert = {"machine": f"scale-in-{secrets.token_hex(3)}", "type": "door", "severity": "info"}
        job = kind.kubectl(
            "exec",
            "deploy/conveyor-gateway",
            "--",
            "conveyor",
            "enqueue",
            "alerts",
            json.dumps(
                {
                    **alert,
                    "topic": "",
                    "received_at": 0,
                    "kind": "alert",
                    "ts": None,
                    "message": "scale-in test",
                    "details": {},
                }
            ),
        ).strip()
        wait_until(
            lambda: sum(held().values()) == 1,
            what="a pod to hold the job",
            timeout=30,
            interval=0.5,
        )
        [busy] = [pod for pod, jobs in held().items() if jobs]
        idle = pods() - {busy}
        patch_spec(kind, "alerts", {"minReplicas": 1})
        wait_until(
            lambda: replicas(kind, "alerts-worker") == 1,
            what="the scale-in",
            timeout=30,
            interval=0.5,
        )

        def settled() -> bool:
            live = [
                p["metadata"]["name"]
                for p in kind.get("pods", "-l", "app.kubernetes.io/instance=alerts")["items"]
                if not p["metadata"].get("deletionTimestamp")
            ]
            return live == [busy]

        wait_until(settled, what=f"only the busy pod {busy} left", timeout=30, interval=0.5)
        # The scale-in came while the job ran, and by the costs the operator set: the busy
        # pod's is 1, so it stayed; the idle ones (0) went.
        assert held().get(busy) == 1, "the job ended before the scale-in: nothing was tested"
        costs = kind.get("pod", busy)["metadata"].get("annotations", {})
        assert costs.get("controller.kubernetes.io/pod-deletion-cost") == "1", costs
        assert not idle & {
            p["metadata"]["name"]
            for p in kind.get("pods", "-l", "app.kubernetes.io/instance=alerts")["items"]
            if not p["metadata"].get("deletionTimestamp")
        }

        def letter() -> dict[str, Any] | None:
            out = kind.kubectl(
                "exec",
                "deploy/conveyor-gateway",
                "--",
                "conveyor",
                "dlq",
                "list",
                "alerts",
                "--json",
            )
            return next((d for d in json.loads(out)["items"] if d["id"] == job), None)

        wait_until(
            lambda: letter() is not None, what="the job's attempt to end", timeout=60, interval=1
        )
        dead = letter()
        assert dead is not None
        # One attempt, ended by its webhook's timeout: not cut short by a 20 s drain and run
        # again (released, it would end 50 s or more after it was queued, and still show one
        # attempt), nor lost with a killed pod (a recovery).
        assert (dead["attempts"], dead["recoveries"]) == (1, 0), dead
        assert f"did not answer within {WEBHOOK_TIMEOUT_S:.1f}s" in dead["error"], dead
        assert dead["failed_at"] - dead["enqueued_at"] < WEBHOOK_TIMEOUT_S + 10, dead
        assert queue_stats(kind, "alerts")["recovered"] == recovered
        kind.notes.append(
            f"scale-in: alerts 4 -> 1 with {busy} busy: {len(idle)} idle pods removed, the busy "
            "one kept; its job's attempt ended by its webhook's timeout, none interrupted"
        )
    finally:
        restore = [{"op": "replace", "path": "/spec", "value": original}]
        kind.kubectl("patch", "mq", "alerts", "--type", "json", "-p", json.dumps(restore))


def test_install_scale_drain_and_uninstall(kind: Kind, release: Release) -> None:
    workers = ["alerts-worker", "mqtt-realtime-worker", "mqtt-spc-worker", "mqtt-tech-worker"]
    wait_until(
        lambda: all(
            kind.kubectl("get", "deployment", w, check=False).strip() != "" for w in workers
        ),
        what="the operator to create the four worker Deployments",
        timeout=120,
        interval=1,
    )
    kind.kubectl(
        "wait", "--for=condition=Available", "deployment/mqtt-realtime-worker", "--timeout=300s"
    )
    # Unlimited, one worker here drains as fast as two ingestors fill (the in-chart InfluxDB
    # takes a batch of 1,000 points quickly), so each worker pod gets a fifth of a core, as a
    # worker pod sized for its share of a node would; and the queue starts from zero pods, as
    # one that scales to zero when idle. A burst then builds a backlog, the operator scales up,
    # real pods drain it.
    # Quick polling and cooldown for the test.
    patch = {
        "spec": {
            "minReplicas": 0,
            "maxReplicas": 4,
            "targetDepthPerReplica": 1000,
            "pollingIntervalSeconds": 2,
            "scaleDown": {"stabilizationWindowSeconds": 10, "cooldownSeconds": 20},
            # The burst crosses it: a queue alert, through the real alerts worker to /alerts.
            "alerts": {"maxDepth": {"threshold": ALERT_DEPTH, "for": "2s"}},
            "worker": {
                "resources": {
                    "requests": {"cpu": "50m", "memory": "96Mi"},
                    "limits": {"cpu": "200m", "memory": "256Mi"},
                }
            },
        }
    }
    patch_spec(kind, "mqtt-realtime", patch["spec"])
    wait_until(
        lambda: replicas(kind, "mqtt-realtime-worker") == 0,
        what="scale to zero",
        timeout=180,
        interval=1,
    )

    start_simulator(kind, release, "simulator")
    wait_until(
        lambda: realtime(kind)["pending"] > 0,
        what="the burst to reach the queue",
        timeout=120,
        interval=1,
    )
    backlog_seen = time.monotonic()
    wait_until(
        lambda: replicas(kind, "mqtt-realtime-worker") > 0, what="scale-up", timeout=60, interval=1
    )
    kind.timings["scale-up decision"] = time.monotonic() - backlog_seen

    # Kill a worker pod mid-burst: the jobs it held come back after their lease.
    def running_pod() -> bool:
        return bool(worker_pods(kind, running=True))

    wait_until(running_pod, what="a running mqtt-realtime worker pod", timeout=120, interval=1)

    # A worker in a pod is known by the pod's name (its host name): what the deletion costs the
    # operator sets before a scale-in rest on, so that the idle pods go first.
    def workers_named_by_pods() -> bool:
        workers = ("conveyor", "workers", "mqtt_realtime", "--json")
        out = kind.kubectl("exec", "deploy/conveyor-gateway", "--", *workers)
        hosts = {worker.rpartition(":")[0] for worker in json.loads(out)}
        return bool(hosts) and hosts <= set(worker_pods(kind, running=False))

    wait_until(
        workers_named_by_pods,
        what="conveyor workers to name mqtt-realtime's worker pods",
        timeout=60,
        interval=1,
    )
    victim = worker_pods(kind, running=True)[0]
    kind.kubectl("delete", "pod", victim, "--grace-period=0", "--force")
    q = realtime(kind)
    publishing = kind.get("pod", "simulator")["status"]["phase"] in ("Pending", "Running")
    assert publishing or q["pending"] + q["processing"] > 0, f"killed after the drain: {q}"

    first = drain_burst(kind, "simulator", backlog_seen, expected=BURST)
    kind.timings["drain"] = time.monotonic() - backlog_seen
    q = realtime(kind)
    assert q["completed"] + q["failed"] == BURST, q  # every message accounted for
    assert first.peak > 1, "the backlog was drained without scaling beyond one pod"
    # Every message a point in the in-chart InfluxDB (each has its own machine and time).
    points = influx_count(kind, TEMPERATURE_POINTS)
    assert points == q["completed"], (points, q)
    kind.notes.append(
        f"mqtt_realtime: {BURST} published, {q['completed']:.0f} completed, "
        f"{q['failed']:.0f} dead, {points} points in InfluxDB, peak {first.peak} replicas, "
        f"pod {victim} killed mid-burst"
    )
    kind.notes.append(f"cluster memory, the first burst drained: {memory(kind.name)}")

    # The backlog above spec.alerts.maxDepth fired a queue alert, and the drain resolved it:
    # Events on the MessageQueue, and both through the alerts worker's pod to the gateway.
    def alert_events() -> list[str]:
        events = kind.get("events", "--field-selector", "involvedObject.name=mqtt-realtime")
        return [e["reason"] for e in events["items"]]

    def queue_alerts() -> list[str]:
        alerts = json.loads(run_python(kind, "deploy/conveyor-gateway", "conveyor", ALERTS))
        return [
            a["details"]["state"]
            for a in alerts["alerts"]
            if a["machine"] == "queue/mqtt_realtime" and a["type"] == "queue_depth"
        ]

    wait_until(
        lambda: (
            {"QueueDepthHigh", "AlertResolved"} <= set(alert_events())
            and {"firing", "resolved"} <= set(queue_alerts())
        ),
        what="the queue alert to fire and resolve, as Events and on the gateway's /alerts",
        timeout=60,
        interval=1,
        detail=lambda: f"Events {alert_events()}; /alerts {queue_alerts()}",
    )
    alerting = {c["type"]: c for c in kind.get("mq", "mqtt-realtime")["status"]["conditions"]}
    assert alerting["Alerting"]["status"] == "False", alerting["Alerting"]

    drained_at = time.monotonic()
    wait_until(
        lambda: replicas(kind, "mqtt-realtime-worker") == 0,
        what="scale-down",
        timeout=300,
        interval=1,
    )
    kind.timings["scale-down"] = time.monotonic() - drained_at

    kind.kubectl("delete", "pod", "simulator", "--wait=false")

    # Scaling for latency, and the same burst by depth alone beside it. The depth target here
    # holds a whole burst on one pod, so every pod beyond the first is the latency target's
    # (arrival + backlog / T, at the per-pod rate the operator has learned from this queue's
    # busy polls, the first burst's included, and keeps learning as pods drain).
    # Pods of half the CPU, so that one cannot keep up with the burst (a fifth of a core did).
    for_latency = {
        "targetDepthPerReplica": DEPTH_ONLY_TARGET,
        "targetLatencySeconds": LATENCY_TARGET_S,
        "worker": {"resources": {"limits": {"cpu": "100m", "memory": "256Mi"}}},
    }
    with_target = burst(kind, release, "simulator-latency", for_latency, expected=2 * BURST)
    wait_until(
        lambda: replicas(kind, "mqtt-realtime-worker") == 0,
        what="scale-down after the latency burst",
        timeout=300,
        interval=1,
    )
    depth_only = burst(
        kind, release, "simulator-depth", {"targetLatencySeconds": None}, expected=3 * BURST
    )
    kind.notes.append(
        f"a burst of {BURST} with targetLatencySeconds {LATENCY_TARGET_S:g}: "
        f"{with_target.describe()}; by depth alone ({DEPTH_ONLY_TARGET} per replica): "
        f"{depth_only.describe()}"
    )
    # The bound this test states: with the target, the oldest wait is back under it within
    # LATENCY_BOUND_S of the backlog. On one 2-core node depth alone does about as well (the
    # node's CPU is the limit, not the pods: benchmarks.md). Whether the target adds pods
    # depends on the per-pod rate the operator learned from the first burst's larger pods: on a
    # fast run it judges one pod enough (2026-12-02: peak 1 in 1 of 8 runs, 4 otherwise), so
    # the pods are reported, not asserted; depth alone must stay on one. The latency decision
    # itself is tested in tests/unit/test_scaling_policy.py and measured by hack/bench.sh autoscale.
    assert with_target.back_under_s <= LATENCY_BOUND_S, with_target.describe()
    assert depth_only.peak == 1, depth_only.describe()

    # Redis keeps its AOF on its volume: its pod deleted (a node drained, say), it comes back
    # with every queue's figures, and the components answer through it again unrestarted.
    before = realtime(kind)
    claims = kind.get("pvc")["items"]
    assert {c["status"]["phase"] for c in claims} == {"Bound"}, claims
    started = time.monotonic()
    kind.kubectl("delete", "pod", "conveyor-redis-0")
    kind.kubectl("wait", "--for=condition=Ready", "pod/conveyor-redis-0", "--timeout=180s")

    # Ready is not yet reachable: the Service's endpoints and kube-proxy's rules follow the pod
    # a moment later, and until then a connection is refused (the CLI says "Redis unavailable").
    def completed_now() -> float | str:
        try:
            return realtime(kind)["completed"]
        except AssertionError as e:
            if "Redis unavailable" not in str(e):
                raise
            return str(e).splitlines()[0]

    wait_until(
        lambda: completed_now() == before["completed"],
        what="the queue's figures back from Redis's volume",
        timeout=60,
        interval=1,
        detail=lambda: f"before {before['completed']:.0f} completed, now {completed_now()}",
    )
    kind.timings["Redis back from its volume"] = time.monotonic() - started
    kind.notes.append(
        f"volumes: {len(claims)} claims bound; Redis pod deleted and back with its data "
        f"({before['completed']:.0f} completed jobs counted before and after)"
    )

    started = time.monotonic()
    kind.helm("uninstall", "conveyor", "--wait")
    kind.kubectl("delete", "secret", "conveyor-devices")  # the test's own, not the chart's
    # helm deletes the Deployments; their pods end on their own (graceful drain) shortly after.
    kept_by_kubernetes = ("configmap/kube-root-ca.crt", "serviceaccount/default")

    def left() -> list[str]:
        names = kind.kubectl("get", "all,mq,cm,secret,pvc,sa,job", "-o", "name").split()
        return [x for x in names if x not in kept_by_kubernetes]

    wait_until(
        lambda: left() == [],
        what="nothing left after uninstall",
        timeout=180,
        interval=1,
        detail=lambda: f"left after helm uninstall: {left()}",
    )
    kind.timings["helm uninstall"] = time.monotonic() - started
