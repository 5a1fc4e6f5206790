"""What every endpoint reads: the gateway's parts, made once by ``create_app`` and left on the
app (``app.state.gateway``). Starlette's ``State`` is untyped; :func:`state_of` gives it its
type back, so an endpoint is a plain function of its request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor_plant import PlantState
from starlette.requests import HTTPConnection

from conveyor_gateway.config import GatewayConfig
from conveyor_gateway.history import StatsHistory
from conveyor_gateway.influx import InfluxReader
from conveyor_gateway.live import LiveHub
from conveyor_gateway.metrics import GatewayMetrics
from reliable_queue import QueueClient

if TYPE_CHECKING:  # the stream's endpoint reads this state: no import back at run time
    from conveyor_gateway.stream import StreamGate


@dataclass(frozen=True, slots=True)
class GatewayState:
    """``client``: the queues; ``plant``: the machines' state; ``hub``: the live stream's
    fan-out; ``history``: the stats sampler; ``gate``: the open ``/ws`` sockets; ``page``:
    the dashboard's HTML; ``openapi``: the document, made once for this configuration;
    ``influx``: where the charts' points are read (None: InfluxDB is not configured)."""

    client: QueueClient
    plant: PlantState
    config: GatewayConfig
    metrics: GatewayMetrics
    hub: LiveHub
    history: StatsHistory
    gate: StreamGate
    page: str
    openapi: dict[str, Any]
    influx: InfluxReader | None = None


def state_of(connection: HTTPConnection) -> GatewayState:
    """The gateway's parts, for a request or a WebSocket."""
    state = connection.app.state.gateway
    assert isinstance(state, GatewayState)
    return state
