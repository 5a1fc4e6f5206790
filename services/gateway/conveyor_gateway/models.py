"""The shapes of what the REST API answers and accepts, as pydantic models: the endpoints build
their answers through these, and the OpenAPI document's schemas are these models' JSON Schema,
so that the two cannot disagree.

Field order is the answer's key order. Library records (queue figures, dead letters) are
validated into models that name every field the library has (a test compares them), so a new
field in the library is a visible change here, not a silent one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from conveyor_gateway.limits import MAX_IDS
from reliable_queue.stats import WORKER_TTL_S


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


def json_response(
    body: BaseModel, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """``body`` as JSON (Starlette's encoding: compact, UTF-8, no NaN)."""
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


class Error(_Answer):
    """Every error answer."""

    error: str = Field(description="what went wrong and what to do")
    status: int


class QueueFigures(_Answer):
    """One queue's figures (the queue library's ``QueueStats``) and its recent throughput."""

    pending: int
    processing: int
    delayed: int
    failed: int = Field(description="dead letters in dead:<queue>")
    completed: int
    enqueued: int
    retried: int
    dead_lettered: int
    recovered: int
    finished_records: int
    oldest_pending_age_s: float
    workers: int = Field(description=f"live workers (heartbeat within {WORKER_TTL_S:g} s)")
    completed_last_minute: int
    enqueued_last_minute: int
    rate_per_s: float = Field(description="jobs completed per second")
    arrival_per_s: float = Field(description="jobs enqueued per second")
    rate_window_s: float = Field(description="the window the rates cover (<= 60)")


class Stats(_Answer):
    queues: dict[str, QueueFigures]
    workers: Literal["running", "stopped"]


class HistorySample(_Answer):
    at: float = Field(description="when, in seconds since the epoch")
    pending: int
    processing: int
    delayed: int
    failed: int
    completed: int
    enqueued: int
    oldest_pending_age_s: float


class History(_Answer):
    interval_s: float = Field(
        description="seconds between samples: the gateway's interval within the minutes it "
        "keeps of them, else 60"
    )
    queues: dict[str, list[HistorySample]] = Field(description="samples, oldest first")


class Machines(_Answer):
    machines: list[str] = Field(description="sorted")
    truncated: bool


class Machine(_Answer):
    machine: str
    values: dict[str, Any] = Field(description="each signal's newest value")
    updated_ms: int | None = Field(description="the newest sample's time, ms since the epoch")
    config: Any = Field(description='{"version", "ts", "config"}, as the workers stored it')
    offline_since_ms: int | None = Field(
        default=None,
        description="since when the machine is offline (a Sparkplug B death), ms since the "
        "epoch: its values are its last; null while it is not",
    )
    units: dict[str, str] = Field(
        default_factory=dict,
        description="signal -> unit of measure, for the signals whose messages named one",
    )


class SignalTrend(_Answer):
    """One signal's points, as columns: each bucket's time and the mean, min and max of the
    values in it."""

    signal: str
    unit: str | None = Field(description="its unit of measure, if its messages named one")
    times: list[int] = Field(description="each bucket's start, ms since the epoch")
    mean: list[float]
    min: list[float]
    max: list[float]


class Trend(_Answer):
    machine: str
    from_ms: int
    to_ms: int
    interval_ms: int = Field(
        description="the buckets' width: the window over the points asked for, at least 1 s"
    )
    series: list[SignalTrend] = Field(description="numeric signals with points, by name")
    truncated: bool = Field(description="more signals had points than one answer holds")
    characteristics: list[str] = Field(
        description="the machine's SPC characteristics with points in the window (each a "
        "control chart at /spc/{machine}/{characteristic})"
    )


class ConfigChange(_Answer):
    time_ms: int = Field(description="when the configuration changed, ms since the epoch")
    version: int
    config: Any = Field(description="the configuration as of this version")


class ConfigChanges(_Answer):
    machine: str
    changes: list[ConfigChange] = Field(description="newest first")


class ControlChart(_Answer):
    """An SPC characteristic's points as the workers judged them, as columns, oldest first.
    The limits are those in force at each point (null before there were enough points)."""

    machine: str
    characteristic: str
    chart: Literal["I-MR", "Xbar-R"] = Field(
        description="individuals, or subgroup means with an R chart"
    )
    times: list[int] = Field(description="ms since the epoch")
    value: list[float] = Field(description="the value, or the subgroup's mean")
    cl: list[float | None]
    ucl: list[float | None]
    lcl: list[float | None]
    range: list[float | None] = Field(description="the subgroup's range (Xbar-R)")
    r_cl: list[float | None] = Field(description="the R chart's centre line, R-bar")
    r_ucl: list[float | None]
    r_lcl: list[float | None]
    rules: list[list[int]] = Field(
        description="the Western Electric rules (1-4) each point broke, as the worker judged"
    )
    truncated: bool = Field(description="the window held more points than these newest")


class Alerts(_Answer):
    alerts: list[Any] = Field(description="newest first, as the workers stored them")


class DeadLetter(_Answer):
    """One dead job (the queue library's ``DeadLetter``)."""

    id: str
    queue: str
    data: Any
    priority: int
    attempts: int
    recoveries: int
    reason: str = Field(description="retries_exhausted, permanent, timeout, lost or an ingest tag")
    error: str
    enqueued_at: float
    failed_at: float


class DeadLetterPage(_Answer):
    queue: str
    total: int
    offset: int
    limit: int
    dead_letters: list[DeadLetter] = Field(description="newest first")


class Replayed(_Answer):
    queue: str
    replayed: int


class Purged(_Answer):
    queue: str
    purged: int


class Health(_Answer):
    status: Literal["ok"]


class ReadinessChecks(_Answer):
    redis: bool
    live_stream: bool


class Readiness(_Answer):
    ready: bool
    checks: ReadinessChecks


class ReplayRequest(BaseModel):
    """The replay body: ``{"ids": [...]}``, or nothing (or no ``ids``) for every dead letter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: list[str] | None = Field(default=None, max_length=MAX_IDS)
