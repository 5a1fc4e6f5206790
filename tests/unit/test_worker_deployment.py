"""Rendering a MessageQueue's worker Deployment, PodDisruptionBudget and queue policy:
deterministic, owned, locked down (own ServiceAccount, no token, the release's label, secrets
only by reference), and with concurrency kept out of the pod template."""

from __future__ import annotations

import copy
from typing import Any

from conveyor_operator.policies import desired_policy
from conveyor_operator.rendering import (
    RELEASE_LABEL,
    WorkerDefaults,
    deployment_name,
    render_deployment,
    render_disruption_budget,
)
from conveyor_operator.spec import MessageQueueSpec

MQ: dict[str, Any] = {
    "metadata": {"name": "mqtt-realtime", "namespace": "plant", "uid": "u-1"},
    "spec": {
        "queue": "mqtt_realtime",
        "priority": 4,
        "concurrency": 3,
        "retry": {"maxRetries": 5, "backoffBaseSeconds": 1, "backoffFactor": 3},
        "leaseSeconds": 20,
        "retention": {"deadLetters": {"maxCount": 10, "maxAgeSeconds": 60}},
        "worker": {
            "handler": "plant.jobs:handle",
            "nodeSelector": {"zone": "a"},
            "priorityClassName": "conveyor-alerts",
            "env": [{"name": "X", "value": "1"}],
        },
    },
}
SECRET_REF = {"secretKeyRef": {"name": "conveyor-redis", "key": "redis-password"}}
DEFAULTS = WorkerDefaults(
    image="conveyor:0.1.0",
    resources={"requests": {"cpu": "100m"}},
    env=(
        {"name": "REDIS_URL", "value": "redis://r:6379/0"},
        {"name": "REDIS_PASSWORD", "valueFrom": SECRET_REF},
    ),
    service_account="conveyor-worker",
    release="conveyor",
    image_pull_secrets=("regcred",),
)


def test_rendering_is_deterministic_and_owned() -> None:
    a = render_deployment(MQ, replicas=2, defaults=DEFAULTS)
    assert a == render_deployment(copy.deepcopy(MQ), replicas=2, defaults=DEFAULTS)
    assert a["metadata"]["name"] == "mqtt-realtime-worker"
    [owner] = a["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("MessageQueue", "u-1", True)
    pod = a["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["args"] == [
        "work",
        "--queue",
        "mqtt_realtime",
        "--drain-timeout",
        "20",
        "--handler",
        "plant.jobs:handle",
    ]
    assert [e["name"] for e in c["env"]] == ["REDIS_URL", "REDIS_PASSWORD", "X"]
    assert pod["nodeSelector"] == {"zone": "a"}
    assert pod["priorityClassName"] == "conveyor-alerts"
    bare = {**MQ, "spec": {"queue": "q"}}
    assert (
        "priorityClassName"
        not in render_deployment(bare, replicas=1, defaults=DEFAULTS)["spec"]["template"]["spec"]
    )
    assert pod["terminationGracePeriodSeconds"] > DEFAULTS.drain_timeout_s
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert (
        a["spec"]["selector"]["matchLabels"].items()
        <= a["spec"]["template"]["metadata"]["labels"].items()
    )


def test_concurrency_change_does_not_touch_the_pod_template() -> None:
    changed = copy.deepcopy(MQ)
    changed["spec"]["concurrency"] = 8
    before = render_deployment(MQ, replicas=2, defaults=DEFAULTS)["spec"]["template"]
    after = render_deployment(changed, replicas=2, defaults=DEFAULTS)["spec"]["template"]
    assert before == after


def test_long_names_stay_within_63_characters() -> None:
    assert len(deployment_name("x" * 80)) == 63


def test_queue_policy_is_what_the_workers_accept() -> None:
    policy = desired_policy(MessageQueueSpec.parse(MQ["spec"]))
    set_by_spec = {
        "concurrency": 3,
        "default_priority": 4,
        "max_retries": 5,
        "backoff_base_s": 1,
        "backoff_factor": 3,
        "lease_s": 20,
        "dead_max_count": 10,
        "dead_max_age_s": 60,
    }
    assert {k: getattr(policy, k) for k in set_by_spec} == set_by_spec
    assert (policy.timeout_s, policy.done_max_count) == (None, 1000)  # left out: the defaults
    assert policy.retry_delay(2) == 3.0


def test_worker_pods_run_as_the_worker_account_without_a_token() -> None:
    pod = render_deployment(MQ, replicas=1, defaults=DEFAULTS)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "conveyor-worker"
    assert pod["automountServiceAccountToken"] is False
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    bare = WorkerDefaults(image="conveyor:0.1.0")
    pod = render_deployment(MQ, replicas=1, defaults=bare)["spec"]["template"]["spec"]
    assert "serviceAccountName" not in pod  # the namespace's default account...
    assert pod["automountServiceAccountToken"] is False  # ...still without a token
    assert "imagePullSecrets" not in pod


def test_worker_pods_carry_the_release_label_but_the_selector_does_not() -> None:
    deploy = render_deployment(MQ, replicas=1, defaults=DEFAULTS)
    assert deploy["spec"]["template"]["metadata"]["labels"][RELEASE_LABEL] == "conveyor"
    # The selector is immutable: adding the release must not change it for existing queues.
    assert RELEASE_LABEL not in deploy["spec"]["selector"]["matchLabels"]
    bare = render_deployment(MQ, replicas=1, defaults=WorkerDefaults(image="conveyor:0.1.0"))
    assert bare["spec"]["selector"] == deploy["spec"]["selector"]
    assert RELEASE_LABEL not in bare["spec"]["template"]["metadata"]["labels"]


def test_the_redis_password_is_referenced_never_written() -> None:
    [c] = render_deployment(MQ, replicas=1, defaults=DEFAULTS)["spec"]["template"]["spec"][
        "containers"
    ]
    password = next(e for e in c["env"] if e["name"] == "REDIS_PASSWORD")
    assert password == {"name": "REDIS_PASSWORD", "valueFrom": SECRET_REF}


def test_each_worker_deployment_gets_a_disruption_budget_owned_by_the_queue() -> None:
    pdb = render_disruption_budget(MQ, defaults=DEFAULTS)
    deploy = render_deployment(MQ, replicas=3, defaults=DEFAULTS)
    assert (pdb["apiVersion"], pdb["kind"]) == ("policy/v1", "PodDisruptionBudget")
    assert pdb["metadata"]["name"] == deploy["metadata"]["name"]
    assert pdb["metadata"]["ownerReferences"] == deploy["metadata"]["ownerReferences"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deploy["spec"]["selector"]
    assert pdb == render_disruption_budget(copy.deepcopy(MQ), defaults=DEFAULTS)
