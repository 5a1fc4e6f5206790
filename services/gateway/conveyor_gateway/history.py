"""Queue figures over time: the gateway samples every queue's stats at a fixed interval into
each queue's history in Redis (:mod:`reliable_queue.history`), for per-queue throughput
(``/stats``) and the dashboard's charts of depth, rate and oldest age (``/stats/history``).

Every gateway replica samples; Redis keeps the first sample of each slot, so replicas share one
history, and a restarted gateway finds it where it was: every ``interval_s`` for the last
``keep_s``, and every minute for a day.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reliable_queue import QueueClient, QueueUnavailable
from reliable_queue.history import COARSE_KEEP_S, Sample

log = logging.getLogger(__name__)


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
        self.keep_s = keep_s
        self.longest_s = max(keep_s, COARSE_KEEP_S)
        """The longest history kept: a day."""

    async def throughput(
        self, stats: dict[str, dict[str, Any]], window_s: float = 60.0
    ) -> dict[str, Throughput]:
        """Each queue's, between the oldest sample within ``window_s`` and ``stats`` (its
        current figures)."""
        t, history = await self._client.history(
            list(stats), seconds=window_s, keep_s=self.keep_s, first_only=True
        )
        found = {}
        for queue, now in stats.items():
            samples = history.get(queue)
            if not samples:
                found[queue] = Throughput(0, 0, 0.0)
                continue
            base = samples[0]
            found[queue] = Throughput(
                completed=max(0, now["completed"] - base.completed),
                enqueued=max(0, now["enqueued"] - base.enqueued),
                window_s=max(0.0, t - base.at),
            )
        return found

    async def series(self, queues: Sequence[str], seconds: float) -> dict[str, list[Sample]]:
        """Each queue's samples of the last ``seconds`` (every ``interval_s`` within
        ``keep_s``, else every minute), oldest first."""
        _, found = await self._client.history(queues, seconds=seconds, keep_s=self.keep_s)
        return found

    async def run(self) -> None:
        """Sample until cancelled; a Redis outage leaves a gap, not an error."""
        while True:
            try:
                stats = await self._client.stats()
                await self._client.record_history(
                    stats, interval_s=self.interval_s, keep_s=self.keep_s
                )
            except QueueUnavailable as exc:
                log.warning("cannot sample queue stats: %s", exc)
            await asyncio.sleep(self.interval_s)
