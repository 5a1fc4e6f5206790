"""The MessageQueue spec as one typed model: parsed once per event, and the one place its
defaults live.

The CRD's schema (charts/conveyor/crds/) carries the same defaults and bounds, because the API
server applies them before the operator sees an object; a test walks both and fails when they
differ (tests/unit/test_messagequeue_spec_matches_the_crd.py). The queue policy's fields take
their defaults from ``reliable_queue.QueuePolicy``, so a queue without a MessageQueue and one
with an empty spec behave the same. The model checks the bounds again, for a CRD older than
the operator; a spec outside them is ``Ready=False``, reason ``InvalidSpec``, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from reliable_queue import PRIORITY_MAX, PRIORITY_MIN, QueuePolicy, UsageError

_POLICY = QueuePolicy.model_fields


def _policy_default(name: str) -> Any:
    return _POLICY[name].default


class _Part(BaseModel):
    # Field names in Python, camelCase in the object (``maxRetries``); unknown fields are
    # ignored, as the API server prunes them anyway.
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
    )


class ScaleDown(_Part):
    stabilization_window_seconds: int = Field(default=60, ge=0, le=3600)
    cooldown_seconds: int = Field(default=300, ge=0, le=86_400)
    max_step: int = Field(default=4, ge=1)


class Retry(_Part):
    max_retries: int = Field(default=_policy_default("max_retries"), ge=0, le=1000)
    backoff_base_seconds: float = Field(default=_policy_default("backoff_base_s"), gt=0, le=86_400)
    backoff_factor: float = Field(default=_policy_default("backoff_factor"), ge=1, le=100)
    outage_seconds: int = Field(default=int(_policy_default("outage_max_s")), ge=0, le=604_800)


class DeadLetters(_Part):
    max_count: int = Field(default=_policy_default("dead_max_count"), ge=0, le=100_000_000)
    max_age_seconds: int = Field(default=int(_policy_default("dead_max_age_s")), ge=1)


class Finished(_Part):
    max_count: int = Field(default=_policy_default("done_max_count"), ge=0, le=100_000_000)
    max_age_seconds: int = Field(default=int(_policy_default("done_max_age_s")), ge=1)


class Retention(_Part):
    dead_letters: DeadLetters = DeadLetters()
    finished: Finished = Finished()


class Worker(_Part):
    """The worker pods; unset: the chart's defaults. What may run and where is checked by
    ``allowances`` (and the chart's admission policy), on the object as written."""

    image: str | None = Field(default=None, min_length=1, max_length=512)
    handler: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
    )
    resources: dict[str, Any] | None = None
    env: list[dict[str, Any]] = []
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    priority_class_name: str | None = Field(
        default=None, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    )


_DURATION = r"^[0-9]+(s|m|h)$"
_UNIT_S = {"s": 1, "m": 60, "h": 3600}


class Threshold(_Part):
    threshold: float = Field(ge=0)
    for_: str = Field(
        default="1m", pattern=_DURATION, validation_alias="for", serialization_alias="for"
    )
    """How long the threshold must stay crossed before the alert fires (``30s``, ``5m``)."""

    @property
    def for_seconds(self) -> float:
        return int(self.for_[:-1]) * _UNIT_S[self.for_[-1]]


class Alerts(_Part):
    """Queue alerts (``conveyor_operator.queue_alerts``); a threshold left out is not judged."""

    max_depth: Threshold | None = None
    max_oldest_age_seconds: Threshold | None = None
    max_dead_letters: Threshold | None = None
    min_drain_rate: Threshold | None = None


class MessageQueueSpec(_Part):
    queue: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
    priority: int = Field(
        default=_policy_default("default_priority"), ge=PRIORITY_MIN, le=PRIORITY_MAX
    )
    concurrency: int = Field(default=1, ge=1, le=1000)
    max_concurrency: int | None = Field(default=None, ge=1, le=1000)
    replicas: int | None = Field(default=None, ge=0)
    min_replicas: int = Field(default=0, ge=0, le=1000)
    max_replicas: int = Field(default=10, ge=1, le=1000)
    target_depth_per_replica: int = Field(default=1000, ge=1)
    activation_depth: int = Field(default=0, ge=0)
    polling_interval_seconds: int = Field(default=5, ge=1, le=3600)
    target_latency_seconds: float | None = Field(default=None, gt=0, le=86_400)
    scale_down: ScaleDown = ScaleDown()
    retry: Retry = Retry()
    lease_seconds: int = Field(default=int(_policy_default("lease_s")), ge=1, le=86_400)
    timeout_seconds: int | None = Field(default=None, ge=1, le=86_400)
    retention: Retention = Retention()
    worker: Worker = Worker()
    alerts: Alerts = Alerts()
    paused: bool = False
    deletion_policy: Literal["Retain", "Delete"] = "Retain"

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> MessageQueueSpec:
        """The typed spec; raises UsageError naming each field that is out of bounds."""
        try:
            return cls.model_validate(spec)
        except ValidationError as exc:
            raise UsageError(
                "; ".join(
                    f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                    for err in exc.errors()
                )
            ) from exc

    def policy_fields(self) -> dict[str, Any]:
        """The queue policy (reliable_queue.QueuePolicy) fields this spec sets: all of them but
        the backoff cap, which is not in the spec."""
        return {
            "concurrency": self.concurrency,
            "default_priority": self.priority,
            "max_retries": self.retry.max_retries,
            "backoff_base_s": self.retry.backoff_base_seconds,
            "backoff_factor": self.retry.backoff_factor,
            "outage_max_s": self.retry.outage_seconds,
            "lease_s": self.lease_seconds,
            "timeout_s": self.timeout_seconds,
            "dead_max_count": self.retention.dead_letters.max_count,
            "dead_max_age_s": self.retention.dead_letters.max_age_seconds,
            "done_max_count": self.retention.finished.max_count,
            "done_max_age_s": self.retention.finished.max_age_seconds,
        }
