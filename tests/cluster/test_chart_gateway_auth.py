"""The gateway's auth as the chart installs it: by default reads and the stream require the
token, which the gateway gets by reference from a Secret the chart generates - kept across
upgrades on a real API server, and read with the command NOTES.txt prints - or from the
installer's Secret; origins and limits reach the gateway's environment; bad values fail."""

from __future__ import annotations

import base64
import re
import uuid

import pytest
import yaml

from tests.cluster.chart import Doc, env_of, one, pod_templates, render, render_fails
from tests.cluster.conftest import KubeCluster
from tests.helpers import ROOT

pytestmark = pytest.mark.cluster
CHART = ROOT / "charts" / "conveyor"


def gateway_pod(docs: list[Doc]) -> Doc:
    return pod_templates(docs)["Deployment/conveyor-gateway"]


def test_by_default_reads_and_the_stream_need_a_generated_token() -> None:
    docs = render()
    pod = gateway_pod(docs)
    env = env_of(pod)
    assert env["GATEWAY_READ_AUTH"]["value"] == "true"
    assert env["GATEWAY_STREAM_AUTH"]["value"] == "true"
    assert env["GATEWAY_API_TOKEN"] == {
        "name": "GATEWAY_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "conveyor-gateway-token", "key": "api-token"}},
    }
    secret = one(docs, "Secret", "conveyor-gateway-token")
    assert secret["metadata"]["namespace"] == "conveyor"
    token = base64.b64decode(secret["data"]["api-token"]).decode()
    assert len(token) >= 32
    assert token.isalnum()
    others = [d for d in docs if d is not secret]
    assert token not in yaml.safe_dump_all(others)  # only ever by reference
    assert pod["automountServiceAccountToken"] is False
    assert env["GATEWAY_ALLOWED_ORIGINS"]["value"] == ""  # the gateway's own origin only
    # Every client at its byte bound still fits in the pod's memory limit, with room to spare.
    worst = int(env["GATEWAY_MAX_CONNECTIONS"]["value"]) * int(
        env["GATEWAY_CLIENT_BUFFER_BYTES"]["value"]
    )
    limit = pod["containers"][0]["resources"]["limits"]["memory"]
    assert limit.endswith("Mi"), limit
    assert worst <= int(limit[:-2]) * 2**20 // 2, (worst, limit)


def test_each_render_without_a_cluster_draws_a_new_token() -> None:
    tokens = {
        one(render(), "Secret", "conveyor-gateway-token")["data"]["api-token"] for _ in range(2)
    }
    assert len(tokens) == 2  # random, not a value baked into the chart


def test_the_installers_secret_is_referenced_and_none_generated() -> None:
    docs = render("gateway.existingTokenSecret=plant-gateway", "gateway.tokenKey=token")
    env = env_of(gateway_pod(docs))
    assert env["GATEWAY_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "plant-gateway",
        "key": "token",
    }
    assert not [d for d in docs if d["kind"] == "Secret" and "gateway" in d["metadata"]["name"]]


def test_auth_origins_and_limits_reach_the_gateway() -> None:
    docs = render(
        "gateway.readAuth=false",
        "gateway.streamAuth=false",
        "gateway.allowedOrigins={https://screens.example,http://hmi.example:8080}",
        "gateway.maxConnections=50",
        "gateway.clientBufferBytes=1048576",
    )
    env = env_of(gateway_pod(docs))
    assert env["GATEWAY_READ_AUTH"]["value"] == "false"
    assert env["GATEWAY_STREAM_AUTH"]["value"] == "false"
    assert env["GATEWAY_ALLOWED_ORIGINS"]["value"] == (
        "https://screens.example,http://hmi.example:8080"
    )
    assert env["GATEWAY_MAX_CONNECTIONS"]["value"] == "50"
    assert env["GATEWAY_CLIENT_BUFFER_BYTES"]["value"] == "1048576"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gateway.readAuht=true", "additional properties 'readAuht' not allowed"),
        ("gateway.allowedOrigins={screens.example}", "does not match pattern"),
        ("gateway.allowedOrigins={https://a.example/path}", "does not match pattern"),
        ("gateway.maxConnections=0", "minimum"),
        ("gateway.clientBufferBytes=1024", "minimum"),
    ],
)
def test_bad_gateway_values_fail(value: str, message: str) -> None:
    assert message in render_fails(value)


def test_the_token_survives_an_upgrade_and_notes_say_how_to_read_it(crd: KubeCluster) -> None:
    kube = crd
    ns = f"gw-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    try:
        installed = kube.helm("install", "conveyor", str(CHART), "-n", ns)
        [command] = re.findall(r"^\s*kubectl get secret .*$", installed.stdout, re.MULTILINE)
        assert command.strip() == (
            f"kubectl get secret -n {ns} conveyor-gateway-token "
            "-o jsonpath='{.data.api-token}' | base64 -d"
        )
        printed = kube.kubectl(
            "get", "secret", "-n", ns, "conveyor-gateway-token", "-o", "jsonpath={.data.api-token}"
        ).stdout
        token = base64.b64decode(printed).decode()
        assert len(token) >= 32

        kube.helm("upgrade", "conveyor", str(CHART), "-n", ns, "--set", "gateway.maxConnections=5")
        kept = kube.get("secret/conveyor-gateway-token", "-n", ns)["data"]["api-token"]
        assert base64.b64decode(kept).decode() == token
        deployment = kube.get("deploy/conveyor-gateway", "-n", ns)
        env = env_of(deployment["spec"]["template"]["spec"])
        assert env["GATEWAY_MAX_CONNECTIONS"]["value"] == "5"
    finally:
        kube.helm("uninstall", "conveyor", "-n", ns, check=False)
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_charts_read_influxdb_with_a_token_by_reference_a_read_only_one_first() -> None:
    """Without influx.url the gateway has no INFLUX_* and no egress to InfluxDB; with it, the
    URL and bucket, the token of influx.readSecret (else the workers') only by reference, and
    egress to the URL's port."""
    bare = env_of(gateway_pod(render()))
    assert not [name for name in bare if name.startswith("INFLUX_")]

    url = "influx.url=https://influx.data.svc:8443"
    workers = env_of(gateway_pod(render(url, "influx.existingSecret=influx-writer")))
    assert workers["INFLUX_URL"]["value"] == "https://influx.data.svc:8443"
    assert workers["INFLUX_BUCKET"]["value"] == "conveyor/autogen"
    assert workers["INFLUX_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "influx-writer", "key": "influx-token"}
    }
    docs = render(url, "influx.existingSecret=influx-writer", "influx.readSecret=influx-reader")
    reader = env_of(gateway_pod(docs))
    assert reader["INFLUX_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "influx-reader", "key": "influx-read-token"}
    }
    assert "value" not in reader["INFLUX_TOKEN"]
    policy = one(docs, "NetworkPolicy", "conveyor-gateway")
    ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])]
    assert 8443 in ports
    assert 8443 not in [
        p["port"]
        for rule in one(render(), "NetworkPolicy", "conveyor-gateway")["spec"]["egress"]
        for p in rule.get("ports", [])
    ]
