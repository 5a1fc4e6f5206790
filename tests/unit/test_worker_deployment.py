"""Rendering a MessageQueue's worker Deployment and its queue policy: deterministic, owned,
locked down, and with concurrency kept out of the pod template."""

from __future__ import annotations

import copy
from typing import Any

from conveyor_operator.rendering import (
    WorkerDefaults,
    deployment_name,
    queue_policy,
    render_deployment,
)

from reliable_queue import QueuePolicy

MQ: dict[str, Any] = {
    "metadata": {"name": "mqtt-realtime", "namespace": "plant", "uid": "u-1"},
    "spec": {
        "queue": "mqtt_realtime",
        "concurrency": 3,
        "retry": {"maxRetries": 5, "backoffBaseSeconds": 1, "backoffFactor": 3},
        "leaseSeconds": 20,
        "retention": {"deadLetters": {"maxCount": 10, "maxAgeSeconds": 60}},
        "worker": {
            "handler": "plant.jobs:handle",
            "nodeSelector": {"zone": "a"},
            "env": [{"name": "X", "value": "1"}],
        },
    },
}
DEFAULTS = WorkerDefaults(
    image="conveyor:0.1.0",
    resources={"requests": {"cpu": "100m"}},
    env=({"name": "REDIS_URL", "value": "redis://r:6379/0"},),
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
    assert [e["name"] for e in c["env"]] == ["REDIS_URL", "X"]
    assert pod["nodeSelector"] == {"zone": "a"}
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
    policy = queue_policy(MQ["spec"])
    assert policy == {
        "concurrency": 3,
        "max_retries": 5,
        "backoff_base_s": 1,
        "backoff_factor": 3,
        "lease_s": 20,
        "dead_max_count": 10,
        "dead_max_age_s": 60,
    }
    assert QueuePolicy().merged(**policy).retry_delay(2) == 3.0
