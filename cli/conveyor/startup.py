"""What a long-running service does before it starts: wait for its Redis."""

from __future__ import annotations

import asyncio
import logging
import time

from reliable_queue import Backoff, QueueClient, QueueUnavailable

log = logging.getLogger(__name__)


async def wait_for_redis(client: QueueClient, wait_s: float) -> None:
    """Pings Redis until it answers, for at most ``wait_s`` (``REDIS_STARTUP_WAIT_S``), then
    raises QueueUnavailable. Pods of one release start together: a worker or gateway waits for
    the Redis beside it instead of crash-looping, and a wrong URL is still named at once. The
    waits grow from 0.5 s to 5 s with jitter, so a release's pods do not ping in step."""
    deadline = time.monotonic() + wait_s
    backoff = Backoff(first=0.5, cap=5.0)
    while True:
        try:
            await client.ping()
            return
        except QueueUnavailable as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.warning("%s; waiting up to %.0fs more (REDIS_STARTUP_WAIT_S)", exc, left)
            await asyncio.sleep(min(backoff.take(), left))
