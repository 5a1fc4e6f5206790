"""Test access to real servers: skip locally when a binary is missing, fail in CI."""

from __future__ import annotations

import os

import pytest

from conveyor.local_servers import (
    MosquittoServer,
    RedisClusterServers,
    RedisServer,
    find_binary,
    free_port,
    start_redis_cluster,
)

__all__ = [
    "MosquittoServer",
    "RedisClusterServers",
    "RedisServer",
    "free_port",
    "require_binary",
    "start_redis_cluster",
]


def require_binary(name: str, *, install: str) -> str:
    """The binary's path; a skip with the install command, or a failure when ``CI`` is set."""
    path = find_binary(name)
    if path is None:
        message = f"{name} is not installed: run hack/bootstrap.sh (or {install})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
