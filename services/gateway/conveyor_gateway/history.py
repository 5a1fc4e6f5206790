"""Queue figures over time: the gateway samples every queue's stats at a fixed interval and
keeps the last minutes in memory, for per-queue throughput (``/stats``) and the dashboard's
depth sparklines (``/stats/history``).

Each gateway replica samples on its own; all read the same Redis, so they agree to within one
interval. Nothing is written back: a restarted gateway starts with an empty history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from reliable_queue import QueueClient, QueueUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # epoch seconds
    pending: int
    processing: int
    delayed: int
    failed: int
    completed: int
    enqueued: int


@dataclass(frozen=True, slots=True)
class Throughput:
    """Jobs completed and enqueued within ``window_s`` (at most a minute; less after a start)."""

    completed: int
    enqueued: int
    window_s: float

    @property
    def completed_per_s(self) -> float:
        return self.completed / self.window_s if self.window_s > 0 else 0.0

    @property
    def enqueued_per_s(self) -> float:
        return self.enqueued / self.window_s if self.window_s > 0 else 0.0


class StatsHistory:
    def __init__(self, client: QueueClient, *, interval_s: float, keep_s: float) -> None:
        self._client = client
        self.interval_s = interval_s
        self._keep = max(2, int(keep_s / interval_s) + 1)
        self._samples: dict[str, deque[Sample]] = {}

    def record(self, stats: dict[str, Any], at: float) -> None:
        """Add one stats document (``QueueClient.stats()``) taken at ``at``."""
        for name, q in stats["queues"].items():
            samples = self._samples.setdefault(name, deque(maxlen=self._keep))
            samples.append(
                Sample(
                    at=at,
                    pending=q["pending"],
                    processing=q["processing"],
                    delayed=q["delayed"],
                    failed=q["failed"],
                    completed=q["completed"],
                    enqueued=q["enqueued"],
                )
            )
        for gone in set(self._samples) - set(stats["queues"]):
            del self._samples[gone]

    def throughput(self, queue: str, now: dict[str, Any], window_s: float = 60.0) -> Throughput:
        """Between the oldest sample within ``window_s`` and ``now`` (current stats)."""
        samples = self._samples.get(queue)
        if not samples:
            return Throughput(0, 0, 0.0)
        t = time.time()
        base = next((s for s in samples if t - s.at <= window_s), samples[-1])
        return Throughput(
            completed=max(0, now["completed"] - base.completed),
            enqueued=max(0, now["enqueued"] - base.enqueued),
            window_s=max(0.0, t - base.at),
        )

    def series(self, queue: str, seconds: float) -> list[dict[str, Any]]:
        t = time.time()
        return [asdict(s) for s in self._samples.get(queue, ()) if t - s.at <= seconds]

    def queues(self) -> list[str]:
        return sorted(self._samples)

    async def run(self) -> None:
        """Sample until cancelled; a Redis outage leaves a gap, not an error."""
        while True:
            try:
                self.record(await self._client.stats(), time.time())
            except QueueUnavailable as exc:
                log.warning("cannot sample queue stats: %s", exc)
            await asyncio.sleep(self.interval_s)
