"""The tests' one way to wait (``tests.helpers.eventually`` and its sync twin ``wait_until``):
sync and async checks alike, the value that ended the wait returned, one try even with no time
left, and a failure that names what was awaited, the last value seen and the detail asked for;
an error in a check is not swallowed. No clock runs: every wait here ends on its tries."""

from __future__ import annotations

import pytest

from tests.helpers import eventually, wait_until


async def test_a_sync_or_async_check_is_tried_until_true_and_its_value_returned() -> None:
    calls: list[int] = []

    def sync_check() -> list[int]:
        calls.append(1)
        return calls if len(calls) >= 3 else []

    assert await eventually(sync_check, interval=0, what="three calls") == [1, 1, 1]

    async def async_check() -> str:
        calls.append(1)
        return "done" if len(calls) >= 5 else ""

    assert await eventually(async_check, interval=0, what="five calls") == "done"
    assert wait_until(lambda: "yes", what="at once") == "yes"


async def test_with_no_time_left_it_still_tries_once() -> None:
    assert await eventually(lambda: 7, timeout=0, what="a true value") == 7
    assert wait_until(lambda: 7, timeout=0, what="a true value") == 7


async def test_a_timeout_names_what_was_awaited_the_last_value_and_the_detail() -> None:
    with pytest.raises(AssertionError) as failed:
        await eventually(
            lambda: {"pending": 3}.get("done", 0),
            timeout=0,
            what="the queue drained",
            detail=lambda: "worker log: stuck",
        )
    assert str(failed.value) == (
        "timed out after 0s waiting for the queue drained; last seen: 0\nworker log: stuck"
    )
    with pytest.raises(AssertionError, match=r"waiting for a pod; last seen: \[\]$"):
        wait_until(lambda: [], timeout=0, what="a pod")


async def test_an_error_in_the_check_is_not_retried() -> None:
    calls: list[int] = []

    async def broken() -> bool:
        calls.append(1)
        raise LookupError("no such queue")

    with pytest.raises(LookupError, match="no such queue"):
        await eventually(broken, timeout=10, what="never")
    assert calls == [1]
