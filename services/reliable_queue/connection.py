"""Redis connections and the boundary where Redis errors become the library's own.

The library reads no environment: callers pass a URL (entry points build it from their
settings). Redis Cluster is chosen explicitly with ``cluster=True``; every queue's keys share a
hash tag, so nothing else changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeAlias

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry

from reliable_queue.errors import QueueUnavailable, ReliableQueueError

RedisClient: TypeAlias = "aioredis.Redis | RedisCluster"


def connect(
    url: str,
    *,
    cluster: bool = False,
    socket_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    max_connections: int = 64,
) -> RedisClient:
    """A client for ``url`` (``redis://``, ``rediss://`` or ``unix://``).

    The client does not retry by itself: a script that may have run must not be sent twice
    blindly. The queue retries where that is safe and says so where it is not.
    """
    options: dict[str, object] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": RedisRetry(NoBackoff(), 0),
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return aioredis.Redis.from_url(url, max_connections=max_connections, **options)  # type: ignore[arg-type]


def describe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


@contextmanager
def redis_boundary(what: str) -> Iterator[None]:
    """Map Redis client errors to the library's errors, naming what was being done."""
    try:
        yield
    except (
        redis_errors.ConnectionError,
        redis_errors.TimeoutError,
        redis_errors.ClusterDownError,
        redis_errors.TryAgainError,
        OSError,
    ) as exc:
        raise QueueUnavailable(f"Redis unavailable while trying to {what}: {exc}") from exc
    except redis_errors.OutOfMemoryError as exc:
        raise QueueUnavailable(_OOM.format(what=what, exc=exc)) from exc
    except redis_errors.ResponseError as exc:
        if "LOADING" in str(exc) or "CLUSTERDOWN" in str(exc) or "TRYAGAIN" in str(exc):
            raise QueueUnavailable(f"Redis not ready while trying to {what}: {exc}") from exc
        if str(exc).startswith("OOM ") or "-OOM " in str(exc):  # raised inside a script
            raise QueueUnavailable(_OOM.format(what=what, exc=exc)) from exc
        raise ReliableQueueError(f"Redis rejected the command to {what}: {exc}") from exc


# Redis at maxmemory with noeviction refuses writes instead of dropping keys (or being
# OOM-killed): for a producer that is backpressure, retryable once workers drain the queue.
# A script is refused at its first write and never after one, so it is never half-applied.
_OOM = "Redis is out of memory (maxmemory) while trying to {what}; retry later: {exc}"
