"""kill -9 of a `conveyor work` process mid-batch: its jobs come back when the lease ends and
are processed by the next worker; each point lands in InfluxDB once."""

from __future__ import annotations

import signal

import pytest

from conveyor.local_servers import InfluxServer
from reliable_queue import QueueClient
from tests.helpers import eventually, start_cli
from tests.worker.conftest import message

pytestmark = pytest.mark.integration
TS = 1_750_000_000_000


async def test_jobs_of_a_killed_worker_are_processed_after_the_lease(
    client: QueueClient, redis_url: str, influx: InfluxServer
) -> None:
    n = 3000
    await client.set_policy("mqtt_realtime", lease_s=2)
    await client.enqueue_many(
        "mqtt_realtime",
        [
            message("realtime", f"m{i % 7}", {"timestamp": TS + i, "temp": float(i)})
            for i in range(n)
        ],
    )
    env = {"INFLUX_URL": influx.url, "INFLUX_BUCKET": influx.bucket, "WORKER_BATCH_SIZE": "50"}
    victim = start_cli("work", "--queue", "mqtt_realtime", redis_url=redis_url, **env)

    async def frozen_mid_batch() -> bool:
        # Frozen (SIGSTOP) before looking, so the batch seen held is still held at the kill.
        victim.proc.send_signal(signal.SIGSTOP)
        s = await client.queue_stats("mqtt_realtime")
        if s.completed >= 200 and s.processing > 0:
            return True
        victim.proc.send_signal(signal.SIGCONT)
        return False

    await eventually(frozen_mid_batch, timeout=30, what="the worker in the middle of a batch")
    held = (await client.queue_stats("mqtt_realtime")).processing
    victim.kill()
    survivor = start_cli("work", "--queue", "mqtt_realtime", redis_url=redis_url, **env)
    try:

        async def all_done() -> bool:
            return (await client.queue_stats("mqtt_realtime")).completed == n

        await eventually(all_done, timeout=60, what="every job processed")
    finally:
        assert survivor.stop() == 0, survivor.output()
    assert held > 0
    stats = await client.queue_stats("mqtt_realtime")
    assert stats.recovered >= 1
    assert stats.failed == 0
    [series] = influx.query("SELECT count(value) FROM realtime")
    assert series["values"][0][1] == n  # type: ignore[index]
