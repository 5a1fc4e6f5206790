"""Waiting between attempts at something that failed (Redis away, a broker restarting).

Every loop that retries a failed call waits through a :class:`Backoff`: the delay doubles from
``first`` up to ``cap``, and each wait is drawn at random from the upper half of it ("equal
jitter"). Without the jitter, every worker and ingestor that lost Redis at the same moment
would retry at the same moments too, and meet the restarted server in lockstep bursts.

    backoff = Backoff(first=0.05, cap=5.0)
    while True:
        try:
            await call()
            backoff.reset()
            break
        except QueueUnavailable as exc:
            log.warning("%s; retrying in %.1fs", exc, backoff.peek())
            await backoff.sleep()

This is for infrastructure retries. A job's own retries keep the queue policy's exact delays
(2 s, 4 s, 8 s by default): they are already spread out by when each job failed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Exponential delays with jitter: ``first``, multiplied by ``factor`` up to ``cap`` seconds."""

    first: float = 0.05
    cap: float = 5.0
    factor: float = 2.0
    jitter: float = 0.5
    """The share of each delay that is random: 0.5 waits between half and all of it."""
    rng: Callable[[], float] = field(default=random.random, repr=False)
    _ceiling: float = field(init=False, default=0.0)
    _next: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError(f"need 0 < first <= cap, not first={self.first}, cap={self.cap}")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need factor >= 1 and 0 <= jitter <= 1")
        self.reset()

    def reset(self) -> None:
        """After a success: the next failure waits ``first`` again."""
        self._ceiling = self.first
        self._next = self._draw()

    def peek(self) -> float:
        """The next wait, in seconds, without taking it (for a log line before sleeping)."""
        return self._next

    def take(self) -> float:
        """The next wait, in seconds; the one after it grows towards ``cap``."""
        delay = self._next
        self._ceiling = min(self._ceiling * self.factor, self.cap)
        self._next = self._draw()
        return delay

    async def sleep(self) -> float:
        """Wait the next delay; returns it."""
        delay = self.take()
        await asyncio.sleep(delay)
        return delay

    def _draw(self) -> float:
        return self._ceiling * (1 - self.jitter * self.rng())
