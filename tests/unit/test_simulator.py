"""The plant simulator: every message it publishes is one the ingestor accepts, it is
repeatable with a seed, and its SPC process does go out of control now and then."""

from __future__ import annotations

import json
from collections import Counter

from conveyor_ingestor import DEFAULT_ROUTES, RoutingTable, parse_message

from conveyor.simulator import NOMINAL_DIAMETER, SIGMA, UNITS, Plant

NOW = 1_750_000_000_000


def test_every_message_parses_on_its_default_route() -> None:
    plant = Plant(machines=5, seed=1)
    published = plant.start(NOW) + [m for t in range(200) for m in plant.tick(NOW + t * 500)]
    routes = RoutingTable(DEFAULT_ROUTES)
    kinds: Counter[str] = Counter()
    for topic, payload in published:
        found = routes.match(topic)
        assert found is not None, topic
        msg = parse_message(
            found.route.kind, machine=found.machine, topic=topic, payload=payload, received_at=NOW
        )
        kinds[msg["kind"]] += 1
        if msg["kind"] == "realtime":  # the numbers' units travel with them
            assert msg["units"] == UNITS
            assert set(UNITS) <= set(msg["samples"][0]["values"])
    assert kinds["realtime"] == 5 * 200
    assert kinds["spc"] == 5 * 200 // plant.spc_every
    assert kinds["tech"] >= 5  # one each at start
    assert kinds["alert"] >= 5  # a start-up notice each


def test_a_seed_repeats_the_same_telemetry() -> None:
    a, b = Plant(machines=3, seed=7), Plant(machines=3, seed=7)
    assert [a.tick(NOW + i) for i in range(50)] == [b.tick(NOW + i) for i in range(50)]
    assert Plant(machines=3, seed=8).tick(NOW) != Plant(machines=3, seed=7).tick(NOW)


def test_spc_shifts_out_of_control_now_and_then() -> None:
    plant = Plant(machines=1, seed=3, spc_every=1)
    means = []
    for i in range(600):
        for topic, payload in plant.tick(NOW + i):
            if topic.endswith("/spc"):
                values = json.loads(payload)["values"]
                means.append(sum(values) / len(values))
    shifted = [m for m in means if m > NOMINAL_DIAMETER + 1.5 * SIGMA]
    assert 0.05 * len(means) < len(shifted) < 0.6 * len(means)


def test_a_burst_is_that_many_realtime_messages() -> None:
    burst = Plant(machines=4, seed=1).burst(1_000, NOW)
    assert len(burst) == 1_000
    assert all(topic.endswith("/realtime") for topic, _ in burst)
    assert len({topic for topic, _ in burst}) == 4
