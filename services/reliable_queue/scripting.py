"""The Lua scripts, loaded once from the ``lua/`` folder beside this module.

Each script is ``lua/_lib.lua`` (shared helpers and the key layout) followed by the script's own
file, whose header documents its KEYS and ARGV. Scripts are registered with the client, which
sends EVALSHA and falls back to loading the script when a (restarted) server lacks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from reliable_queue.connection import RedisClient

SCRIPT_NAMES = (
    "ack",
    "beat",
    "claim",
    "dead_add",
    "dead_purge",
    "dead_replay",
    "enqueue",
    "fail",
    "held",
    "history",
    "owner_claim",
    "owner_release",
    "reap",
    "release",
    "renew",
    "stats",
)


@cache
def script_source(name: str) -> str:
    folder = resources.files("reliable_queue") / "lua"
    return (folder / "_lib.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


class Scripts:
    """The registered scripts of one client, called as ``await scripts.run(name, keys, args)``."""

    def __init__(self, client: RedisClient) -> None:
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._scripts[name](keys=list(keys), args=list(args))
