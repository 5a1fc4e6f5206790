"""Redis connections and the boundary where Redis errors become the library's own.

The library reads no environment: callers pass a URL (entry points build it from their
settings). Redis Cluster is chosen explicitly with ``cluster=True``; every queue's keys share a
hash tag, so nothing else changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias, TypeVar, cast

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry

from reliable_queue.errors import QueueUnavailable, ReliableQueueError

RedisClient: TypeAlias = "aioredis.Redis | RedisCluster"
_C = TypeVar("_C", bound=aioredis.connection.AbstractConnection)


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
        cluster_client = RedisCluster.from_url(url, **options)
        # Nodes found later are made from these kwargs; the startup nodes already exist.
        nodes = cluster_client.nodes_manager
        for kwargs in (cluster_client.connection_kwargs, nodes.connection_kwargs):
            kwargs["connection_class"] = hiredis_packing(kwargs["connection_class"])
        for node in nodes.startup_nodes.values():
            node.connection_class = hiredis_packing(node.connection_class)
        return cluster_client
    client = aioredis.Redis.from_url(url, max_connections=max_connections, **options)  # type: ignore[arg-type]
    pool = client.connection_pool
    pool.connection_class = hiredis_packing(pool.connection_class)
    return client


def hiredis_packing(connection_class: type[_C]) -> type[_C]:
    """``connection_class`` packing commands with hiredis (C) instead of redis-py's Python.

    redis-py's asyncio connection packs each argument in Python (about 1.5 µs per argument:
    6 µs for each job of an enqueue, the largest single cost of an ingestor); hiredis packs
    the whole command at once, about six times faster. Anything hiredis does not take (a
    bool, None, a bytearray) goes to redis-py's packing, which refuses it with its own error."""
    if _HiredisPacking in connection_class.__mro__:
        return connection_class
    name = f"Hiredis{connection_class.__name__}"
    return cast(type[_C], type(name, (_HiredisPacking, connection_class), {}))


class _HiredisPacking:
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        # As redis-py: a command name with spaces ("CONFIG GET") is sent as several arguments.
        if isinstance(first, str):
            if " " in first:
                args = (*first.split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
            return packed


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
