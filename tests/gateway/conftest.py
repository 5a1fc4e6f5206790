"""The gateway app against real Redis: Starlette's test client for REST and WebSocket, and
``conveyor gateway`` as a process for what needs real sockets."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import httpx
import pytest
import redis
from conveyor_gateway import GatewayConfig, InfluxSource, create_app
from conveyor_gateway.state import GatewayState
from conveyor_plant import PlantState
from starlette.applications import Starlette
from starlette.testclient import TestClient

from reliable_queue import QueueClient
from tests.helpers import CliProcess, start_cli
from tests.servers import free_port

TOKEN = "test-token-0123456789"
REPORT: list[str] = []
"""Figures the dashboard's tests measured, printed at the end of the run (never asserted)."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("dashboard")
        for line in REPORT:
            terminalreporter.write_line(line)


P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Gateway:
    """The app under Starlette's test client, and the QueueClient it serves from. ``run``
    calls a coroutine function on the app's event loop (Redis connections belong to it)."""

    http: TestClient
    client: QueueClient

    def run(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        async def call() -> T:
            return await fn(*args, **kwargs)

        return self.http.portal.call(call)  # type: ignore[union-attr,no-any-return]

    @property
    def state(self) -> GatewayState:
        """The app's parts (live hub, stats history, metrics...), as its endpoints see them."""
        state = self.http.app.state.gateway  # type: ignore[attr-defined]
        assert isinstance(state, GatewayState)
        return state


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A connection of the test's own, to write what the workers would (the gateway's
    clients are not the test's to borrow)."""
    with redis.Redis.from_url(redis_url) as r:
        yield r


@pytest.fixture
def make_gateway(redis_url: str) -> Iterator[Callable[..., Gateway]]:
    opened: list[Gateway] = []

    def make(
        *, url: str | None = None, influx: InfluxSource | None = None, **config: Any
    ) -> Gateway:
        client = QueueClient.from_url(url or redis_url)
        plant = PlantState.from_url(url or redis_url)
        settings = {"api_token": TOKEN, "sample_interval_s": 0.1, **config}
        app = create_app(client, plant, GatewayConfig(**settings), influx)
        app_lifespan = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            # As `conveyor gateway` does: the app stops (live stream, sampler), then its
            # client closes, on the app's loop. The other order pulls Redis away from the
            # running live stream.
            async with app_lifespan(app):
                yield
            await client.close()
            await plant.close()

        app.router.lifespan_context = lifespan
        http = TestClient(app)
        http.__enter__()  # runs the lifespan: live stream and stats sampling
        gateway = Gateway(http, client)
        opened.append(gateway)
        return gateway

    yield make
    for gateway in opened:
        gateway.http.__exit__(None, None, None)  # the lifespan closes the client last


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


@dataclass
class GatewayProcess:
    process: CliProcess
    url: str


@pytest.fixture
def gateway_process(redis_url: str) -> Iterator[Callable[..., GatewayProcess]]:
    """``conveyor gateway`` on a free loopback port, ready when returned."""
    started: list[CliProcess] = []

    def start(**env: str) -> GatewayProcess:
        port = free_port()
        process = start_cli(
            "gateway", "--host", "127.0.0.1", "--port", str(port), redis_url=redis_url, **env
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    return GatewayProcess(process, url)
            except httpx.TransportError:
                pass
            if process.returncode is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"the gateway did not become ready:\n{process.output()}")

    yield start
    for process in started:
        process.stop(timeout=15)
