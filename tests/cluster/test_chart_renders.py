"""The chart as helm renders it: lint, the important values, the schema's refusal of typos,
and install.yaml kept in step with the chart."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.cluster.chart import (
    CHART,
    INSTALL_VALUES,
    by_kind,
    env_of,
    helm,
    one,
    pod_templates,
    render,
    render_fails,
)
from tests.helpers import KUBE_VERSION, ROOT

pytestmark = pytest.mark.cluster


def test_lint() -> None:
    done = helm("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_pod_is_locked_down_and_labelled() -> None:
    docs = render("influxdb.enabled=true")  # off by default
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert {d["metadata"]["name"] for d in workloads} == {
        "conveyor-operator",
        "conveyor-gateway",
        "conveyor-ingestor",
        "conveyor-redis",
        "conveyor-mosquitto",
        "conveyor-influxdb",
    }
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["livenessProbe"]
            assert c["readinessProbe"]
            assert c["resources"]["requests"]
        labels = w["spec"]["template"]["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
        ):
            assert key in labels


def test_ingestor_is_a_statefulset_whose_pod_name_is_the_client_id() -> None:
    [sts] = [
        d for d in by_kind(render(), "StatefulSet") if d["metadata"]["name"] == "conveyor-ingestor"
    ]
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MQTT_CLIENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["MQTT_SHARE_GROUP"]["value"] == "conveyor"
    # The broker's ingestor listener, through the Service that reaches it before it is ready.
    assert env["MQTT_BROKER_URL"]["value"] == "mqtt://conveyor-mosquitto-ingest:1884"
    assert env["REDIS_URL"]["value"] == "redis://conveyor-redis:6379/0"


def test_the_ingestors_bounds_reach_its_environment() -> None:
    sets = (
        "ingestor.receiveMaximum=321",
        "ingestor.deadMaxBytes=2097152",
        "ingestor.maxPayloadBytes=4096",
    )
    [sts] = by_kind(render(*sets, show_only="templates/ingestor-statefulset.yaml"), "StatefulSet")
    env = {
        e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MQTT_RECEIVE_MAXIMUM"] == "321"
    assert env["INGEST_DEAD_MAX_BYTES"] == "2097152"
    assert env["INGEST_MAX_PAYLOAD_BYTES"] == "4096"


def test_external_services_and_secrets_by_reference() -> None:
    docs = render(
        "redis.enabled=false",
        "redis.url=redis://r.example:6379/0",
        "redis.existingSecret=redis",
        "mqtt.enabled=false",
        "mqtt.brokerUrl=mqtts://b.example:8883",
        "mqtt.existingSecret=mqtt",
    )
    names = {d["metadata"]["name"] for d in docs}
    assert "conveyor-redis" not in names
    assert "conveyor-mosquitto" not in names
    [sts] = [
        d for d in by_kind(docs, "StatefulSet") if d["metadata"]["name"] == "conveyor-ingestor"
    ]
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis",
        "key": "redis-password",
    }
    assert env["MQTT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mqtt"
    assert "hunter2" not in str(docs)


def test_cluster_wide_operator_gets_a_cluster_role() -> None:
    docs = render("operator.clusterWide=true")
    names = [r["metadata"]["name"] for r in by_kind(docs, "ClusterRole")]
    assert sorted(names) == ["conveyor-crds.conveyor", "conveyor-operator"]  # and the CRD hook's
    # The uninstall hook's Role stays namespaced: it deletes the release namespace's queues.
    assert [r["metadata"]["name"] for r in by_kind(docs, "Role")] == ["conveyor-uninstall"]


def test_two_operator_replicas_run_as_a_peered_pair() -> None:
    from conveyor.operator_command import PEERING_NAME

    assert not by_kind(render(), "KopfPeering")  # one replica: standalone
    docs = render("operator.replicas=2")
    [peering] = by_kind(docs, "KopfPeering")
    assert peering["metadata"]["name"] == PEERING_NAME
    [operator] = [
        d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-operator")
    ]
    env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OPERATOR_PEERING"]["value"] == "true"
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert by_kind(render("operator.replicas=2", "operator.clusterWide=true"), "ClusterKopfPeering")


def test_default_queues_are_the_original_design() -> None:
    from conveyor_messages import DEFAULT_QUEUES  # the table, pinned in tests/unit

    queues = {d["spec"]["queue"]: d["spec"] for d in by_kind(render(), "MessageQueue")}
    assert {q: (s["priority"], s["concurrency"]) for q, s in queues.items()} == {
        q.name: (q.priority, q.concurrency) for q in DEFAULT_QUEUES
    }


@pytest.mark.parametrize("when", ["Retain", "Delete"])
def test_the_in_chart_stores_volumes_follow_volume_claims_on_uninstall(when: str) -> None:
    docs = render("influxdb.enabled=true", f"volumeClaimsOnUninstall={when}")
    for name in ("conveyor-redis", "conveyor-mosquitto", "conveyor-influxdb"):
        sts = one(docs, "StatefulSet", name)["spec"]
        assert sts["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": when,
            "whenScaled": "Retain",
        }, name
        assert sts["volumeClaimTemplates"], name
    # On an emptyDir there is no claim to keep or delete.
    redis = one(render("redis.persistenceSize="), "StatefulSet", "conveyor-redis")["spec"]
    assert "persistentVolumeClaimRetentionPolicy" not in redis
    assert "volumeClaimTemplates" not in redis


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["redis.porrt=1"], "additional properties 'porrt' not allowed"),
        (["mqtt.brokerUrl=http://x"], "does not match pattern"),
        (["redis.enabled=false", "redis.auth=false"], "set redis.url"),
        (["worker.drainTimeoutSeconds=60"], "terminationGracePeriodSeconds must exceed"),
        (["ingestor.receiveMaximum=0"], "minimum"),
        (["ingestor.receiveMaximum=70000"], "maximum"),
        (["ingestor.deadMaxBytes=1024"], "minimum"),
        (["ingestor.maxPayloadBytes=1000000000"], "maximum"),
        (["volumeClaimsOnUninstall=Maybe"], "must be one of"),
    ],
)
def test_bad_values_fail_with_a_message(values: list[str], message: str) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    done = helm("template", "conveyor", str(CHART), "--kube-version", KUBE_VERSION, *sets)
    assert done.returncode != 0
    assert message in done.stderr


def test_install_yaml_matches_the_chart() -> None:
    done = helm(
        "template",
        "conveyor",
        str(CHART),
        "--namespace",
        "conveyor",
        "--include-crds",
        "--no-hooks",  # kubectl apply would run the uninstall hook at once
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(INSTALL_VALUES),  # Secrets by name: a render with generated ones differs each time
    )
    assert done.returncode == 0, done.stderr
    lines = (ROOT / "manifests" / "install.yaml").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    assert "\n".join(lines[header:]).strip() == done.stdout.strip(), (
        "manifests/install.yaml is stale: run hack/render-install.sh"
    )


def test_chart_and_manifests_carry_the_same_crd() -> None:
    name = "conveyor.io_messagequeues.yaml"
    assert (CHART / "crds" / name).read_text() == (
        ROOT / "manifests" / "crd" / "bases" / name
    ).read_text()


def test_every_value_is_documented_and_the_readme_is_current() -> None:
    import sys

    done = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "chart_readme.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_sparkplug_is_off_by_default_and_on_tells_each_replica_its_index() -> None:
    def ingestor_env(*sets: str) -> dict[str, Any]:
        return env_of(pod_templates(render(*sets))["StatefulSet/conveyor-ingestor"])

    assert not [name for name in ingestor_env() if name.startswith("INGEST_SPARKPLUG")]
    env = ingestor_env(
        "ingestor.sparkplug.enabled=true",
        "ingestor.sparkplug.groups={plant1,plant2}",
        "ingestor.replicas=3",
    )
    assert env["INGEST_SPARKPLUG"]["value"] == "true"
    assert env["INGEST_SPARKPLUG_GROUPS"]["value"] == "plant1,plant2"
    assert env["INGEST_REPLICA_INDEX"]["valueFrom"] == {  # replica 0 publishes the STATE
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert "INGEST_SPARKPLUG_HOST_ID" not in env


def test_sparkplug_values_that_are_not_topic_levels_are_refused() -> None:
    for bad in ("ingestor.sparkplug.groups={a#b}", "ingestor.sparkplug.hostId=a/b"):
        assert "values don't meet the specifications" in render_fails(
            "ingestor.sparkplug.enabled=true", bad
        ), bad


def test_a_sparkplug_host_id_needs_a_broker_that_keeps_retained_messages() -> None:
    sets = ("ingestor.sparkplug.enabled=true", "ingestor.sparkplug.hostId=conveyor")
    message = render_fails(*sets)
    assert "ingestor.sparkplug.hostId needs a broker that keeps retained messages" in message
    docs = render(*sets, "mqtt.retainAvailable=true")
    env = env_of(pod_templates(docs)["StatefulSet/conveyor-ingestor"])
    assert env["INGEST_SPARKPLUG_HOST_ID"]["value"] == "conveyor"
