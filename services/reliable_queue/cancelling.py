"""Stopping background tasks that talk to Redis.

redis-py sends every command through ``asyncio.wait_for``, which on Python 3.11 drops a
cancellation that arrives as the command completes: the task runs on, still marked as
cancelling, and whoever awaits it after one ``cancel()`` waits forever. :func:`cancel_and_wait`
sends the cancellation again until the task has ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task[Any], again_after_s: float = 0.1) -> None:
    """Cancel the tasks and wait until each has ended, cancelling again every
    ``again_after_s`` a task that swallowed its cancellation. Exceptions they ended with are
    logged at debug level (retrieved, so asyncio does not warn about them)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_after_s)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.debug("task %s ended with %r", task.get_name(), task.exception())
