"""The gateway's HTTP operations, each written once in :data:`OPERATIONS`: its method and path,
who may call it, its parameters with their bounds, its body and its answers. The app's routes
are made from this table (:func:`http_routes`) and so is the OpenAPI document
(:mod:`conveyor_gateway.openapi`); a test checks that each holds exactly the other's.

The live stream (``/ws``, a WebSocket) and the dashboard's files (``/static``) are routes the
document cannot describe as operations; ``create_app`` adds them beside these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor_gateway import machines, probes, queues, trends
from conveyor_gateway.access import Access
from conveyor_gateway.metrics import TimedRoute, path_template
from conveyor_gateway.models import (
    Alerts,
    ConfigChanges,
    ControlChart,
    DeadLetterPage,
    Health,
    History,
    Machine,
    Machines,
    Purged,
    Readiness,
    Replayed,
    ReplayRequest,
    Stats,
    Trend,
)
from conveyor_gateway.parameters import (
    CHANGES,
    CHARACTERISTIC,
    FROM,
    IDS,
    LIMIT,
    MACHINE,
    MINUTES,
    OFFSET,
    QUEUE,
    SIGNAL,
    SPC_POINTS,
    TO,
    TREND_POINTS,
    Parameter,
)

Endpoint = Callable[[Request], Awaitable[Response]]

UNAVAILABLE = "Redis is unreachable; retry later"
NO_INFLUX = "InfluxDB is not configured for the gateway, or does not answer: the reason"
BAD_QUEUE = "not a valid queue name"
NO_QUEUE = "no such queue"


class AnyPath(Convertor[str]):
    """``{machine:anypath}``: Starlette's ``path`` with newlines too. ``path``'s ``.*`` stops at
    one, so an id holding ``%0A`` matched no route and had the router's 404, an answer these
    operations do not document, instead of reaching its handler (schemathesis found it)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPath())


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path. ``answer``: the 200's model, or its media type when it is not
    JSON; ``errors``: the other statuses it may answer with an ``Error`` (the token's 401 and
    403 follow from ``access``); ``unready``: statuses answered with the 200's model."""

    method: str
    path: str
    """The route's path, a parameter with its convertor (``{machine:anypath}``) if any."""
    endpoint: Endpoint
    access: Access
    summary: str
    answer: type[BaseModel] | str
    answered: str
    parameters: tuple[Parameter, ...] = ()
    body: type[BaseModel] | None = None
    errors: Mapping[int, str] = field(default_factory=dict)
    unready: Mapping[int, str] = field(default_factory=dict)

    @property
    def documented_path(self) -> str:
        """The path as OpenAPI writes it: ``{machine}``."""
        return path_template(self.path)

    @property
    def timed(self) -> bool:
        """The API's operations are timed; probes, metrics and documents are not (scrapes
        and probes every few seconds would drown the API's figures)."""
        return self.access is not Access.OPEN


