"""The retry decision and the policy model: pure logic, no Redis."""

from __future__ import annotations

import pytest

from reliable_queue import QueuePolicy, UsageError
from reliable_queue.policy import decide_on_failure


def test_default_backoff_is_2_4_8_then_dead() -> None:
    policy = QueuePolicy()
    decisions = [decide_on_failure(policy, attempt=a, permanent=False) for a in (1, 2, 3, 4)]
    assert [(d.action, d.delay_s) for d in decisions] == [
        ("retry", 2.0),
        ("retry", 4.0),
        ("retry", 8.0),
        ("dead", 0.0),
    ]
    assert decisions[-1].reason == "retries_exhausted"


def test_permanent_failure_skips_retries() -> None:
    d = decide_on_failure(QueuePolicy(), attempt=1, permanent=True)
    assert (d.action, d.reason) == ("dead", "permanent")


def test_explicit_delay_overrides_backoff_but_not_the_limit() -> None:
    policy = QueuePolicy(max_retries=1)
    assert decide_on_failure(policy, attempt=1, permanent=False, delay_override=0.5).delay_s == 0.5
    assert (
        decide_on_failure(policy, attempt=2, permanent=False, delay_override=0.5).action == "dead"
    )


def test_backoff_is_capped() -> None:
    policy = QueuePolicy(max_retries=30, backoff_max_s=60)
    assert policy.retry_delay(20) == 60


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"lease_s": 0}, "lease_s"),
        ({"backoff_base_s": 10, "backoff_max_s": 5}, "backoff_max_s must be at least"),
        ({"concurrency": 0}, "concurrency"),
        ({"outage_max_s": -1}, "outage_max_s"),
        ({"outage_max_s": 10**9}, "outage_max_s"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_policy_changes_name_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        QueuePolicy().merged(**changes)


def test_policy_round_trips_through_redis_strings() -> None:
    policy = QueuePolicy(concurrency=4, max_retries=5, lease_s=12.5)
    raw = {k.encode(): v.encode() for k, v in policy.to_redis().items()}
    assert QueuePolicy.from_redis(raw) == policy


def test_unknown_fields_from_a_newer_version_are_ignored() -> None:
    assert QueuePolicy.from_redis({b"future_knob": b"1"}) == QueuePolicy()


def test_bad_value_in_redis_names_the_field() -> None:
    with pytest.raises(UsageError, match="in Redis: lease_s"):
        QueuePolicy.from_redis({b"lease_s": b"soon"})
