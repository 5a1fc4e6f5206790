"""A MessageQueue's queue policy in Redis: the whole of it, as the spec says, put back whenever
it differs.

Workers read their queue's policy (retries, backoff, lease, timeout, retention, concurrency)
from one small hash in Redis. The operator writes all of it, not only the fields the spec sets,
and compares it with Redis at every poll: a Redis that was down when the MessageQueue was
created, or that lost its data, or a person's ``conveyor policy`` on a managed queue, would
otherwise leave the queue on other settings for good. Fields the spec leaves out take the
library's defaults (a ``timeoutSeconds`` left out clears the timeout, so the worker's own
default applies).

Concurrency is the exception the autoscaler makes: with ``maxConcurrency`` it raises and lowers
concurrency live, so the value asserted is the one it decided on this poll, never the spec's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor_operator.spec import MessageQueueSpec
from reliable_queue import QueueClient, QueuePolicy, UsageError

DEFAULT_POLICY = QueuePolicy()


def desired_policy(spec: MessageQueueSpec, *, concurrency: int | None = None) -> QueuePolicy:
    """The queue's whole policy for ``spec``; ``concurrency``: the autoscaler's, if it set one.
    Raises UsageError naming the field when the spec cannot be a policy."""
    fields = spec.policy_fields()
    if concurrency is not None:
        fields["concurrency"] = concurrency
    # The backoff cap is not in the spec: a first delay above it must not be cut short.
    base = fields.get("backoff_base_s", DEFAULT_POLICY.backoff_base_s)
    fields["backoff_max_s"] = max(DEFAULT_POLICY.backoff_max_s, base)
    return DEFAULT_POLICY.merged(**fields)


def policy_problems(spec: Mapping[str, Any]) -> list[str]:
    """What in the spec the typed model or the workers' policy would refuse (the CRD's schema
    bounds it already, unless it is older than the operator)."""
    try:
        desired_policy(MessageQueueSpec.parse(spec))
    except UsageError as exc:
        return [str(exc)]
    return []


async def reassert_policy(queues: QueueClient, queue: str, desired: QueuePolicy) -> list[str]:
    """Write ``desired`` unless Redis holds it already; returns the fields that differed
    (empty: nothing written). Raises QueueUnavailable without Redis."""
    try:
        live: QueuePolicy | None = await queues.get_policy(queue)
    except UsageError:
        live = None  # a value the workers cannot read either: write the whole policy
    if live == desired:
        return []
    await queues.replace_policy(queue, desired)
    if live is None:
        return sorted(QueuePolicy.model_fields)
    return [f for f in QueuePolicy.model_fields if getattr(live, f) != getattr(desired, f)]