# fmt: off
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET", "/", probes.dashboard, Access.OPEN,
        "the dashboard: one static page, no build step", "text/html", "the page",
    ),
    Operation(
        "GET", "/stats", queues.stats, Access.READ,
        "every queue's figures and its throughput over the last minute", Stats,
        "queue statistics", errors={503: UNAVAILABLE},
    ),
    Operation(
        "GET", "/stats/history", queues.stats_history, Access.READ,
        "sampled depth and counters per queue, for sparklines", History,
        "samples, oldest first", (MINUTES,), errors={422: "minutes out of range"},
    ),
    Operation(
        "GET", "/machines", machines.machines, Access.READ,
        "machines with cached latest values", Machines, "machine ids, sorted",
        errors={503: UNAVAILABLE},
    ),
    # Before /machines/{machine:anypath}, which would read ".../series" and ".../changes" as part
    # of a machine id (the latest values of a machine whose id ends so are out of reach).
    Operation(
        "GET", "/machines/{machine:anypath}/series", trends.machine_series, Access.READ,
        "a machine's numeric signals over a window from InfluxDB, downsampled to `points` "
        "buckets per signal (mean, min, max)", Trend, "trends, by signal",
        (MACHINE, SIGNAL, FROM, TO, TREND_POINTS),
        errors={422: "a name, window or points out of range", 503: NO_INFLUX},
    ),
    Operation(
        "GET", "/machines/{machine:anypath}/changes", trends.config_changes, Access.READ,
        "a machine's technical configuration, version by version, from InfluxDB",
        ConfigChanges, "changes, newest first", (MACHINE, FROM, TO, CHANGES),
        errors={422: "a name, window or limit out of range", 503: NO_INFLUX},
    ),
    Operation(
        "GET", "/spc/{machine:anypath}/{characteristic}", trends.control_chart, Access.READ,
        "an SPC characteristic's control chart from InfluxDB: its newest points with the "
        "limits in force at each and the rules each broke", ControlChart, "the chart's points",
        (MACHINE, CHARACTERISTIC, FROM, TO, SPC_POINTS),
        errors={404: "no points of it in the window",
                422: "a name, window or points out of range", 503: NO_INFLUX},
    ),
    Operation(  # a machine id may have slashes (a Sparkplug B one: <group>/<node>/<device>)
        "GET", "/machines/{machine:anypath}", machines.machine, Access.READ,
        "a machine's latest values and current configuration", Machine, "latest values",
        (MACHINE,),
        errors={404: "nothing known of this machine", 422: "a machine id too long",
                503: UNAVAILABLE},
    ),
    Operation(
        "GET", "/alerts", machines.alerts, Access.READ,
        "the latest processed alerts, newest first", Alerts, "alerts", (LIMIT,),
        errors={422: "limit out of range", 503: UNAVAILABLE},
    ),
    Operation(
        "GET", "/queues/{queue}/dead", queues.dead_letters, Access.READ,
        "dead letters of a queue, newest first, paged", DeadLetterPage,
        "a page of dead letters", (QUEUE, OFFSET, LIMIT),
        errors={400: BAD_QUEUE, 404: NO_QUEUE, 422: "offset or limit out of range",
                503: UNAVAILABLE},
    ),
    Operation(
        "DELETE", "/queues/{queue}/dead", queues.purge, Access.CHANGE,
        "delete dead letters for good (all, or ?ids=a,b)", Purged, "how many were deleted",
        (QUEUE, IDS), errors={400: BAD_QUEUE, 404: NO_QUEUE, 503: UNAVAILABLE},
    ),
    Operation(
        "POST", "/queues/{queue}/dead/replay", queues.replay, Access.CHANGE,
        "move dead letters back to the queue with fresh attempts", Replayed,
        "how many were replayed", (QUEUE,), body=ReplayRequest,
        errors={400: BAD_QUEUE, 404: NO_QUEUE, 422: 'the body is not {"ids": [...]}',
                503: UNAVAILABLE},
    ),
    Operation(
        "GET", "/healthz", probes.healthz, Access.OPEN,
        "the process answers", Health, "alive",
    ),
    Operation(
        "GET", "/readyz", probes.readyz, Access.OPEN,
        "Redis answers and the live stream is subscribed", Readiness, "ready",
        unready={503: "not ready, with the failing checks"},
    ),
    Operation(
        "GET", "/metrics", probes.metrics, Access.OPEN,
        "Prometheus metrics", "text/plain", "text format",
    ),
    Operation(
        "GET", "/openapi.json", probes.openapi, Access.OPEN,
        "this document", "application/json", "OpenAPI 3.1",
    ),
)
# fmt: on


def http_routes(operations: tuple[Operation, ...] = OPERATIONS) -> list[Route]:
    """One route per path, with every method of that path (so that a 405 lists them all in
    its ``Allow`` header); the API's routes are timed."""
    by_path: dict[str, dict[str, Operation]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = op
    routes = []
    for path, ops in by_path.items():
        route = TimedRoute if any(op.timed for op in ops.values()) else Route
        name = "+".join(op.endpoint.__name__ for op in ops.values())
        routes.append(route(path, _guarded(ops), methods=list(ops), name=name))
    return routes


def _guarded(ops: Mapping[str, Operation]) -> Endpoint:
    """The endpoint of the request's method (HEAD is GET's), after its access check."""

    async def endpoint(request: Request) -> Response:
        op = ops.get(request.method) or ops["GET"]
        op.access.check(request)
        return await op.endpoint(request)

    return endpoint
