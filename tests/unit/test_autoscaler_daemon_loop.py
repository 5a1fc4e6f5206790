"""The autoscaler daemon's loop (``conveyor_operator.autoscaling.autoscale``), with its poll and
status write replaced: it sleeps the live spec's interval, retries soon after a stale poll
without writing its status, and keeps polling after a failure, with a traceback at most once a
minute. The polls themselves run against a real API server in tests/cluster."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest
from conveyor_operator import autoscaling
from conveyor_operator.context import QueueState

BODY = {"metadata": {"name": "q", "namespace": "ns"}, "spec": {"pollingIntervalSeconds": 7}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Stopped:
    """kopf's ``stopped`` flag: set after ``polls`` polls; each wait moves the clock on."""

    def __init__(self, clock: Clock, polls: int, outcomes: list[Any]) -> None:
        self.clock, self.left, self.outcomes = clock, polls, outcomes
        self.waits: list[float] = []

    def __bool__(self) -> bool:
        return self.left <= 0

    async def wait(self, timeout: float) -> None:
        self.waits.append(timeout)
        self.clock.now += timeout


class Metrics:
    def __init__(self) -> None:
        self.counted: list[str] = []
        self.errors = self

    def labels(self, kind: str) -> Metrics:
        self.counted.append(kind)
        return self

    def inc(self) -> None:
        return None


class Op:
    def __init__(self) -> None:
        self.config = self
        self.metrics = Metrics()
        self.apis = object()


async def run(
    monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]
) -> tuple[Stopped, list[Any], Op]:
    """Run the loop for as many polls as ``outcomes`` (True/False: the poll's answer; an
    exception: what it raises); the status patches written, in order."""
    clock, op, written = Clock(), Op(), []
    stopped = Stopped(clock, len(outcomes), outcomes)

    async def poll(op_: Any, body: Any, state: Any, patch: kopf.Patch, now: float) -> bool:
        outcome = stopped.outcomes[len(outcomes) - stopped.left]
        stopped.left -= 1
        patch.status["depth"] = len(outcomes) - stopped.left
        if isinstance(outcome, Exception):
            raise outcome
        return bool(outcome)

    async def patch_status(apis: Any, body: Any, status: Any) -> None:
        written.append(dict(status))

    monkeypatch.setattr(autoscaling, "poll", poll)
    monkeypatch.setattr(autoscaling, "patch_status", patch_status)
    monkeypatch.setattr(autoscaling, "time", clock)  # the module's clock only
    memo = kopf.Memo(operator=op, queue_state=QueueState())
    await autoscaling.autoscale(body=BODY, memo=memo, stopped=stopped)  # type: ignore[arg-type]
    return stopped, written, op


async def test_it_sleeps_the_specs_interval_and_retries_soon_after_a_stale_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopped, written, _ = await run(monkeypatch, [True, False, True])
    # 7 s after a poll (in steps of at most 5 s, reading the live spec again), 1 s after a
    # stale one, whose status is not written.
    assert stopped.waits[:3] == [5.0, 2.0, autoscaling.STALE_RETRY_S]
    assert [w["depth"] for w in written] == [1, 3]


async def test_a_failing_poll_is_counted_and_the_next_one_still_comes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    boom = RuntimeError("a bug")
    with caplog.at_level(logging.ERROR, logger=autoscaling.__name__):
        stopped, written, op = await run(monkeypatch, [boom, boom, True])
    assert op.metrics.counted == ["poll", "poll"]
    traced = [r for r in caplog.records if r.exc_info]
    assert len(traced) == 1  # the second, 7 s later, is one line
    assert "a bug" in caplog.records[1].getMessage()
    assert [w["depth"] for w in written] == [3]
    assert len(stopped.waits) >= 4  # it slept after each failure too


async def test_an_api_error_is_one_line_counted_as_api(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=autoscaling.__name__):
        _, written, op = await run(monkeypatch, [ConnectionRefusedError("refused"), True])
    assert op.metrics.counted == ["api"]
    assert not any(r.exc_info for r in caplog.records)
    assert "ConnectionRefusedError" in caplog.records[0].getMessage()
    assert [w["depth"] for w in written] == [2]
