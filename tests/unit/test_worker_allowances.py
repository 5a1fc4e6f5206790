"""What the installer allows a MessageQueue's workers: image prefixes that match whole path
components (``team/`` never allows ``team-evil/``; a prefix without ``/`` is refused, one with a
tag is that reference only), handlers only from listed module prefixes (none by default),
tolerations only as narrow as the allowed ones, node selectors from a list, a replica ceiling,
and env names from an allow-list (``APP_*``, ``WORKER_*``, ``ALERT_*``, upper case) with literal
values only: nothing that reads Secrets, redirects the workers' credentials or changes what they
run."""

from __future__ import annotations

from typing import Any

import pytest
from conveyor_operator.allowances import (
    Allowances,
    handler_allowed,
    handler_prefix_problem,
    image_allowed,
    image_prefix_problem,
    is_image_reference,
    prefix_matches,
    spec_problems,
    toleration_covered,
)

from conveyor.operator_command import OperatorSettings
from conveyor.settings import SettingsError, load

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
        # A tag (or digest) is one exact reference: no digest may follow it.
        ("registry.example.com/team/app:1.2", f"registry.example.com/team/app:1.2@{DIGEST}", False),
        (
            f"registry.example.com/team/app@{DIGEST}",
            f"registry.example.com/team/app@{DIGEST}",
            True,
        ),
        (
            f"registry.example.com/team/app@{DIGEST}",
            f"registry.example.com/team/app@{DIGEST}0",
            False,
        ),
        ("registry.example.com:5000/team/app", "registry.example.com:5000/team/app:1", True),
        # No '/': never a match (and refused at start), else a registry would allow its ports.
        ("registry.example.com", "registry.example.com:5000/anything:1", False),
        ("registry.example.com", "registry.example.com", False),
        ("registry.example.com:", "registry.example.com:5000/anything:1", False),
        ("app:1.2", f"app:1.2@{DIGEST}", False),
    ],
)
def test_prefixes_match_whole_components(prefix: str, image: str, allowed: bool) -> None:
    assert prefix_matches(image, prefix) is allowed


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("registry.example.com", "has no '/'"),
        ("registry.example.com:", "has no '/'"),
        ("app:1.2", "has no '/'"),
        ("registry.example.com//", "is not an image reference"),
        ("registry.example.com/Team/", "is not an image reference"),
        ("registry.example.com/team/*", "without spaces or '*'"),
        ("", "without spaces or '*'"),
    ],
)
def test_an_image_prefix_without_a_path_or_malformed_is_refused(prefix: str, problem: str) -> None:
    assert problem in (image_prefix_problem(prefix) or "")


@pytest.mark.parametrize(
    "prefix",
    [
        "registry.example.com/",
        "registry.example.com:5000/",
        "registry.example.com/team/",
        "registry.example.com/team/app",
        "registry.example.com/team/app:",
        "registry.example.com/team/app:1.2",
        "registry.example.com/team/app@",
        f"registry.example.com/team/app@{DIGEST}",
        "team/app",
    ],
)
def test_image_prefixes_with_a_path_are_accepted(prefix: str) -> None:
    assert image_prefix_problem(prefix) is None


@pytest.mark.parametrize(
    ("handler", "prefixes", "allowed"),
    [
        ("plant.energy:handle", ["plant."], True),
        ("plant.energy.meters:handle", ["plant."], True),
        ("plant:handle", ["plant."], True),  # importing plant.energy imports plant anyway
        ("plantx:handle", ["plant."], False),
        ("plantx.energy:handle", ["plant."], False),
        ("plant.energy:handle", ["plant.energy"], True),
        ("plant.energy.sub:handle", ["plant.energy"], False),  # a whole module only
        ("plant.energy_x:handle", ["plant.energy"], False),
        ("plant:handle", ["plant.energy"], False),
        ("plant.energy:Handler.run", ["plant."], True),
        ("antigravity:geohash", ["plant."], False),
        ("antigravity:geohash", [], False),
        ("plant.energy:handle", [], False),  # none by default
        ("plant.energy", ["plant."], False),  # not module:function
        ("plant..energy:handle", ["plant."], False),
        (".plant:handle", ["plant."], False),
        ("plant.energy:handle\n", ["plant."], False),
        ("plant.energy:handle", ["plant:", "*", ""], False),  # malformed prefixes allow nothing
    ],
)
def test_handlers_only_from_listed_module_prefixes(
    handler: str, prefixes: list[str], allowed: bool
) -> None:
    assert handler_allowed(handler, prefixes) is allowed


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("plant.", True),
        ("plant", True),
        ("plant.energy", True),
        ("plant..", False),
        (".plant", False),
        ("plant.*", False),
        ("plant:handle", False),
        ("", False),
        ("plant energy", False),
    ],
)
def test_handler_prefixes_are_modules_or_packages(prefix: str, ok: bool) -> None:
    assert (handler_prefix_problem(prefix) is None) is ok


