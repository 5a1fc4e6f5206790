"""The services, the operator and the CLI reach Redis only through the queue library
(``QueueClient``'s methods) and the plant's state (``conveyor_plant``), never through the queue
client's own connection: what the queue keeps is the library's to change."""

from __future__ import annotations

import re

from tests.helpers import ROOT

REACHING_AROUND = re.compile(r"\bclient\.redis\b|QueueClient\([^)]*\)\.redis")
PRODUCT = ["services", "operator", "cli"]
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
    assert REACHING_AROUND.search("rows = await client.redis.hgetall(key)")
    assert not REACHING_AROUND.search("rows = await plant.redis.hgetall(key)")
