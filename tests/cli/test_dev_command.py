"""``conveyor dev``: local Redis plus a worker per default queue; Ctrl-C leaves nothing behind."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from pathlib import Path

import pytest

from reliable_queue import QueueClient
from tests.helpers import eventually, start_cli
from tests.servers import require_binary

pytestmark = pytest.mark.integration


async def test_dev_runs_the_default_queues_and_stops_cleanly(tmp_path: Path) -> None:
    require_binary("redis-server", install="apt-get install redis-server")
    dev = start_cli("dev", "--data-dir", str(tmp_path / "data"), "--summary-every", "0.5")
    try:
        url = ""

        async def started() -> bool:
            nonlocal url
            found = re.search(r"Redis at (redis://\S+)", dev.output())
            url = found.group(1) if found else ""
            return bool(url)

        await eventually(started, timeout=20, what="dev prints its Redis URL")
        async with QueueClient.from_url(url) as client:
            for name in ("alerts", "mqtt_realtime", "mqtt_spc", "mqtt_tech"):
                await client.enqueue(name, {"hello": name})

            async def processed() -> bool:
                stats = await client.stats()
                return all(q["completed"] == 1 for q in stats["queues"].values())

            await eventually(processed, timeout=20, what="one job through every default queue")
            assert (await client.queue_stats("mqtt_realtime")).workers == 1
    finally:
        code = dev.stop(sig=signal.SIGINT)  # Ctrl-C
    assert code == 0, dev.output()
    assert "Conveyor dev stopped." in dev.output()
    await asyncio.sleep(0.2)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout == "", f"processes left behind: {leftovers.stdout}"
    assert (tmp_path / "data" / "redis").is_dir()  # the data stays for the next start
