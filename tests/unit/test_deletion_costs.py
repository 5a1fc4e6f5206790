"""The deletion costs the operator writes before a scale-in: jobs held per pod of the queue's
Deployment, written only when changed, and a best effort that never stops the scale-in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import pytest
from conveyor_operator import deletion_costs
from conveyor_operator.deletion_costs import (
    MAX_COST,
    DeletionCosts,
    pod_of,
    scale_in_now,
    wanted_costs,
)

PREFIX = "q-worker-"


def test_a_worker_id_names_its_pod() -> None:
    assert pod_of("mqtt-realtime-worker-5d9c-x2x7q:1") == "mqtt-realtime-worker-5d9c-x2x7q"
    assert pod_of("host:with:colons:42") == "host:with:colons"
    assert pod_of("no-pid") == "no-pid"


def test_a_pod_costs_what_its_workers_hold_within_the_annotations_bounds() -> None:
    held = {
        "q-worker-a:1": 3,
        "q-worker-a:2": 2,  # two workers in one pod
        "q-worker-b:1": 0,
        "q-worker-c:1": 2**40,
        "q-worker-d:1": -3,
        "laptop:77": 9,  # not a pod of this Deployment
        "other-worker-x:1": 4,
    }
    assert wanted_costs(PREFIX, held) == {
        "q-worker-a": "5",
        "q-worker-b": "0",
        "q-worker-c": str(MAX_COST),
        "q-worker-d": "0",
    }


class Api:
    """Stands in for Redis and the API server: what is held, and the patches received."""

    def __init__(self, held: Mapping[str, int], fail: BaseException | None = None) -> None:
        self.held = dict(held)
        self.fail = fail
        self.patched: dict[str, str] = {}

    async def read_held(self) -> Mapping[str, int]:
        return self.held

    async def patch(self, pod: str, cost: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.patched[pod] = cost


async def test_only_changed_costs_are_written_again() -> None:
    costs, api = DeletionCosts(), Api({"q-worker-a:1": 2, "q-worker-b:1": 0})
    assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, api.patch) == 2
    assert api.patched == {"q-worker-a": "2", "q-worker-b": "0"}  # first time: every pod
    api.patched.clear()
    assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, api.patch) == 0
    assert api.patched == {}
    api.held = {"q-worker-a:1": 0, "q-worker-b:1": 0, "q-worker-c:1": 1}
    assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, api.patch) == 2
    assert api.patched == {"q-worker-a": "0", "q-worker-c": "1"}
    api.patched.clear()
    costs.forget("uid")  # the MessageQueue deleted (or a restarted operator): all again
    assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, api.patch) == 3
    assert api.patched == {"q-worker-a": "0", "q-worker-b": "0", "q-worker-c": "1"}


class Forbidden(Exception):
    status, reason = 403, "Forbidden"


async def test_a_missing_permission_is_said_once_and_never_stops_the_scale_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    costs, api = DeletionCosts(), Api({"q-worker-a:1": 2}, fail=Forbidden())
    with caplog.at_level(logging.WARNING, logger=deletion_costs.__name__):
        for _ in range(3):
            assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, api.patch) is None
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert "needs patch on pods" in said[0]
    # Other failures are said each time; a later 403 is still not repeated.
    api.fail = ConnectionResetError("reset by peer")
    with caplog.at_level(logging.WARNING, logger=deletion_costs.__name__):
        assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, api.patch) is None
        api.fail = Forbidden()
        assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, api.patch) is None
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said
    assert "ConnectionResetError: reset by peer" in said[1]


async def test_a_403_after_another_failure_is_still_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    costs, api = DeletionCosts(), Api({"q-worker-a:1": 2}, fail=ConnectionResetError("reset"))
    with caplog.at_level(logging.WARNING, logger=deletion_costs.__name__):
        assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, api.patch) is None
        api.fail = Forbidden()
        assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, api.patch) is None
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said
    assert "needs patch on pods" in said[1]


async def test_a_hung_api_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deletion_costs, "TIMEOUT_S", 0.05)
    costs, api = DeletionCosts(), Api({"q-worker-a:1": 2})

    async def hang(pod: str, cost: str) -> None:
        await asyncio.sleep(3600)

    assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, hang) is None
    # Not recorded as written: the next scale-in tries again.
    assert await costs.spare_busy_pods("uid", PREFIX, api.read_held, api.patch) == 1
    assert api.patched == {"q-worker-a": "2"}


def test_a_scale_in_waits_one_poll_for_new_costs_then_steps_at_once() -> None:
    # 8 -> 2 in steps of 4 (maxStep): the first poll wrote costs and holds at 8 ...
    assert scale_in_now(8, 4, written=3, waited=False) == (8, True)
    # ... the next goes (costs written again or not), and so do later steps of this scale-in.
    assert scale_in_now(8, 4, written=1, waited=True) == (4, True)
    assert scale_in_now(4, 2, written=2, waited=True) == (2, True)
    # Nothing changed: no reason to wait.
    assert scale_in_now(8, 4, written=0, waited=False) == (4, False)
