"""Fixtures shared by every test: real servers on free loopback ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from conveyor.local_servers import InfluxServer, influxd_binary
from reliable_queue import QueueClient
from tests.helpers import (
    SIMULATED_MACHINE,
    SIMULATED_PAST_S,
    SIMULATED_STEP_S,
    STARTED,
    start_cli,
    wait_until,
)
from tests.servers import MosquittoServer, RedisServer, require_binary


@pytest.fixture(autouse=True)
def no_conveyor_process_outlives_its_test() -> Iterator[None]:
    """A `conveyor` process a test leaves running would go on working against the session's
    Redis and broker in the tests after it (a worker taking their jobs, an ingestor their
    messages): once the test and its fixtures are done, each is killed and the test fails,
    naming them."""
    STARTED.clear()
    yield
    left = [p for p in STARTED if p.returncode is None]
    STARTED.clear()
    for process in left:
        process.kill()
    if left:
        names = ", ".join(f"conveyor {p.command}" for p in left)
        pytest.fail(f"left running after the test, now killed: {names}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests get it flushed through ``redis_url``."""
    binary = require_binary("redis-server", install="apt-get install redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    with redis.Redis.from_url(redis_server.url) as r:
        r.flushall()
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, with AOF on, that the test may stop and restart."""
    binary = require_binary("redis-server", install="apt-get install redis-server")
    server = RedisServer(binary, tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop(kill=True)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[QueueClient]:
    async with QueueClient.from_url(redis_url) as c:
        yield c


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A connection of the test's own to ``redis_url``, beside the libraries': to read the keys
    they write and to do to Redis what no library should (FLUSHALL, SCRIPT FLUSH, a lost key)."""
    r = redis.asyncio.Redis.from_url(redis_url)
    try:
        yield r
    finally:
        await r.aclose()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """One mosquitto broker for the session (persistence on, no cap on queued messages)."""
    binary = require_binary("mosquitto", install="apt-get install mosquitto")
    server = MosquittoServer(binary, tmp_path_factory.mktemp("mosquitto")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """InfluxDB 1.8 built by hack/tools.sh, serving the v2 write API."""
    binary = influxd_binary() or require_binary("influxd", install="hack/tools.sh influxd")
    server = InfluxServer(binary, tmp_path_factory.mktemp("influxdb")).start()
    yield server
    server.stop()


@pytest.fixture
def influx(influx_server: InfluxServer) -> InfluxServer:
    """The session's InfluxDB with an empty ``conveyor`` database."""
    influx_server.query(f"DROP DATABASE {influx_server.database}")
    influx_server.query(f"CREATE DATABASE {influx_server.database}")
    return influx_server


@pytest.fixture
def simulated_past(
    redis_url: str, mosquitto: MosquittoServer, influx: InfluxServer
) -> Iterator[str]:
    """Two hours of one simulated machine's past (``conveyor simulate --history 7200``, a tick
    every 10 s, seeded), through the ingestor and the workers of every queue it feeds into
    InfluxDB; the machine's id. The services run until the test ends."""
    sinks = {"INFLUX_URL": influx.url, "INFLUX_BUCKET": influx.bucket}
    processes = [start_cli("ingest", redis_url=redis_url, MQTT_BROKER_URL=mosquitto.url)]
    for queue in ("mqtt_realtime", "mqtt_spc", "mqtt_tech", "alerts"):
        processes.append(start_cli("work", "--queue", queue, redis_url=redis_url, **sinks))
    try:
        for process in processes:
            wait_until(
                process.ready,
                timeout=30,
                interval=0.1,
                what=f"conveyor {process.command} ready on /readyz",
                detail=process.output,
            )
        simulate = start_cli(
            "simulate", "--machines", "1", "--seed", "3", "--history", str(SIMULATED_PAST_S),
            "--history-step", str(SIMULATED_STEP_S), "--duration", "0",
            MQTT_BROKER_URL=mosquitto.url,
        )  # fmt: skip
        assert simulate.wait(timeout=120) == 0, simulate.output()
        ticks = SIMULATED_PAST_S // SIMULATED_STEP_S

        async def completed() -> tuple[int, int]:
            async with QueueClient.from_url(redis_url) as client:
                stats = [await client.queue_stats(q) for q in ("mqtt_realtime", "mqtt_spc")]
            return stats[0].completed, stats[1].completed

        def written() -> bool:
            realtime, spc = asyncio.run(completed())
            return realtime >= ticks and spc >= ticks // 5

        wait_until(written, timeout=120, what="the simulated past written to InfluxDB")
        yield SIMULATED_MACHINE
    finally:
        for process in processes:
            process.stop(timeout=20)
