"""Commands packed by hiredis (reliable_queue.connection) are byte for byte what redis-py
packs, and what hiredis cannot pack gets redis-py's own error."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError

from reliable_queue.connection import connect, hiredis_packing

COMMANDS = [
    ("PING",),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", b"conveyor"),
    ("EVALSHA", "a" * 40, 2, "k1", "k2", 0, -1, 2**70, 1.5, 0.1, 1e20, -0.0),
    ("SET", "key", "é ünicode ✓", "EX", 10),
    ("HSET", "h", b"\x00\xffbinary", memoryview(b"view")),
    ("HSET", "h", "f", b"x" * 100_000),  # larger than redis-py's buffer cutoff
]


def _plain() -> aioredis.Connection:
    return aioredis.Connection()


def _fast() -> aioredis.Connection:
    return hiredis_packing(aioredis.Connection)()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_same_bytes_as_redis_py(command: tuple[object, ...]) -> None:
    expected = b"".join(bytes(part) for part in _plain().pack_command(*command))
    assert b"".join(_fast().pack_command(*command)) == expected


@pytest.mark.parametrize("bad", [True, None, 1 + 2j])
def test_what_hiredis_refuses_gets_redis_pys_error(bad: object) -> None:
    with pytest.raises(DataError, match="Invalid input of type"):
        _fast().pack_command("SET", "key", bad)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///x"])
def test_every_client_packs_with_hiredis_and_keeps_its_transport(url: str) -> None:
    pool = connect(url).connection_pool  # type: ignore[union-attr]
    transport = aioredis.Redis.from_url(url).connection_pool.connection_class
    assert issubclass(pool.connection_class, transport)
    assert pool.connection_class.pack_command is not transport.pack_command
    assert hiredis_packing(pool.connection_class) is pool.connection_class


def test_cluster_nodes_pack_with_hiredis() -> None:
    client = connect("redis://127.0.0.1:1/0", cluster=True)
    nodes = client.nodes_manager.startup_nodes.values()  # type: ignore[union-attr]
    assert nodes
    for node in nodes:
        assert node.connection_class.__name__ == "HiredisConnection"
    later = client.nodes_manager.connection_kwargs["connection_class"]  # type: ignore[union-attr]
    assert later.__name__ == "HiredisConnection"
