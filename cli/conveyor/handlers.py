"""Loading job handlers named ``module:function`` on the command line."""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

from reliable_queue import Job, UsageError

log = logging.getLogger(__name__)


async def log_job(job: Job) -> None:
    """The default handler until a queue has a processor: log the job and acknowledge it."""
    log.info(
        "job %s: %s",
        job.id,
        job.data,
        extra={"queue": job.queue, "job_id": job.id, "attempt": job.attempt},
    )


def load_handler(spec: str) -> Any:
    """Import ``module:function`` and check it is an async function."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--handler {spec!r}: write it as module:function, e.g. myapp.jobs:handle")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--handler {spec!r}: cannot import {module_name!r} ({exc})") from exc
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"--handler {spec!r}: {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not (
        inspect.iscoroutinefunction(target)
        or (callable(target) and inspect.iscoroutinefunction(type(target).__call__))
    ):
        raise UsageError(f"--handler {spec!r}: {attr!r} must be an async function taking the job")
    return target
