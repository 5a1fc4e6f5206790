"""Worker pods are defined once, by the operator, from what the chart hands it: each chart value
that shapes worker pods is followed from `helm template` through the operator's environment
(its settings, as `conveyor operator` loads them) to the worker Deployment it renders. A chart
value the operator does not read, or reads under another name, fails here; so does a worker pod
whose probes or security contexts drift from the chart's other pods."""

from __future__ import annotations

import os
from typing import Any

import pytest
from conveyor_operator.rendering import render_deployment

from conveyor.cli import build_parser
from conveyor.operator_command import OperatorSettings, worker_defaults, worker_env
from conveyor.settings import InfluxSettings, RedisSettings, load
from tests.cluster.chart import Doc, by_kind, env_of, one, pod_templates, render

NS = "plant"
SETS = (
    "logFormat=text",
    "image.repository=registry.plant.example/conveyor",
    "image.tag=9.9.9",
    "image.pullPolicy=Always",
    "imagePullSecrets[0].name=regcred",
    "influx.url=http://influxdb.plant.example:8086",
    "influx.bucket=line3",
    "influx.org=plant",
    "influx.existingSecret=plant-influx",
    "influx.tokenKey=token",
    "redis.existingSecret=plant-redis",
    "redis.cluster=true",
    "commonLabels.team=line-3",
    "redis.passwordKey=pw",
    "worker.resources.requests.cpu=250m",
    "worker.resources.limits.memory=1Gi",
    "worker.drainTimeoutSeconds=40",
    "worker.terminationGracePeriodSeconds=60",
)


