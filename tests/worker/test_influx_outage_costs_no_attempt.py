"""InfluxDB away for longer than a failing job's retries last (2 s, 4 s, 8 s): `conveyor work`
postpones its batch (the jobs keep their attempts) and pauses, and once InfluxDB is back every
point is written and nothing is dead-lettered, against a real influxd stopped and started
again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.local_servers import InfluxServer, influxd_binary
from reliable_queue import QueueClient
from tests.helpers import eventually, start_cli
from tests.servers import require_binary
from tests.worker.conftest import message

pytestmark = pytest.mark.integration

TS = 1_750_000_000_000
JOBS = 50
TRIES = 5
"""Tries the outage lasts for: one more than the default policy gives a failing job (1 + 3)."""


@pytest.fixture
def own_influx(tmp_path: Path) -> Iterator[InfluxServer]:
    """An InfluxDB 1.8 of the test's own, to stop and start again."""
    binary = influxd_binary() or require_binary("influxd", install="hack/tools.sh influxd")
    server = InfluxServer(binary, tmp_path / "influxdb").start()
    yield server
    server.stop()


async def test_an_influxdb_outage_longer_than_the_retries_loses_no_point(
    client: QueueClient, redis_url: str, own_influx: InfluxServer
) -> None:
    worker = start_cli(
        "work",
        "--queue",
        "mqtt_realtime",
        redis_url=redis_url,
        INFLUX_URL=own_influx.url,
        INFLUX_BUCKET=own_influx.bucket,
    )
    try:
        await worker.wait_ready()
        own_influx.stop()  # the outage
        jobs = [message("realtime", "press", {"timestamp": TS + i, "temp": i}) for i in range(JOBS)]
        await client.enqueue_many("mqtt_realtime", jobs)

        await eventually(
            lambda: worker.metric("conveyor_worker_postponed_total") >= TRIES * JOBS,
            timeout=60,
            what=f"the batch postponed {TRIES} times",
            detail=worker.output,
        )
        own_influx.start()  # back, on the same port and data

        async def written() -> bool:
            return (await client.queue_stats("mqtt_realtime")).completed == JOBS

        await eventually(written, timeout=60, what="every job written", detail=worker.output)
        stats = await client.queue_stats("mqtt_realtime")
        assert (stats.retried, stats.dead_lettered) == (0, 0), stats  # no attempt spent
        assert worker.metric("conveyor_worker_failed_total") == 0
        [series] = own_influx.query("SELECT count(value) FROM realtime WHERE machine='press'")
        assert series["values"][0][1] == JOBS  # type: ignore[index]
        assert "claiming nothing of mqtt_realtime for" in worker.output()
    finally:
        worker.stop(timeout=30)
