"""The machines' endpoints: which machines have cached values, one machine's latest values and
configuration, and the latest alerts - the plant's state as the workers leave it, read through
``conveyor_plant``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from conveyor_gateway.errors import ApiError
from conveyor_gateway.limits import MACHINES_LISTED, MAX_MACHINE_ID
from conveyor_gateway.models import Alerts, Machine, Machines, json_response
from conveyor_gateway.parameters import LIMIT, machine_id
from conveyor_gateway.state import state_of


async def machines(request: Request) -> Response:
    found, truncated = await state_of(request).plant.machine_ids(limit=MACHINES_LISTED)
    return json_response(Machines(machines=found, truncated=truncated))


async def machine(request: Request) -> Response:
    return await machine_named(request, machine_id(request))


async def machine_named(request: Request, machine: str) -> Response:
    """``/machines/{machine}``'s answer for ``machine``."""
    if not 0 < len(machine) <= MAX_MACHINE_ID:
        raise ApiError(422, f"a machine id has 1 to {MAX_MACHINE_ID} characters")
    state = await state_of(request).plant.machine_state(machine)
    if state is None:
        raise ApiError(
            404,
            f"nothing known of machine {machine!r}: no value from it within the cache "
            "TTL (WORKER_CACHE_TTL_S); check that it publishes to <machine>/realtime",
        )
    return json_response(
        Machine(
            machine=machine,
            values=state.values,
            updated_ms=state.updated_ms,
            config=state.config,
            offline_since_ms=state.offline_since_ms,
            units=state.units,
        )
    )


async def alerts(request: Request) -> Response:
    limit = LIMIT.read(request)
    return json_response(Alerts(alerts=await state_of(request).plant.recent_alerts(limit=limit)))