@pytest.mark.parametrize(
    "name",
    [
        "PYTHONWARNINGS",  # with BROWSER: imports antigravity, which runs $BROWSER
        "BROWSER",
        "LD_PRELOAD",
        "PYTHONPATH",
        "PATH",
        "HTTPS_PROXY",
        "https_proxy",
        "SSL_CERT_FILE",
        "REDIS_URL",
        "redis_url",  # pydantic-settings reads names case-insensitively
        "Redis_Host",
        "INFLUX_URL",
        "app_plant",  # upper case only
        "APP_",
        "APPX_PLANT",
        "APP-PLANT",
        "APP_PLANT\n",
        "PLANT",
    ],
)
def test_env_names_outside_the_allow_list_are_refused(name: str) -> None:
    spec = {"queue": "q", "worker": {"env": [{"name": name, "value": "x"}]}}
    [problem] = spec_problems(spec, Allowances(worker_image=OWN))
    assert problem.startswith(f"spec.worker.env[0].name {name!r} is not allowed")
    assert "^(APP|WORKER|ALERT)_[A-Z0-9_]+$" in problem


def test_a_handlers_and_the_sinks_settings_are_allowed() -> None:
    env = [
        {"name": n, "value": "1"}
        for n in ("APP_PLANT", "APP_2", "WORKER_BATCH_SIZE", "ALERT_WEBHOOKS", "ALERT_SUPPRESS_S")
    ]
    assert spec_problems({"queue": "q", "worker": {"env": env}}, ALLOWANCES) == []


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
    handlers=("plant.",),
    tolerations=(GPU_ANY,),
    node_selectors={"topology.kubernetes.io/zone": ("a", "b")},
    priority_classes=("conveyor-alerts",),
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
            "handler": "plant.energy:handle",
            "env": [{"name": "APP_PLANT", "value": "north"}],
            "priorityClassName": "conveyor-alerts",
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
            "handler": "antigravity:geohash",
            "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
            "nodeSelector": {"topology.kubernetes.io/zone": "c", "kubernetes.io/hostname": "n1"},
            "priorityClassName": "system-node-critical",
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "REDIS_URL", "value": "redis://attacker:6379"},
                {"name": "PROBE_PORT", "value": "1"},
                {"name": "REDIS_HOST", "value": "attacker"},
                {"name": "INFLUX_URL", "value": "http://attacker"},
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
    assert (
        "spec.worker.priorityClassName 'system-node-critical' is not allowed (chart value "
        "worker.allowedPriorityClasses: ['conveyor-alerts'])"
    ) in text
    assert "spec.maxReplicas 21 is above the ceiling of 20" in text
    assert "chart value operator.maxReplicasCeiling" in text
    assert "spec.worker.handler 'antigravity:geohash' is not allowed" in text
    assert "chart value operator.allowedHandlers" in text
    assert "spec.worker.env[0]: valueFrom not allowed" in text
    for i, name in enumerate(("REDIS_URL", "PROBE_PORT"), start=1):
        assert f"spec.worker.env[{i}].name {name} is set by the operator" in text
    for i, name in enumerate(("REDIS_HOST", "INFLUX_URL"), start=3):
        assert f"spec.worker.env[{i}].name {name!r} is not allowed" in text
    assert len(problems) == 13


def test_by_default_no_toleration_or_node_selector_is_allowed() -> None:
    bare = Allowances(worker_image=OWN)
    spec = {
        "queue": "q",
        "worker": {
            "tolerations": [GPU_ANY],
            "nodeSelector": {"zone": "a"},
            "priorityClassName": "conveyor-alerts",
        },
    }
    text = "\n".join(spec_problems(spec, bare))
    assert "(chart value worker.allowedPriorityClasses allows none)" in text
    assert "(chart value worker.allowedTolerations allows none)" in text
    assert "(chart value worker.allowedNodeSelectors allows none)" in text
    custom = {"queue": "q", "worker": {"handler": "plant.energy:handle"}}
    [problem] = spec_problems(custom, bare)
    assert problem == (
        "spec.worker.handler 'plant.energy:handle' is not allowed: workers run the built-in "
        "processors only (chart value operator.allowedHandlers allows none)"
    )
    assert spec_problems({"queue": "q", "worker": {"image": OWN}}, bare) == []


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("OPERATOR_ALLOWED_IMAGES", "registry.example.com", "has no '/'"),
        ("OPERATOR_ALLOWED_IMAGES", '["registry.example.com/team/", "app:1.2"]', "has no '/'"),
        ("OPERATOR_ALLOWED_HANDLERS", '["plant.", "plant:handle"]', "write a module"),
        ("OPERATOR_ALLOWED_HANDLERS", "*", "write a module"),
    ],
)
def test_the_operator_refuses_to_start_with_a_loose_prefix(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load(OperatorSettings)
    message = str(refused.value)
    assert "\n" not in message
    assert f"{variable}=" in message
    assert problem in message


def test_the_installers_handler_prefixes_reach_the_allowances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPERATOR_ALLOWED_HANDLERS", '["plant.", "tools.jobs"]')
    monkeypatch.setenv("OPERATOR_ALLOWED_IMAGES", "registry.example.com/team/")
    allowances = load(OperatorSettings).allowances()
    assert allowances.handlers == ("plant.", "tools.jobs")
    assert allowances.images == ("registry.example.com/team/",)
    monkeypatch.delenv("OPERATOR_ALLOWED_HANDLERS")
    assert load(OperatorSettings).allowances().handlers == ()
