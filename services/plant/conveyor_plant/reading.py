"""Reading the plant's state as the workers leave it (:mod:`conveyor_plant.keys`): the machines
with cached values, one machine's latest values and configuration, the latest alerts. The
format is written once, here and in the keys' docstrings; the gateway serves what these
return."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from conveyor_plant.keys import (
    ALERT_HISTORY,
    LATEST_OFFLINE_FIELD,
    LATEST_ONLINE_FIELD,
    LATEST_UPDATED_FIELD,
    latest_units,
    latest_values,
    tech_config,
)
from reliable_queue.connection import RedisClient, connect

_UPDATED = LATEST_UPDATED_FIELD.encode()
_OFFLINE = LATEST_OFFLINE_FIELD.encode()
_RESERVED = (_UPDATED, _OFFLINE, LATEST_ONLINE_FIELD.encode())


class PlantState:
    """The plant's state in Redis, over a connection of its own (``PlantState.from_url``),
    beside the queue's: the workers write through :attr:`redis` (pipelines of the keys in
    :mod:`conveyor_plant.keys`), the gateway reads through the methods and subscribes to the
    live channels. ``async with PlantState.from_url(url) as plant: ...``"""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False) -> PlantState:
        return cls(connect(url, cluster=cluster))

    async def __aenter__(self) -> PlantState:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.redis.aclose()

    async def machine_ids(self, *, limit: int) -> tuple[list[str], bool]:
        return await machine_ids(self.redis, limit=limit)

    async def machine_state(self, machine: str) -> MachineState | None:
        return await machine_state(self.redis, machine)

    async def recent_alerts(self, *, limit: int) -> list[Any]:
        return await recent_alerts(self.redis, limit=limit)

    async def units(self, machine: str) -> dict[str, str]:
        """Signal -> unit of measure, for ``machine``'s signals whose messages named one."""
        raw = cast(dict[bytes, bytes], await self.redis.hgetall(latest_units(machine)))
        return {k.decode(): v.decode() for k, v in raw.items()}


@dataclass(frozen=True, slots=True)
class MachineState:
    """A machine's newest value of each signal, the newest sample time (ms) among them, and
    its current technical configuration (``{"version", "ts", "config"}``), each None when
    unknown; since when (ms) it is offline, None while it is not; the units of the signals
    whose messages named one."""

    values: dict[str, Any]
    updated_ms: int | None
    config: Any | None
    offline_since_ms: int | None = None
    units: dict[str, str] = field(default_factory=dict)


async def machine_ids(redis: RedisClient, *, limit: int) -> tuple[list[str], bool]:
    """The ids of machines with cached values (a SCAN, so no more than ``limit``), sorted, and
    whether there were more."""
    found: list[str] = []
    async for key in redis.scan_iter(match=latest_values("*"), count=500):
        name = key.decode() if isinstance(key, bytes) else key
        found.append(name.split("{", 1)[1].rsplit("}", 1)[0])
        if len(found) >= limit:
            break
    return sorted(found), len(found) >= limit


async def machine_state(redis: RedisClient, machine: str) -> MachineState | None:
    """What is known of ``machine``; None when nothing is (no value within the cache's TTL,
    no configuration)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(latest_values(machine))
    pipe.get(tech_config(machine))
    pipe.hgetall(latest_units(machine))
    raw, tech, units = cast(
        tuple[dict[bytes, bytes], bytes | None, dict[bytes, bytes]], await pipe.execute()
    )
    if not raw and tech is None:
        return None
    values = {k.decode(): json.loads(v) for k, v in raw.items() if k not in _RESERVED}
    updated = int(raw[_UPDATED]) if _UPDATED in raw else None
    offline = int(raw[_OFFLINE]) if _OFFLINE in raw else None
    return MachineState(
        values,
        updated,
        json.loads(tech) if tech is not None else None,
        offline_since_ms=offline,
        units={k.decode(): v.decode() for k, v in units.items()},
    )


async def recent_alerts(redis: RedisClient, *, limit: int) -> list[Any]:
    """The latest processed alerts, newest first, each as the alerts worker recorded it."""
    entries = cast(
        list[tuple[bytes, dict[bytes, bytes]]], await redis.xrevrange(ALERT_HISTORY, count=limit)
    )
    return [json.loads(fields[b"alert"]) for _, fields in entries]
