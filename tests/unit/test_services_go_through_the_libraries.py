"""The services, the operator and the CLI reach Redis only through the queue library
(``QueueClient``'s methods) and the plant's state (``conveyor_plant``), never through the queue
client's own connection: it is private (``QueueClient._redis``), and what the queue keeps is the
library's to change. Only ``reliable_queue``'s own modules use it."""

from __future__ import annotations

import re

from tests.helpers import ROOT

REACHING_AROUND = re.compile(
    r"\b(?!self\b)\w+\._redis\b"  # another object's private connection (a client's)
    r"|\b\w*client\.redis\b"  # the public attribute it once was
    r"|\)\._redis\b|QueueClient\b.*\)\.redis\b"  # a new client's, or any call's result's
    r"|getattr\([^,]+,\s*[\"']_?redis[\"']"
)
PRODUCT = ["services", "operator", "cli", "bench"]  # the benchmarks use the library as users do
LIBRARY = ROOT / "services" / "reliable_queue"


def test_no_product_code_uses_the_queue_clients_connection() -> None:
    found = []
    for top in PRODUCT:
        for path in (ROOT / top).rglob("*.py"):
            if LIBRARY in path.parents:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if REACHING_AROUND.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, (
        "use QueueClient's methods for the queue and conveyor_plant.PlantState for the plant's "
        "state, not the queue client's connection:\n" + "\n".join(found)
    )


def test_the_check_finds_what_it_looks_for() -> None:
    for reaching in (
        "rows = await client._redis.hgetall(key)",
        "rows = await self.client._redis.hgetall(key)",
        "pipe = queue_client._redis.pipeline()",
        "await QueueClient.from_url(url)._redis.flushall()",
        "conn = getattr(client, '_redis')",
        "rows = await client.redis.hgetall(key)",
    ):
        assert REACHING_AROUND.search(reaching), reaching
    for fine in (
        "rows = await plant.redis.hgetall(key)",  # PlantState's connection is public
        "await self._redis.ping()",  # a class's own connection
        "await self._check_redis()",
        "self.redis = plant.redis",
        "client = QueueClient(connect(url, cluster=cluster))",
    ):
        assert not REACHING_AROUND.search(fine), fine
