"""Job timeouts and the operator's whole-policy writes as pure logic: the timeout field of the
queue policy, the dead-letter reason of a job whose last attempt timed out, when lease renewals
end (per attempt: a late attempt leaves its retry's deadline alone), the built-in processors'
default timeouts, and the policy a MessageQueue spec stands for."""

from __future__ import annotations

import pytest
from conveyor_operator.policies import desired_policy, policy_problems
from conveyor_operator.spec import MessageQueueSpec

from conveyor.work_command import default_batch_size, processor_timeout
from reliable_queue import QueuePolicy, UsageError
from reliable_queue.policy import MAX_TIMEOUT_S, decide_on_failure
from reliable_queue.timeouts import RenewalDeadlines


def test_timeout_is_unset_by_default_bounded_and_round_trips() -> None:
    assert QueuePolicy().timeout_s is None
    assert "timeout_s" not in QueuePolicy().to_redis()
    assert set(QueuePolicy().unset_fields()) == {"concurrency", "timeout_s"}
    policy = QueuePolicy().merged(timeout_s=2)
    raw = {k.encode(): v.encode() for k, v in policy.to_redis().items()}
    assert QueuePolicy.from_redis(raw).timeout_s == 2.0
    for bad in (0, -1, 86_401):
        with pytest.raises(UsageError, match="timeout_s"):
            QueuePolicy().merged(timeout_s=bad)


def test_a_job_whose_last_attempt_timed_out_dies_with_reason_timeout() -> None:
    policy = QueuePolicy(max_retries=1)
    first = decide_on_failure(policy, attempt=1, permanent=False, timed_out=True)
    assert (first.action, first.delay_s) == ("retry", 2.0)  # the policy's backoff, as any failure
    last = decide_on_failure(policy, attempt=2, permanent=False, timed_out=True)
    assert (last.action, last.reason) == ("dead", "timeout")
    other = decide_on_failure(policy, attempt=2, permanent=False)
    assert other.reason == "retries_exhausted"


def test_lease_renewals_end_at_the_deadline_and_are_reported_once() -> None:
    a, b = ("a", "token-a"), ("b", "token-b")
    deadlines = RenewalDeadlines()
    deadlines.start([a], until=10.0)
    deadlines.start([b])  # no timeout: renewed for as long as it runs
    assert deadlines.renewable([a, b], now=9.9) == ([a, b], [])
    assert deadlines.renewable([a, b], now=10.0) == ([b], [a])
    assert deadlines.renewable([a, b], now=11.0) == ([b], [])  # "a" reported already
    deadlines.forget(a)
    assert deadlines.renewable([a], now=11.0) == ([a], [])


def test_a_late_attempt_forgetting_its_deadline_leaves_the_retrys() -> None:
    first, retry = ("job", "token-1"), ("job", "token-2")
    deadlines = RenewalDeadlines()
    deadlines.start([first], until=5.0)
    deadlines.start([retry], until=20.0)  # the retry runs in another slot meanwhile
    deadlines.forget(first)  # the first attempt's handler returns at last
    assert deadlines.renewable([retry], now=19.0) == ([retry], [])
    assert deadlines.renewable([retry], now=20.0) == ([], [retry])


@pytest.mark.parametrize(
    ("queue", "influx_s", "webhooks", "expected"),
    [
        ("mqtt_realtime", 10.0, 0, 60.0),
        ("mqtt_spc", 10.0, 0, 60.0),
        ("mqtt_tech", 20.0, 0, 120.0),  # 6 InfluxDB client timeouts when that is longer
        ("alerts", 10.0, 0, 60.0),
        ("alerts", 10.0, 2, 60.0 + 200 * 2 * 5.0),  # each alert of a batch, each webhook
        ("energy", 10.0, 0, None),  # a custom handler's queue: no default
    ],
)
def test_built_in_processors_default_timeouts_come_from_their_sinks(
    queue: str, influx_s: float, webhooks: int, expected: float | None
) -> None:
    got = processor_timeout(
        queue,
        influx_timeout_s=influx_s,
        batch_size=200,
        webhooks=webhooks,
        webhook_timeout_s=5.0,
    )
    assert got == expected


def test_an_alerts_timeout_never_passes_the_longest_a_worker_accepts() -> None:
    # 1,000 alerts x 100 webhooks x 5 s would be far beyond a day: the worker would refuse it.
    got = processor_timeout(
        "alerts", influx_timeout_s=10.0, batch_size=1000, webhooks=100, webhook_timeout_s=5.0
    )
    assert got == MAX_TIMEOUT_S


@pytest.mark.parametrize(
    ("queue", "expected"),
    [("mqtt_realtime", 1000), ("mqtt_spc", 200), ("mqtt_tech", 200), ("alerts", 50), ("x", 200)],
)
def test_each_queue_has_its_own_batch_size_unless_one_is_set(queue: str, expected: int) -> None:
    assert default_batch_size(queue) == expected


SPEC = {
    "queue": "q",
    "concurrency": 2,
    "retry": {"maxRetries": 7, "backoffBaseSeconds": 1, "backoffFactor": 3},
    "leaseSeconds": 12,
    "timeoutSeconds": 45,
    "retention": {"deadLetters": {"maxCount": 50}},
}


def test_a_spec_stands_for_a_whole_policy_with_defaults_for_what_it_leaves_out() -> None:
    assert desired_policy(MessageQueueSpec.parse(SPEC)) == QueuePolicy(
        concurrency=2,
        max_retries=7,
        backoff_base_s=1,
        backoff_factor=3,
        lease_s=12,
        timeout_s=45,
        dead_max_count=50,
    )
    # No timeout: the worker's default; concurrency 1, the CRD's default as the model's.
    assert desired_policy(MessageQueueSpec.parse({"queue": "q"})) == QueuePolicy(concurrency=1)
    # The autoscaler's, not 2:
    assert desired_policy(MessageQueueSpec.parse(SPEC), concurrency=7).concurrency == 7


def test_a_first_retry_delay_above_the_backoff_cap_is_kept_exact() -> None:
    spec = MessageQueueSpec.parse({"queue": "q", "retry": {"backoffBaseSeconds": 7200}})
    policy = desired_policy(spec)
    assert policy.retry_delay(1) == 7200


def test_a_spec_the_policy_cannot_hold_is_a_problem_naming_the_field() -> None:
    spec = {"queue": "q", "retention": {"finished": {"maxCount": 10**9}}}
    [problem] = policy_problems(spec)
    assert "spec.retention.finished.maxCount: Input should be less than or equal to" in problem
    assert policy_problems(SPEC) == []
