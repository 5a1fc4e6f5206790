"""`helm template` with default values renders a Redis with a password, an authenticated broker
that keeps no retained messages and bounds its connections, NetworkPolicies, pods without API
tokens and the operator's least-privilege Role; external services without credentials are
refused; and no object but a Secret carries a password."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from tests.cluster.chart import CHART, by_kind, env_of, one, pod_templates, render, render_fails

pytestmark = pytest.mark.cluster
RELEASE_PODS = (
    "Deployment/conveyor-operator",
    "Deployment/conveyor-gateway",
    "StatefulSet/conveyor-ingestor",
    "StatefulSet/conveyor-redis",
    "StatefulSet/conveyor-mosquitto",
    "Job/conveyor-uninstall",
)


def redis_args() -> list[str]:
    sts = one(render(), "StatefulSet", "conveyor-redis")
    args: list[str] = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_redis_has_a_generated_password_that_every_component_reads_by_reference() -> None:
    docs = render()
    secret = one(docs, "Secret", "conveyor-redis")
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert len(password) >= 32
    pods = pod_templates(docs)
    for name in ("Deployment/conveyor-operator", "Deployment/conveyor-gateway"):
        ref = env_of(pods[name])["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "conveyor-redis", "key": "redis-password"}, name
    assert "REDIS_PASSWORD" in env_of(pods["StatefulSet/conveyor-ingestor"])
    redis = pods["StatefulSet/conveyor-redis"]
    args = redis["containers"][0]["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--protected-mode") + 1] == "yes"
    env = env_of(redis)
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "conveyor-redis"
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == "conveyor-redis"
    probe = redis["containers"][0]["readinessProbe"]["exec"]["command"]
    assert "PONG" in probe[-1]  # redis-cli exits 0 on NOAUTH: the probe must read the reply
    # Not a value anywhere but in the Secret.
    others = [d for d in docs if d["kind"] != "Secret"]
    assert password not in json.dumps(others)


def test_a_generated_password_differs_between_renders_and_an_existing_secret_is_used() -> None:
    first, second = (one(render(), "Secret", "conveyor-redis")["data"] for _ in range(2))
    assert first != second  # helm template cannot look up: each render generates
    docs = render("redis.existingSecret=mine", "redis.passwordKey=pw")
    assert not [d for d in by_kind(docs, "Secret") if d["metadata"]["name"] == "conveyor-redis"]
    ref = env_of(pod_templates(docs)["Deployment/conveyor-operator"])["REDIS_PASSWORD"]
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "pw"}


@pytest.mark.parametrize(
    ("limit", "maxmemory"),
    [
        ("512Mi", 429496729),  # the default: 80 % of the limit
        ("1Gi", 858993459),
        ("500M", 400000000),
        ("1000000000", 800000000),
    ],
)
def test_redis_maxmemory_is_80_percent_of_its_limit_without_eviction(
    limit: str, maxmemory: int
) -> None:
    docs = render(f"redis.resources.limits.memory={limit}")
    args = pod_templates(docs)["StatefulSet/conveyor-redis"]["containers"][0]["args"]
    assert int(args[args.index("--maxmemory") + 1]) == maxmemory
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"


def test_redis_maxmemory_can_be_set_and_a_redis_without_bound_is_refused() -> None:
    docs = render("redis.maxmemory=100Mi")
    args = pod_templates(docs)["StatefulSet/conveyor-redis"]["containers"][0]["args"]
    assert args[args.index("--maxmemory") + 1] == str(100 * 1024 * 1024)
    assert "set redis.resources.limits.memory" in render_fails("redis.resources.limits=null")
    assert "cannot read" in render_fails("redis.resources.limits.memory=1.5Gi")


def test_an_external_redis_needs_its_password_unless_explicitly_opted_out() -> None:
    url = "redis.url=redis://r.example:6379/0"
    assert "set redis.existingSecret" in render_fails("redis.enabled=false", url)
    docs = render("redis.enabled=false", url, "redis.auth=false")  # UNSAFE, but said so
    assert "REDIS_PASSWORD" not in env_of(pod_templates(docs)["Deployment/conveyor-operator"])
    assert not by_kind(docs, "Secret") or all(
        d["metadata"]["name"] != "conveyor-redis" for d in by_kind(docs, "Secret")
    )
    assert "always has one" in render_fails("redis.auth=false")  # not for the in-chart Redis


def test_the_broker_refuses_anonymous_clients_and_builds_its_users_from_secrets() -> None:
    docs = render("mqtt.devicesSecret=devices")
    config = one(docs, "ConfigMap", "conveyor-mosquitto")["data"]
    conf = config["mosquitto.conf"].splitlines()
    assert "allow_anonymous false" in conf
    assert "per_listener_settings false" in conf
    assert "max_packet_size 327680" in conf  # ingestor.maxPayloadBytes + 64 KiB
    assert "max_queued_bytes 67108864" in conf
    assert "retain_available false" in conf  # a device cannot park retained topics in it
    assert "max_connections 1000" in conf
    roles = json.loads(config["roles.json"])
    [ingestor] = [r for r in roles if r["rolename"] == "ingestor"]
    subscriptions = {a["topic"] for a in ingestor["acls"] if a["acltype"] == "subscribePattern"}
    assert subscriptions == {
        f"$share/conveyor/+/{t}" for t in ("alerts", "realtime", "spc", "tech")
    }
    sts = pod_templates(docs)["StatefulSet/conveyor-mosquitto"]
    [init] = sts["initContainers"]
    assert init["command"] == ["sh", "/mosquitto/config/build-auth.sh"]
    assert sts["containers"][0]["args"] == ["mosquitto", "-c", "/mosquitto/auth/mosquitto.conf"]
    volumes = {v["name"]: v for v in sts["volumes"]}
    assert volumes["ingestor"]["secret"]["secretName"] == "conveyor-mqtt"
    assert volumes["devices"]["secret"]["secretName"] == "devices"
    assert volumes["auth"]["emptyDir"]["medium"] == "Memory"
    secret = one(docs, "Secret", "conveyor-mqtt")["data"]
    assert base64.b64decode(secret["username"]) == b"conveyor-ingestor"
    env = env_of(pod_templates(docs)["StatefulSet/conveyor-ingestor"])
    for name, key in (("MQTT_USERNAME", "username"), ("MQTT_PASSWORD", "password")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "conveyor-mqtt", "key": key}


def test_the_broker_grants_the_routed_filters_and_the_publishers_topics() -> None:
    docs = render(
        "ingestor.routes[0].filter=plant/+/spc/#",
        "ingestor.routes[0].queue=spc",
        "ingestor.routes[0].kind=spc",
        "mqtt.shareGroup=",
        "mqtt.publishers[0].username=bridge",
        "mqtt.publishers[0].topics={plant/#}",
    )
    config = one(docs, "ConfigMap", "conveyor-mosquitto")["data"]
    roles = {r["rolename"]: r["acls"] for r in json.loads(config["roles.json"])}
    assert {(a["acltype"], a["topic"]) for a in roles["ingestor"]} == {
        ("subscribePattern", "plant/+/spc/#"),  # no share group: the plain filter
        ("publishClientReceive", "plant/+/spc/#"),
    }
    assert roles["publisher-bridge"] == [
        {"acltype": "publishClientSend", "topic": "plant/#", "allow": True}
    ]
    assert 'PUBLISHERS=" bridge "' in config["build-auth.sh"]


def test_retained_messages_and_the_connection_bound_follow_their_values() -> None:
    docs = render("mqtt.retainAvailable=true", "mqtt.maxConnections=20")
    conf = one(docs, "ConfigMap", "conveyor-mosquitto")["data"]["mosquitto.conf"].splitlines()
    assert "retain_available true" in conf
    assert "max_connections 20" in conf
    assert "maxConnections" in render_fails("mqtt.maxConnections=0")  # no unbounded broker
    assert "retainAvailable" in render_fails("mqtt.retainAvailable=maybe")


def test_max_packet_size_must_exceed_the_ingestors_largest_payload() -> None:
    message = render_fails("mqtt.maxPacketSize=1000", "ingestor.maxPayloadBytes=1000")
    assert "must exceed ingestor.maxPayloadBytes" in message


def test_no_pod_but_the_operators_and_the_hooks_mounts_an_api_token() -> None:
    docs = render("imagePullSecrets[0].name=regcred")
    pods = pod_templates(docs)
    assert set(RELEASE_PODS) <= set(pods)
    for name, pod in pods.items():
        assert pod.get("imagePullSecrets") == [{"name": "regcred"}], name
        if name in ("Deployment/conveyor-operator", "Job/conveyor-uninstall", "Job/conveyor-crds"):
            assert pod["serviceAccountName"] == name.split("/")[1]
        else:
            assert pod.get("automountServiceAccountToken") is False, name
    worker_sa = one(docs, "ServiceAccount", "conveyor-worker")
    assert worker_sa["automountServiceAccountToken"] is False
    assert worker_sa["imagePullSecrets"] == [{"name": "regcred"}]


def test_the_uninstall_hook_has_its_own_identity_that_may_only_delete_messagequeues() -> None:
    docs = render()
    job = pod_templates(docs)["Job/conveyor-uninstall"]
    assert job["serviceAccountName"] == "conveyor-uninstall"
    role = one(docs, "Role", "conveyor-uninstall")
    assert role["rules"] == [
        {
            "apiGroups": ["conveyor.io"],
            "resources": ["messagequeues"],
            "verbs": ["get", "list", "delete", "patch"],
        }
    ]
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        hook = one(docs, kind, "conveyor-uninstall")["metadata"]["annotations"]
        assert hook["helm.sh/hook"] == "pre-delete"  # exists only while uninstalling


def test_the_crds_hook_may_only_get_and_patch_the_charts_crds_while_upgrading() -> None:
    crds = [
        doc
        for path in sorted((CHART / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    docs = render()
    role = one(docs, "ClusterRole", "conveyor-crds.conveyor")
    assert role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": [crd["metadata"]["name"] for crd in crds],
            "verbs": ["get", "patch"],
        }
    ]
    binding = one(docs, "ClusterRoleBinding", "conveyor-crds.conveyor")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "conveyor-crds", "namespace": "conveyor"}
    ]
    job = pod_templates(docs)["Job/conveyor-crds"]
    assert job["serviceAccountName"] == "conveyor-crds"
    [container] = job["containers"]
    files = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert container["args"] == ["apply-crds", *(f"/crds/{f}" for f in files)]
    data = one(docs, "ConfigMap", "conveyor-crds")["data"]
    assert data == {f: (CHART / "crds" / f).read_text() for f in files}  # the chart's, verbatim
    for kind, name in (
        ("ServiceAccount", "conveyor-crds"),
        ("ClusterRole", "conveyor-crds.conveyor"),
        ("ClusterRoleBinding", "conveyor-crds.conveyor"),
        ("ConfigMap", "conveyor-crds"),
        ("NetworkPolicy", "conveyor-crds"),
        ("Job", "conveyor-crds"),
    ):
        hook = one(docs, kind, name)["metadata"]["annotations"]
        assert hook["helm.sh/hook"] == "pre-upgrade", kind  # not at install: crds/ does that
        assert "hook-succeeded" in hook["helm.sh/hook-delete-policy"], kind
    off = render("crds.upgrade=false")
    assert not [d for d in off if d["metadata"]["name"].startswith("conveyor-crds")]
    # `helm upgrade --reuse-values` of a release from before this value: on by default.
    reused = render("crds=null")
    assert one(reused, "Job", "conveyor-crds")


def test_the_operators_role_holds_no_delete_and_no_update() -> None:
    for sets in ([], ["operator.replicas=2"], ["operator.clusterWide=true"]):
        docs = render(*sets)
        kind = "ClusterRole" if "operator.clusterWide=true" in sets else "Role"
        role = one(docs, kind, "conveyor-operator")
        verbs = {v for rule in role["rules"] for v in rule["verbs"]}
        assert not verbs & {"delete", "deletecollection", "update", "*"}, sets
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        assert not resources & {"secrets", "configmaps", "namespaces", "pods/exec"}, sets
        # Pods: only to set worker pods' deletion costs, which the admission policy narrows to.
        pods = {v for rule in role["rules"] if "pods" in rule["resources"] for v in rule["verbs"]}
        assert pods == {"patch"}, sets
    # Without the admission policy, patch on pods could change any pod: the Role holds none.
    role = one(render("admissionPolicy.enabled=false"), "Role", "conveyor-operator")
    assert not any("pods" in rule["resources"] for rule in role["rules"])


def test_one_operator_replica_is_replaced_not_rolled() -> None:
    operator = one(render(), "Deployment", "conveyor-operator")
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    operator = one(render("operator.replicas=2"), "Deployment", "conveyor-operator")
    assert "strategy" not in operator["spec"]  # peered: a rolling update is safe


def test_every_namespaced_object_names_its_namespace() -> None:
    cluster_scoped = {
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for sets in ([], ["operator.replicas=2"]):
        for doc in render(*sets, ns="elsewhere"):
            if doc["kind"] not in cluster_scoped:
                assert doc["metadata"].get("namespace") == "elsewhere", doc["kind"]


def test_network_policies_are_on_and_deny_by_default() -> None:
    docs = render()
    policies = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "NetworkPolicy")}
    assert set(policies) == {
        "conveyor-default-deny",
        "conveyor-worker-default-deny",
        "conveyor-redis",
        "conveyor-mosquitto",
        "conveyor-operator",
        "conveyor-uninstall",
        "conveyor-crds",
        "conveyor-ingestor",
        "conveyor-gateway",
        "conveyor-worker",
    }
    for spec in policies.values():
        assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert policies["conveyor-default-deny"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "conveyor",
        "app.kubernetes.io/instance": "conveyor",
    }
    assert policies["conveyor-worker-default-deny"]["podSelector"]["matchLabels"] == {
        "conveyor.io/release": "conveyor",
        "app.kubernetes.io/component": "worker",
    }
    assert not by_kind(render("networkPolicy.enabled=false"), "NetworkPolicy")
