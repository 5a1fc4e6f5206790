"""A queue's policy: retries and backoff, leases, job timeouts, retention and worker concurrency.

The policy lives in Redis (``conveyor:{<queue>}:config``) so that the operator, or a person with
``conveyor policy``, can change it while workers run: each worker re-reads it on every heartbeat
(about once a second) and applies it without a restart. Fields not set in Redis take the defaults
below, which are the original design's (3 retries at 2 s, 4 s, 8 s; 30 s leases; no timeout
beyond the worker's own default).

The retry decision is a pure function of the policy and the attempt number, kept here so it can
be tested without Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reliable_queue.errors import UsageError
from reliable_queue.job import PRIORITY_MAX, PRIORITY_MIN

MAX_TIMEOUT_S = 86_400.0
"""The longest job timeout a queue or a worker may set (a day)."""


class QueuePolicy(BaseModel):
    """How one queue treats its jobs. Immutable; use :meth:`merged` to change fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    concurrency: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Jobs one worker process runs at once; None: the worker's own setting.",
    )
    default_priority: int = Field(
        default=0,
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
        description="Priority of jobs enqueued without one of their own (higher runs first); "
        "read by the enqueue script, so it applies to every producer at once.",
    )
    max_retries: int = Field(default=3, ge=0, le=1000, description="Retries after the first try.")
    backoff_base_s: float = Field(default=2.0, gt=0, le=86_400, description="First retry delay.")
    backoff_factor: float = Field(default=2.0, ge=1, le=100, description="Delay growth per retry.")
    backoff_max_s: float = Field(default=3_600.0, gt=0, le=7 * 86_400)
    outage_max_s: float = Field(
        default=900.0,
        ge=0,
        le=7 * 86_400,
        description="How long after its first postponement a job whose handler reports an "
        "outage (Postpone: a sink away) is still tried again without spending an attempt; "
        "past it, outages count as failed attempts. 0: they always do.",
    )
    lease_s: float = Field(
        default=30.0,
        ge=1,
        le=86_400,
        description="A claimed job returns to pending this long after its worker stops renewing.",
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="Seconds one attempt (one batch, for batch handlers) may run before it is "
        "cancelled and fails with reason timeout; None: the worker's default (built-in "
        "processors have one, other handlers none).",
    )
    max_recoveries: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Times a job may lose its worker (crash, kill) before it is dead-lettered.",
    )
    dead_max_count: int = Field(default=100_000, ge=0, le=100_000_000)
    dead_max_age_s: float = Field(default=14 * 86_400, gt=0)
    done_max_count: int = Field(default=1_000, ge=0, le=100_000_000)
    done_max_age_s: float = Field(default=3_600, gt=0)

    @model_validator(mode="after")
    def _backoff_bounds(self) -> QueuePolicy:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be at least backoff_base_s")
        return self

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): 2, 4, 8, ..."""
        delay = self.backoff_base_s * self.backoff_factor ** (attempt - 1)
        return float(min(delay, self.backoff_max_s))

    def merged(self, **changes: object) -> QueuePolicy:
        """A copy with ``changes`` applied and validated."""
        try:
            return QueuePolicy.model_validate({**self.model_dump(), **changes})
        except ValidationError as exc:
            raise UsageError(f"invalid queue policy: {_describe(exc)}") from exc

    def to_redis(self) -> dict[str, str]:
        """The fields as Redis hash values; unset ones (concurrency, timeout) are left out."""
        return {k: str(v) for k, v in self.model_dump().items() if v is not None}

    def unset_fields(self) -> list[str]:
        """The optional fields this policy leaves unset: to delete from the Redis hash."""
        return [k for k, v in self.model_dump().items() if v is None]

    @classmethod
    def from_redis(cls, raw: Mapping[bytes, bytes] | Mapping[str, str]) -> QueuePolicy:
        """Parse a config hash; raises UsageError naming the bad field."""
        fields = {_text(k): _text(v) for k, v in raw.items()}
        unknown = sorted(set(fields) - set(cls.model_fields))
        for name in unknown:  # written by a newer version: ignore rather than stop workers
            fields.pop(name)
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise UsageError(f"invalid queue policy in Redis: {_describe(exc)}") from exc


@dataclass(frozen=True, slots=True)
class FailureDecision:
    """What happens to a job whose attempt failed."""

    action: Literal["retry", "dead"]
    delay_s: float = 0.0
    reason: str = ""


def decide_on_failure(
    policy: QueuePolicy,
    *,
    attempt: int,
    permanent: bool,
    delay_override: float | None = None,
    timed_out: bool = False,
) -> FailureDecision:
    """Retry with backoff while attempts remain; otherwise, or when permanent, dead-letter.

    ``attempt`` is the 1-based number of the attempt that just failed; ``timed_out``: it ran
    past the queue's timeout, so a dead letter says ``timeout`` rather than
    ``retries_exhausted``.
    """
    if permanent:
        return FailureDecision("dead", reason="permanent")
    if attempt > policy.max_retries:
        return FailureDecision("dead", reason="timeout" if timed_out else "retries_exhausted")
    delay = policy.retry_delay(attempt) if delay_override is None else max(0.0, delay_override)
    return FailureDecision("retry", delay_s=delay)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}" for err in exc.errors()
    )
