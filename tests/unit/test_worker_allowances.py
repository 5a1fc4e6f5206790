"""What the installer allows a MessageQueue's workers: image prefixes that match whole path
components (``team/`` never allows ``team-evil/``), tolerations only as narrow as the allowed
ones, node selectors from a list, a replica ceiling, and env that neither reads Secrets nor
redirects the credentials the operator gives every worker."""

from __future__ import annotations

from typing import Any

import pytest
from conveyor_operator.allowances import (
    Allowances,
    image_allowed,
    is_image_reference,
    prefix_matches,
    spec_problems,
    toleration_covered,
)

OWN = "ghcr.io/acme/conveyor:0.1.0"
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("prefix", "image", "allowed"),
    [
        ("registry.example.com/team/", "registry.example.com/team/app:1", True),
        ("registry.example.com/team/", "registry.example.com/team/tools/app", True),
        ("registry.example.com/team/", "registry.example.com/team-evil/app:1", False),
        ("registry.example.com/team/", "registry.example.com/team/", False),
        ("registry.example.com/team", "registry.example.com/team-evil/app:1", False),
        ("registry.example.com/team", "registry.example.com/team/app:1", False),  # a repository
        ("registry.example.com/team/app", "registry.example.com/team/app:1.2", True),
        ("registry.example.com/team/app", f"registry.example.com/team/app@{DIGEST}", True),
        ("registry.example.com/team/app", "registry.example.com/team/app", True),
        ("registry.example.com/team/app", "registry.example.com/team/app-evil:1", False),
        ("registry.example.com/team/app", "registry.example.com/team/app/sub:1", False),
        ("registry.example.com/team/app:1.2", "registry.example.com/team/app:1.2", True),
        ("registry.example.com/team/app:1.2", "registry.example.com/team/app:1.2.3", False),
        ("registry.example.com/team/app:", "registry.example.com/team/app:9", True),
        ("registry.example.com:5000/", "registry.example.com:5000/x/y:1", True),
        ("registry.example.com:5000/", "registry.example.com:50000/x:1", False),
        ("", "anything:1", False),
    ],
)
def test_prefixes_match_whole_components(prefix: str, image: str, allowed: bool) -> None:
    assert prefix_matches(image, prefix) is allowed


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.com/team/../evil/app:1",
        "registry.example.com/team/App:1",
        "registry.example.com/team/app:1 ",
        "registry.example.com/team//app",
        "registry.example.com/team/app:-bad",
    ],
)
def test_a_malformed_reference_never_passes_a_prefix(image: str) -> None:
    assert not is_image_reference(image)
    assert not image_allowed(image, own=OWN, prefixes=["registry.example.com/team/"])


def test_the_operators_own_image_is_always_allowed_and_nothing_else_by_default() -> None:
    assert image_allowed(OWN, own=OWN, prefixes=[])
    assert not image_allowed("ghcr.io/acme/conveyor:0.2.0", own=OWN, prefixes=[])
    assert not image_allowed("busybox", own=OWN, prefixes=[])
    assert is_image_reference(f"localhost:5000/a/b:c@{DIGEST}")
    assert is_image_reference("conveyor:test")


GPU_ANY = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("requested", "allowed", "covered"),
    [
        (GPU_ANY, GPU_ANY, True),
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, GPU_ANY, True),
        (  # narrower: one value of the key
            {"key": "nvidia.com/gpu", "operator": "Equal", "value": "a100", "effect": "NoSchedule"},
            GPU_ANY,
            True,
        ),
        (  # wider: every effect of the key
            {"key": "nvidia.com/gpu", "operator": "Exists"},
            GPU_ANY,
            False,
        ),
        (  # every key: the control plane too
            {"operator": "Exists"},
            GPU_ANY,
            False,
        ),
        (
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
            GPU_ANY,
            False,
        ),
        (  # a value the installer did not list
            {"key": "pool", "value": "b", "effect": "NoSchedule"},
            {"key": "pool", "value": "a", "effect": "NoSchedule"},
            False,
        ),
        (  # Equal is the default operator
            {"key": "pool", "operator": "Equal", "value": "a", "effect": "NoSchedule"},
            {"key": "pool", "value": "a", "effect": "NoSchedule"},
            True,
        ),
        (  # Exists where only one value is allowed
            {"key": "pool", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "pool", "value": "a", "effect": "NoSchedule"},
            False,
        ),
        (  # tolerationSeconds: shorter is narrower, none (forever) is wider
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            True,
        ),
        (
            {"key": "k", "operator": "Exists", "effect": "NoExecute"},
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            False,
        ),
        ({"operator": "Exists"}, {"operator": "Exists"}, True),  # the installer's choice
    ],
)
def test_a_toleration_must_be_as_narrow_as_an_allowed_one(
    requested: dict[str, Any], allowed: dict[str, Any], covered: bool
) -> None:
    assert toleration_covered(requested, allowed) is covered


