"""Finding the jobs whose points InfluxDB refuses, so that only they fail.

The processors write one batch of jobs in one request. When InfluxDB refuses it as bad data
(:class:`PointsRejected`), the jobs are split and each part written again, recursively, until
every refused part is a single job. Every job that fails has been refused on its own, so no
job's fate depends on another's.

Cost, for ``n`` bad jobs among ``N``: a clean batch costs one write; splitting in halves costs
at most ``1 + 2n * ceil(log2 N)`` writes. InfluxDB's answer guides the split without deciding
it: 1.8 quotes each line it could not parse (``unable to parse '<line>': ...``) and 2.x numbers
them (``line 3``), so the jobs named are written alone, next to the rest. A wrong hint (a
hostile string value can quote another job's line) costs writes, never a wrong verdict, and at
most :data:`HINT_JOBS` jobs per batch are written alone on a hint: the bound becomes
``1 + 2n * ceil(log2 N) + 2 * HINT_JOBS``. Up to :data:`PARALLEL_WRITES` parts are written at
once.

Time is bounded too: past ``deadline`` the writes still running are cancelled and every job
not yet settled is *unresolved* (the caller retries it later; it was neither written for sure
nor refused alone), so a few bad jobs on a slow InfluxDB cannot run the batch into its timeout.

Writing a part again is safe: every point carries its own time, so a point InfluxDB already
took (1.8 writes the good points of a *partial write*) is overwritten with itself.

A refusal at one of InfluxDB's capacity limits (:class:`InfluxLimitReached`: too many series,
or values of a tag) is split the same way, by halves, but is no verdict: InfluxDB 1.8 then
writes none of the request, so the jobs of series it knows are written apart from those that
would add series, and those are *limited*: retried later, never refused as bad data.

If InfluxDB wrote none of the batch and refused each job it was asked about alone without
ever judging a point (see :attr:`PointsRejected.about_points`), the answer is not about the
data: something answers 400 to every write (a proxy, a wrong path), and that is an outage.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from conveyor_worker.errors import InfluxLimitReached, PointsRejected, SinkUnavailable, shown

Write = Callable[[Sequence[str]], Awaitable[None]]

HINT_SCAN_CHARS = 256 * 1024
"""Longer server messages are not searched for the lines they quote: the split is by halves."""
HINT_JOBS = 16
"""At most this many jobs of a batch are written alone because InfluxDB's answer named them."""
PARALLEL_WRITES = 4
"""Parts of a refused batch written at once."""

_LINE_NUMBER = re.compile(r"\bline (\d+)\b")


@dataclass(frozen=True)
class PointGroup:
    """The lines of one job: they are written, or refused, together."""

    job_id: str
    lines: tuple[str, ...]


@dataclass
class Isolated:
    """What :func:`write_isolating` found, by job id: the refusal of each job refused alone,
    the jobs refused alone at a capacity limit, and the jobs left unresolved at the deadline.
    Every other job's points were written."""

    rejected: dict[str, PointsRejected] = field(default_factory=dict)
    limited: dict[str, InfluxLimitReached] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)
    writes: int = 0
    timed_out: bool = False


async def write_isolating(
    write: Write,
    groups: Sequence[PointGroup],
    *,
    deadline: float | None = None,
    parallel: int = PARALLEL_WRITES,
) -> Isolated:
    """Write the lines of every group; return the groups InfluxDB refused on their own (as
    bad data or at a limit) and those left unresolved at ``deadline`` (event loop time; None:
    no deadline).

    Any other error (an outage) propagates: the caller retries the batch.
    """
    todo = [g for g in groups if g.lines]
    run = _Run(write=write, gate=asyncio.Semaphore(parallel))
    outage: BaseException | None = None
    if deadline is not None and asyncio.get_running_loop().time() >= deadline:
        run.result.timed_out = True  # not even one write: every job is unresolved
    else:
        try:
            async with asyncio.timeout_at(deadline), asyncio.TaskGroup() as tasks:
                run.tasks = tasks
                run.start(todo)
        except TimeoutError:
            run.result.timed_out = True
        except BaseExceptionGroup as failed:  # the other writes were cancelled
            outage = failed.exceptions[0]
    if outage is not None:
        raise outage  # as it was raised, cause and all
    result = run.result
    result.unresolved = [g.job_id for g in todo if g.job_id not in run.settled]
    written = len(run.settled) - len(result.rejected) - len(result.limited)
    if result.rejected and not written and not _judged_points(result.rejected.values()):
        raise _not_about_points(result.rejected, len(todo))
    return result


@dataclass
class _Run:
    write: Write
    gate: asyncio.Semaphore
    tasks: asyncio.TaskGroup | None = None
    result: Isolated = field(default_factory=Isolated)
    settled: set[str] = field(default_factory=set)
    hints_left: int = HINT_JOBS

    def start(self, part: list[PointGroup]) -> None:
        if part:
            assert self.tasks is not None
            self.tasks.create_task(self._settle(part))

    async def _settle(self, part: list[PointGroup]) -> None:
        try:
            async with self.gate:
                self.result.writes += 1
                await self.write([line for group in part for line in group.lines])
        except PointsRejected as exc:
            if len(part) > 1:
                self._start_all(self._split(part, exc))
                return
            self.result.rejected[part[0].job_id] = exc
        except InfluxLimitReached as exc:
            if len(part) > 1:
                self._start_all(_halves(part))
                return
            self.result.limited[part[0].job_id] = exc
        self.settled.update(g.job_id for g in part)

    def _start_all(self, parts: list[list[PointGroup]]) -> None:
        for part in parts:
            self.start(part)

    def _split(self, part: list[PointGroup], exc: PointsRejected) -> list[list[PointGroup]]:
        """The parts to write next: the rest, then each job InfluxDB named alone; else halves."""
        named = _named(part, exc.detail)
        if named and len(named) <= self.hints_left:
            self.hints_left -= len(named)
            rest = [g for g in part if g.job_id not in named]
            return [rest, *([g] for g in part if g.job_id in named)]
        return _halves(part)


def _halves(part: list[PointGroup]) -> list[list[PointGroup]]:
    half = len(part) // 2
    return [part[:half], part[half:]]


def _named(groups: list[PointGroup], detail: str) -> set[str]:
    """Job ids whose lines the server's message quotes (1.8) or numbers (2.x, 1-based)."""
    if not detail or len(detail) > HINT_SCAN_CHARS:
        return set()
    named: set[str] = set()
    if "'" in detail:
        named |= {g.job_id for g in groups if any(f"'{line}'" in detail for line in g.lines)}
    numbers = {int(n) for n in _LINE_NUMBER.findall(detail)}
    if numbers:
        at = 0
        for group in groups:
            if any(at < n <= at + len(group.lines) for n in numbers):
                named.add(group.job_id)
            at += len(group.lines)
    return named


def _judged_points(refusals: Iterable[PointsRejected]) -> bool:
    return any(refusal.about_points for refusal in refusals)


def _not_about_points(rejected: dict[str, PointsRejected], jobs: int) -> SinkUnavailable:
    example = next(iter(rejected.values()))
    return SinkUnavailable(
        f"InfluxDB wrote none of the {jobs} jobs of this batch and refused {len(rejected)} of "
        "them, each alone, without judging a single point (HTTP "
        f"{example.status}: {shown(example.detail, 200) or 'no message'}): that is not bad data "
        "but something answering every write with an error (a proxy in front of InfluxDB, a "
        "wrong INFLUX_URL path); check what answers at INFLUX_URL. Retrying"
    )
