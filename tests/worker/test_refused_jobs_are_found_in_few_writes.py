"""Finding the jobs of a batch whose points InfluxDB refuses (``isolating.py``), against a fake
InfluxDB that refuses any write holding a bad line: exactly the bad jobs are refused, each on
its own; a clean batch costs one write, ``n`` bad jobs among ``N`` at most ``1 + 2 n log2 N``
(plus two per job a hint named, at most ``HINT_JOBS``); the lines InfluxDB quotes steer the
split but never decide a verdict; parts are written at most ``PARALLEL_WRITES`` at once.

A slow InfluxDB cannot run a batch into its timeout: past the deadline the jobs written stay
written, those refused alone stay refused, and the rest are unresolved (retried), never refused.
A capacity limit (which makes InfluxDB 1.8 drop the whole request) retries only the jobs that
hit it. An error answer that never judges a point (a proxy answering 400) is an outage, not
``N`` bad jobs; an outage propagates."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence

import pytest
from conveyor_worker import SinkUnavailable
from conveyor_worker.errors import InfluxLimitReached, PointsRejected
from conveyor_worker.isolating import HINT_JOBS, PARALLEL_WRITES, PointGroup, write_isolating
from hypothesis import given, settings
from hypothesis import strategies as st


class FakeInflux:
    """Refuses a write holding a line that contains ``BAD``, quoting it as InfluxDB 1.8 does
    when ``quote`` is set; keeps every good line of a refused write (a 1.8 partial write).
    A line with ``NEW`` is over a capacity limit: the whole write is dropped, as 1.8 does.
    Each write takes ``latency`` seconds."""

    def __init__(self, *, quote: bool = False, extra_quote: str = "", latency: float = 0) -> None:
        self.quote = quote
        self.extra_quote = extra_quote
        self.latency = latency
        self.writes: list[list[str]] = []
        self.stored: set[str] = set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def write(self, lines: Sequence[str]) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            self._write(lines)
        finally:
            self.in_flight -= 1

    def _write(self, lines: Sequence[str]) -> None:
        self.writes.append(list(lines))
        if any("NEW" in line for line in lines):
            raise InfluxLimitReached("max-values-per-tag limit exceeded (3/3)")
        bad = [line for line in lines if "BAD" in line]
        self.stored |= {line for line in lines if "BAD" not in line}
        if bad:
            quoted = "\n".join(f"unable to parse '{b}': invalid" for b in bad) if self.quote else ""
            raise PointsRejected(
                status=400,
                detail=f"partial write: {quoted}{self.extra_quote} dropped={len(bad)}",
            )


def batch(n: int, bad: set[int], new: frozenset[int] = frozenset()) -> list[PointGroup]:
    def mark(i: int) -> str:
        return ",BAD" if i in bad else ",NEW" if i in new else ""

    return [
        PointGroup(f"j{i}", tuple(f"m,j={i},k={k}{mark(i)} v=1 1" for k in (0, 1)))
        for i in range(n)
    ]


def ids(indexes: set[int] | frozenset[int]) -> set[str]:
    return {f"j{i}" for i in indexes}


def bound(n: int, bad: int) -> int:
    return 1 + 2 * bad * max(1, math.ceil(math.log2(n)))


async def test_a_clean_batch_costs_one_write() -> None:
    influx = FakeInflux()
    found = await write_isolating(influx.write, batch(200, set()))
    assert found.rejected == {}
    assert found.writes == 1
    assert len(influx.stored) == 400


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
async def test_exactly_the_bad_jobs_are_refused_in_few_writes(case: tuple[int, set[int]]) -> None:
    n, bad = case
    influx = FakeInflux()
    found = await write_isolating(influx.write, batch(n, bad))
    assert set(found.rejected) == ids(bad)
    assert found.writes <= bound(n, len(bad))
    assert len(influx.stored) == 2 * (n - len(bad))  # every good point written
    alone = {tuple(w) for w in influx.writes}
    assert all(g.lines in alone for g in batch(n, bad) if g.job_id in found.rejected)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 200).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.sets(st.integers(0, n - 1), min_size=1),
            st.sets(st.integers(0, n - 1)),
        )
    )
)
async def test_hints_even_hostile_ones_add_at_most_two_writes_per_hinted_job(
    case: tuple[int, set[int], set[int]],
) -> None:
    n, bad, quoted = case
    groups = batch(n, bad)
    # A hostile string value may quote any other job's line in InfluxDB's answer.
    hostile = "".join(f" '{groups[i].lines[0]}'" for i in sorted(quoted))
    influx = FakeInflux(quote=True, extra_quote=hostile)
    found = await write_isolating(influx.write, groups)
    assert set(found.rejected) == ids(bad)
    assert found.writes <= bound(n, len(bad)) + 2 * HINT_JOBS
    assert len(influx.stored) == 2 * (n - len(bad))


async def test_quoted_lines_find_the_bad_jobs_at_once() -> None:
    influx = FakeInflux(quote=True)
    found = await write_isolating(influx.write, batch(200, {3, 77, 150}))
    assert set(found.rejected) == {"j3", "j77", "j150"}
    # the batch; the 197 others together; the three named ones, each alone
    assert found.writes == 5
    refusal = str(found.rejected["j77"])
    assert "HTTP 400" in refusal
    assert "j=77," in refusal


async def test_a_hostile_quote_costs_writes_not_verdicts() -> None:
    # A bad job's string field may quote a good job's line: the good one is still written.
    groups = batch(10, {2})
    influx = FakeInflux(quote=True, extra_quote=f" '{groups[5].lines[0]}'")
    found = await write_isolating(influx.write, groups)
    assert set(found.rejected) == {"j2"}
    assert set(groups[5].lines) <= influx.stored


async def test_a_hostile_quote_of_every_line_costs_a_bounded_number_of_writes() -> None:
    groups = batch(200, {7})
    hostile = "".join(f" '{g.lines[0]}'" for g in groups)
    influx = FakeInflux(quote=True, extra_quote=hostile)
    found = await write_isolating(influx.write, groups)
    assert set(found.rejected) == {"j7"}
    assert found.writes <= bound(200, 1) + 2 * HINT_JOBS


async def test_parts_are_written_a_few_at_once() -> None:
    influx = FakeInflux(latency=0.002)
    found = await write_isolating(influx.write, batch(64, set(range(0, 64, 4))))
    assert len(found.rejected) == 16
    assert influx.most_in_flight == PARALLEL_WRITES


async def test_past_the_deadline_the_rest_is_retried_and_nothing_good_refused() -> None:
    bad = {3, 50, 51, 120, 199}
    influx = FakeInflux(latency=0.2)
    groups = batch(200, bad)
    started = time.monotonic()
    found = await write_isolating(
        influx.write, groups, deadline=asyncio.get_running_loop().time() + 1.0
    )
    took = time.monotonic() - started
    assert found.timed_out
    assert took < 1.5  # the writes still running at the deadline were cancelled
    assert set(found.rejected) <= ids(bad)  # refused: only bad jobs, each alone
    written = [g for g in groups if g.job_id not in {*found.rejected, *found.unresolved}]
    assert written  # the clean parts found in time (25 jobs each)
    assert all(set(g.lines) <= influx.stored for g in written)
    assert ids(bad) <= {*found.rejected, *found.unresolved}
    assert found.unresolved
    assert not found.limited


async def test_a_deadline_already_passed_leaves_every_job_unresolved() -> None:
    influx = FakeInflux()
    loop = asyncio.get_running_loop()
    found = await write_isolating(influx.write, batch(5, {1}), deadline=loop.time() - 1)
    assert found.unresolved == ["j0", "j1", "j2", "j3", "j4"]
    assert (found.writes, found.rejected) == (0, {})


async def test_a_capacity_limit_retries_only_the_jobs_that_hit_it() -> None:
    influx = FakeInflux()
    new = frozenset({10, 11, 60})
    found = await write_isolating(influx.write, batch(100, {20, 90}, new))
    assert set(found.limited) == ids(new)
    assert "max-values-per-tag" in str(found.limited["j60"])
    assert set(found.rejected) == {"j20", "j90"}
    good = [g for g in batch(100, {20, 90}, new) if g.job_id not in {*found.limited, "j20", "j90"}]
    assert len(good) == 95
    assert all(set(g.lines) <= influx.stored for g in good)
    assert found.writes <= bound(100, 5)


async def test_every_job_refused_without_a_judged_point_is_an_outage() -> None:
    writes = 0

    async def proxy(lines: Sequence[str]) -> None:
        nonlocal writes
        writes += 1
        raise PointsRejected(status=400, detail="<html><h1>400 Bad Request</h1></html>")

    with pytest.raises(SinkUnavailable, match="not bad data") as caught:
        await write_isolating(proxy, batch(8, set()))
    assert "INFLUX_URL" in str(caught.value)
    assert writes == 15  # every job was asked about alone first


async def test_every_job_refused_with_a_judged_point_is_bad_data() -> None:
    async def conflict(lines: Sequence[str]) -> None:
        raise PointsRejected(
            status=400,
            detail='partial write: field type conflict: input field "v" on measurement "m" is '
            "type float, already exists as type string dropped=1",
        )

    found = await write_isolating(conflict, batch(3, set()))
    assert set(found.rejected) == {"j0", "j1", "j2"}


async def test_an_outage_while_splitting_fails_the_batch() -> None:
    influx = FakeInflux()

    async def write(lines: Sequence[str]) -> None:
        if len(influx.writes) == 2:
            raise SinkUnavailable("InfluxDB went away")
        await influx.write(lines)

    with pytest.raises(SinkUnavailable, match="went away"):
        await write_isolating(write, batch(8, {6}))