def _operator_sees(operator_env: dict[str, Doc], monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator pod's environment as the process would see it (Secrets resolved to a
    stand-in value, the pod's own fields left out)."""
    for name in list(os.environ):
        if name.startswith(("REDIS_", "OPERATOR_", "INFLUX_", "CONVEYOR_", "WATCH_")):
            monkeypatch.delenv(name)
    for name, entry in operator_env.items():
        if "value" in entry:
            monkeypatch.setenv(name, str(entry["value"]))
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            monkeypatch.setenv(name, "from-the-secret")


@pytest.fixture(scope="module")
def chart() -> list[Doc]:
    return render(*SETS, ns=NS)


@pytest.fixture
def worker_pod(chart: list[Doc], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The pod template of the worker Deployment the operator renders for the chart's
    ``alerts`` MessageQueue, given the chart's operator environment."""
    _operator_sees(env_of(pod_templates(chart)["Deployment/conveyor-operator"]), monkeypatch)
    settings = load(OperatorSettings)
    args = build_parser().parse_args(["operator"])  # --log-format defaults from the env
    redis, influx = load(RedisSettings), load(InfluxSettings)
    env = worker_env(settings, redis, influx, log_format=args.log_format)
    mq = one(chart, "MessageQueue", "alerts")
    mq["metadata"]["uid"] = "0000-uid"
    deployment = render_deployment(mq, replicas=1, defaults=worker_defaults(settings, env))
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def test_every_operator_variable_the_chart_sets_is_one_the_operator_reads(
    chart: list[Doc],
) -> None:
    given = env_of(pod_templates(chart)["Deployment/conveyor-operator"])
    read = {f"OPERATOR_{name.upper()}" for name in OperatorSettings.model_fields}
    assert {n for n in given if n.startswith("OPERATOR_")} <= read
    # And the settings the chart must set to shape worker pods, it sets.
    for name in ("worker_image", "worker_image_pull_policy", "worker_resources", "release"):
        assert f"OPERATOR_{name.upper()}" in given


def test_image_pull_policy_and_pull_secrets_reach_worker_pods(worker_pod: dict[str, Any]) -> None:
    [container] = worker_pod["spec"]["containers"]
    assert container["image"] == "registry.plant.example/conveyor:9.9.9"
    assert container["imagePullPolicy"] == "Always"
    assert worker_pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_a_queues_own_image_keeps_the_clusters_pull_policy(
    chart: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    _operator_sees(env_of(pod_templates(chart)["Deployment/conveyor-operator"]), monkeypatch)
    settings = load(OperatorSettings)
    mq = one(chart, "MessageQueue", "alerts")
    mq["metadata"]["uid"] = "0000-uid"
    mq["spec"]["worker"] = {"image": "registry.plant.example/team/handler:latest"}
    deployment = render_deployment(mq, replicas=1, defaults=worker_defaults(settings, []))
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.plant.example/team/handler:latest"
    assert "imagePullPolicy" not in container  # Always, for :latest


def test_common_labels_reach_worker_pods_but_not_their_selector(
    chart: list[Doc], worker_pod: dict[str, Any]
) -> None:
    assert worker_pod["metadata"]["labels"]["team"] == "line-3"
    assert one(chart, "Deployment", "conveyor-gateway")["metadata"]["labels"]["team"] == "line-3"


def test_resources_and_drain_reach_worker_pods(worker_pod: dict[str, Any]) -> None:
    [container] = worker_pod["spec"]["containers"]
    assert container["resources"] == {  # the chart's default request of memory stays
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert container["args"][container["args"].index("--drain-timeout") + 1] == "40"
    assert worker_pod["spec"]["terminationGracePeriodSeconds"] == 60


def test_log_format_and_secrets_by_reference_reach_worker_pods(
    chart: list[Doc], worker_pod: dict[str, Any]
) -> None:
    env = env_of(worker_pod["spec"])
    assert env["CONVEYOR_LOG_FORMAT"]["value"] == "text"
    assert env["INFLUX_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "plant-influx", "key": "token"}
    }
    assert env["REDIS_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "plant-redis", "key": "pw"}
    }
    # The same Redis, InfluxDB and probe port as the chart's own pods use.
    gateway = env_of(pod_templates(chart)["Deployment/conveyor-gateway"])
    for name in ("REDIS_URL", "REDIS_CLUSTER", "PROBE_PORT"):
        assert env[name] == gateway[name], name
    assert env["REDIS_CLUSTER"]["value"] == "true"
    assert env["INFLUX_URL"]["value"] == "http://influxdb.plant.example:8086"
    assert env["INFLUX_BUCKET"]["value"] == "line3"
    assert env["INFLUX_ORG"]["value"] == "plant"
    assert "from-the-secret" not in repr(worker_pod)


def test_worker_pods_run_as_the_charts_account_inside_its_network_policy(
    chart: list[Doc], worker_pod: dict[str, Any]
) -> None:
    account = worker_pod["spec"]["serviceAccountName"]
    assert one(chart, "ServiceAccount", account)["metadata"]["namespace"] == NS
    policy = one(chart, "NetworkPolicy", "conveyor-worker")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    labels = worker_pod["metadata"]["labels"]
    assert selector.items() <= labels.items()
    # The policies that admit workers to Redis select them by the same labels.
    redis_policy = one(chart, "NetworkPolicy", "conveyor-redis")
    admitted = [
        peer["podSelector"]["matchLabels"]
        for rule in redis_policy["spec"]["ingress"]
        for peer in rule.get("from", [])
        if "podSelector" in peer
    ]
    assert any(sel.items() <= labels.items() for sel in admitted), admitted


def test_worker_pods_have_the_shape_of_the_charts_pods(
    chart: list[Doc], worker_pod: dict[str, Any]
) -> None:
    # The operator's pod: like a worker, it serves only its probes and metrics.
    operator = pod_templates(chart)["Deployment/conveyor-operator"]
    [theirs] = operator["containers"]
    [ours] = worker_pod["spec"]["containers"]
    assert worker_pod["spec"]["securityContext"] == operator["securityContext"]
    assert ours["ports"] == theirs["ports"]
    for key in ("securityContext", "livenessProbe", "readinessProbe", "volumeMounts"):
        assert ours[key] == theirs[key], key
    assert worker_pod["spec"]["automountServiceAccountToken"] is False
    # The chart itself renders no worker pods: the operator's are the only definition.
    components = {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in by_kind(chart, "Deployment")
    }
    assert "operator" in components
    assert "worker" not in components