ALLOWANCES = Allowances(
    worker_image=OWN,
    images=("registry.example.com/team/",),
    tolerations=(GPU_ANY,),
    node_selectors={"topology.kubernetes.io/zone": ("a", "b")},
    max_replicas_ceiling=20,
    operator_env=frozenset({"REDIS_URL", "PROBE_PORT", "CONVEYOR_LOG_FORMAT"}),
)


def test_a_spec_within_the_allowances_has_no_problems() -> None:
    spec = {
        "queue": "q",
        "maxReplicas": 20,
        "worker": {
            "image": "registry.example.com/team/app:1",
            "tolerations": [GPU_ANY],
            "nodeSelector": {"topology.kubernetes.io/zone": "b"},
            "env": [{"name": "PLANT", "value": "north"}],
        },
    }
    assert spec_problems(spec, ALLOWANCES) == []
    assert spec_problems({"queue": "q"}, ALLOWANCES) == []


def test_each_problem_names_the_field_and_the_chart_value() -> None:
    spec = {
        "queue": "q",
        "maxReplicas": 21,
        "worker": {
            "image": "registry.example.com/team-evil/app:1",
            "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
            "nodeSelector": {"topology.kubernetes.io/zone": "c", "kubernetes.io/hostname": "n1"},
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "REDIS_URL", "value": "redis://attacker:6379"},
                {"name": "REDIS_HOST", "value": "attacker"},
                {"name": "INFLUX_URL", "value": "http://attacker"},
                {"name": "PROBE_PORT", "value": "1"},
            ],
        },
    }
    problems = spec_problems(spec, ALLOWANCES)
    text = "\n".join(problems)
    assert "spec.worker.image 'registry.example.com/team-evil/app:1' is not allowed" in text
    assert "chart value operator.allowedImages" in text
    assert "spec.worker.tolerations[0]" in text
    assert "chart value worker.allowedTolerations" in text
    assert "spec.worker.nodeSelector kubernetes.io/hostname=n1 is not allowed" in text
    assert "spec.worker.nodeSelector topology.kubernetes.io/zone=c is not allowed" in text
    assert "chart value worker.allowedNodeSelectors" in text
    assert "spec.maxReplicas 21 is above the ceiling of 20" in text
    assert "chart value operator.maxReplicasCeiling" in text
    assert "spec.worker.env[0]: valueFrom not allowed" in text
    for i, name in enumerate(("REDIS_URL", "REDIS_HOST", "INFLUX_URL", "PROBE_PORT"), start=1):
        assert f"spec.worker.env[{i}].name {name} is set by the operator" in text
    assert len(problems) == 10


def test_by_default_no_toleration_or_node_selector_is_allowed() -> None:
    bare = Allowances(worker_image=OWN)
    spec = {
        "queue": "q",
        "worker": {"tolerations": [GPU_ANY], "nodeSelector": {"zone": "a"}},
    }
    text = "\n".join(spec_problems(spec, bare))
    assert "(chart value worker.allowedTolerations allows none)" in text
    assert "(chart value worker.allowedNodeSelectors allows none)" in text
    assert spec_problems({"queue": "q", "worker": {"image": OWN}}, bare) == []
