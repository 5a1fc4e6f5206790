"""Sparkplug B from an edge node we did not write (pysparkplug, tests/ingest/sparkplug_edge.py)
through mosquitto and `conveyor ingest` (INGEST_SPARKPLUG=true) into the queues: births and
aliased data named and typed as the births say, a seq gap answered by exactly one Rebirth
request with nothing lost, a death raising `node_offline` alerts and the next birth resolving
them."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conveyor_ingestor.sparkplug.decoding import DOUBLE, INT64
from conveyor_ingestor.sparkplug.encoding import OutMetric, encode_payload
from conveyor_plant.keys import latest_values
from paho.mqtt.enums import CallbackAPIVersion
from redis.asyncio import Redis

from conveyor.local_servers import InfluxServer
from reliable_queue import Job, QueueClient, QueueStats, QueueUnavailable
from tests.helpers import ROOT, CliProcess, eventually, start_cli
from tests.mqtt import publish
from tests.servers import MosquittoServer, RedisServer

pytestmark = pytest.mark.integration

EDGE = ROOT / "tests" / "ingest" / "sparkplug_edge.py"
MESSAGES = 20
GAP_AT = 10
T0 = 1_750_000_000_000


@pytest.fixture
def edge_python() -> str:
    python = os.environ.get("CONVEYOR_SPARKPLUG_EDGE_PYTHON", "")
    if not python or not Path(python).is_file():
        message = "no Sparkplug edge node virtualenv: source hack/bootstrap.sh, which makes it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.fixture
async def group() -> str:
    return f"plant{uuid.uuid4().hex[:6]}"


def sparkplug_ingest(
    redis_url: str, mosquitto: MosquittoServer, group: str, **env: str
) -> CliProcess:
    """`conveyor ingest` ingesting the Sparkplug B group ``group`` beside the default routes,
    as ``ingest-<group>`` (``env`` adds to or overrides its settings)."""
    settings = {
        "MQTT_BROKER_URL": mosquitto.url,
        "MQTT_CLIENT_ID": f"ingest-{group}",
        "INGEST_SPARKPLUG": "true",
        "INGEST_SPARKPLUG_GROUPS": group,
        **env,
    }
    return start_cli("ingest", redis_url=redis_url, **settings)


@pytest.fixture
async def ingest(
    mosquitto: MosquittoServer, redis_url: str, group: str
) -> AsyncIterator[CliProcess]:
    """:func:`sparkplug_ingest`, ready."""
    process = sparkplug_ingest(redis_url, mosquitto, group)
    try:
        await process.wait_ready()
        yield process
    finally:
        process.stop()


WIRE = """
import json, sys
from google.protobuf import descriptor_pb2
from {module} import DESCRIPTOR
f = descriptor_pb2.FileDescriptorProto()
DESCRIPTOR.CopyToProto(f)
out = {{}}
def walk(message, path):
    for field in message.field:
        out[path + message.name + "." + field.name] = [field.number, field.type, field.label]
    for nested in message.nested_type:
        walk(nested, path + message.name + ".")
for message in f.message_type:
    walk(message, "")
for enum in f.enum_type:
    for value in enum.value:
        out["enum." + value.name] = value.number
print(json.dumps(out, sort_keys=True))
"""


def test_the_schema_is_on_the_wire_what_an_independent_implementation_uses(
    edge_python: str,
) -> None:
    """Every message, field number, type and label, and every datatype, as pysparkplug has
    them (names of our own package aside: only numbers are on the wire)."""

    def fields(python: str, module: str) -> dict[str, Any]:
        done = subprocess.run(
            [python, "-c", WIRE.format(module=module)], capture_output=True, text=True, check=True
        )
        parsed: dict[str, Any] = json.loads(done.stdout)
        return parsed

    theirs = fields(edge_python, "pysparkplug._protobuf.sparkplug_b_pb2")
    ours = fields(sys.executable, "conveyor_ingestor.sparkplug.sparkplug_b_pb2")
    assert len(ours) > 100
    assert ours == theirs


async def test_a_payload_that_is_not_sparkplug_is_a_dead_letter_saying_so(
    mosquitto: MosquittoServer, client: QueueClient, ingest: CliProcess, group: str
) -> None:
    topic = f"spBv1.0/{group}/NDATA/line9"
    sent = await asyncio.to_thread(publish, mosquitto.port, [(topic, b'{"temp": 21.5}')])
    assert sent == 1

    async def letter() -> list[Any]:
        return await client.dead_letters("ingest")

    [dead] = await eventually(letter, what="a dead letter in dead:ingest")
    assert dead.reason == "not_sparkplug"
    assert "is not a Sparkplug B protobuf payload" in dead.error
    assert f"Sparkplug B route spBv1.0/{group}/#" in dead.error
    assert dead.data["topic"] == topic
    assert dead.data["payload"] == '{"temp": 21.5}'


async def test_an_independent_edge_node_births_sends_aliases_dies_and_is_reborn(
    mosquitto: MosquittoServer,
    client: QueueClient,
    edge_python: str,
    ingest: CliProcess,
    group: str,
) -> None:
    started = time.time() * 1000
    run = await asyncio.to_thread(
        subprocess.run,
        [
            *(edge_python, str(EDGE), "--port", str(mosquitto.port), "--group", group),
            *("--messages", str(MESSAGES), "--gap-at", str(GAP_AT)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr + ingest.output()
    events = [json.loads(line) for line in run.stdout.splitlines()]
    commands = [e for e in events if e["event"] == "command"]
    assert commands == [{"event": "command", "metrics": ["Node Control/Rebirth"]}]

    jobs: dict[str, list[Job]] = {"mqtt_realtime": [], "alerts": []}

    async def take(job: Job) -> None:
        jobs[job.queue].append(job)

    # 3 NBIRTH and 3 DBIRTH (first, rebirth, after the death), 21 NDATA and 21 DDATA (one
    # of each after the death); the death's alerts and the births' that resolve them.
    expected = {"mqtt_realtime": 6 + 2 * (MESSAGES + 1), "alerts": 4}
    stops = [await client.start_worker(q, take, concurrency=4) for q in expected]
    try:
        await eventually(
            lambda: {q: len(j) for q, j in jobs.items()} == expected,
            timeout=60,
            what=f"{expected} jobs",
            detail=lambda: (
                f"{ {q: len(j) for q, j in jobs.items()} }\n{ingest.output()}\n"
                f"{ingest_metrics(ingest)}\nbroker:\n{edge_connections(mosquitto)}"
            ),
        )
    finally:
        for stop in stops:
            await stop()
    assert await client.dead_letter_count("ingest") == 0

    node, device = f"{group}/line1", f"{group}/line1/press1"
    by_machine: dict[str, list[dict[str, Any]]] = {node: [], device: []}
    for job in jobs["mqtt_realtime"]:
        for sample in job.data["samples"]:
            assert started - 1000 <= sample["ts"] <= time.time() * 1000  # the metrics' own
            by_machine[job.data["machine"]].append(sample["values"])
    # Aliased data, named by the birth, each message once (the parked ones too).
    data = [v for v in by_machine[node] if set(v) == {"Line/Speed", "Line/Count"}]
    assert sorted(v["Line/Speed"] for v in data) == [float(i) for i in range(MESSAGES + 1)]
    assert all(v["Line/Count"] == -v["Line/Speed"] for v in data)  # Int64, negative
    pressures = sorted(v["Pressure"] for v in by_machine[device] if set(v) == {"Pressure"})
    assert pressures == [i / 2 for i in range(MESSAGES + 1)]
    # The births' values, typed as their datatypes say.
    births = [v for v in by_machine[node] if "Line/Recipe" in v]
    assert len(births) == 3
    for values in births:
        assert values["Line/Running"] is True
        assert values["Line/Offset"] == -5  # Int8
        assert values["Line/Recipe"] == "A-12"
        assert abs(values["Line/Started"] - started) < 120_000  # DateTime, epoch ms
        assert "bdSeq" not in values
    device_births = [v for v in by_machine[device] if "Cycles" in v]
    assert [v["Cycles"] for v in device_births] == [4_000_000_000] * 3  # UInt32
    # The death and the births after it.
    alerts = sorted((j.data["machine"], j.data["details"]["state"]) for j in jobs["alerts"])
    assert alerts == [
        (node, "firing"),
        (node, "resolved"),
        (device, "firing"),
        (device, "resolved"),
    ]
    assert {j.data["type"] for j in jobs["alerts"]} == {"node_offline"}


def first_message(port: int, topic_filter: str, timeout: float = 20) -> str:
    """The topic of the first message on ``topic_filter`` (a subscriber of the test's own)."""
    got: queue.Queue[str] = queue.Queue()
    spy = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    spy.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(topic_filter, qos=0)
    spy.on_message = lambda _c, _u, m: got.put(m.topic)
    spy.connect("127.0.0.1", port)
    spy.loop_start()
    try:
        return got.get(timeout=timeout)
    finally:
        spy.disconnect()
        spy.loop_stop()


async def test_the_simulators_edge_nodes_met_mid_stream_are_asked_to_rebirth_and_answer(
    mosquitto: MosquittoServer, redis_url: str, client: QueueClient, group: str
) -> None:
    """The ingestor starts after the simulated edge nodes were born: their data waits, each
    node is asked for a rebirth once, answers, and its data is resolved."""
    simulator = start_cli(
        "simulate", "--sparkplug", "--group", group, "--machines", "2", "--devices", "1",
        "--rate", "20", "--duration", "60", "--seed", "7",
        redis_url=redis_url, MQTT_BROKER_URL=mosquitto.url,
    )  # fmt: skip
    ingest = None
    try:
        # Born (the births went to no one), now sending data.
        try:
            await asyncio.to_thread(first_message, mosquitto.port, f"spBv1.0/{group}/NDATA/#")
        except queue.Empty:
            pytest.fail(f"the simulator sent no NDATA within 20 s:\n{simulator.output()}")
        ingest = sparkplug_ingest(redis_url, mosquitto, group)
        await ingest.wait_ready()
        machines: set[str] = set()

        async def take(job: Job) -> None:
            machines.add(job.data["machine"])

        stop = await client.start_worker("mqtt_realtime", take, concurrency=4)
        expected = {f"{group}/line-0{n}{d}" for n in (1, 2) for d in ("", "/press-01")}
        try:
            await eventually(
                lambda: machines >= expected,
                timeout=30,
                what=f"realtime jobs of {sorted(expected)}",
                detail=lambda: f"{sorted(machines)}\n{ingest and ingest.output()}",
            )
        finally:
            await stop()
        asked = [line for line in ingest.output().splitlines() if "for a rebirth" in line]
        assert len(asked) == 2, asked  # one per edge node
        assert "rebirth of line-01" in simulator.output()
        assert await client.dead_letter_count("ingest") == 0
    finally:
        if ingest is not None:
            ingest.stop()
        simulator.stop()


def sparkplug_burst(group: str, n: int, nodes: int = 4) -> list[tuple[str, bytes]]:
    """A birth of each edge node (2 metrics by alias), then ``n`` NDATA over them, seq in order."""
    births = [
        (
            f"spBv1.0/{group}/NBIRTH/n{node}",
            encode_payload(
                [
                    OutMetric(INT64, 0, name="bdSeq"),
                    OutMetric(DOUBLE, 0.0, name="Flow", alias=1),
                    OutMetric(INT64, 0, name="Index", alias=2),
                ],
                timestamp=T0,
                seq=0,
            ),
        )
        for node in range(nodes)
    ]
    data = [
        (
            f"spBv1.0/{group}/NDATA/n{i % nodes}",
            encode_payload(
                [OutMetric(DOUBLE, i / 10, alias=1), OutMetric(INT64, i, alias=2)],
                timestamp=T0 + i,
                seq=(i // nodes + 1) % 256,
            ),
        )
        for i in range(n)
    ]
    return births + data


async def test_kill_9_mid_stream_loses_nothing_and_aliases_resolve_after_the_restart(
    mosquitto: MosquittoServer, redis_url: str, client: QueueClient, group: str
) -> None:
    """QoS 1 here (Sparkplug data is QoS 0 on most edge nodes, which the broker does not keep):
    what this shows is the ingestor's part. The restarted ingestor knows the births from Redis:
    no message waits, no rebirth is asked for, each index is queued once."""
    n, nodes = 6000, 4

    def ingest() -> CliProcess:
        return sparkplug_ingest(redis_url, mosquitto, group)

    first = ingest()
    await first.wait_ready()
    published: list[int] = []
    burst = sparkplug_burst(group, n, nodes)
    sender = threading.Thread(target=lambda: published.append(publish(mosquitto.port, burst)))
    sender.start()

    async def pending() -> int:
        return (await client.queue_stats("mqtt_realtime")).pending

    await eventually(lambda: _at_least(pending, 1500), timeout=60, what="a part of the stream")
    first.kill()
    before_restart = await pending()
    second = ingest()
    try:
        await second.wait_ready()
        await eventually(
            lambda: _at_least(pending, nodes + n),
            timeout=90,
            what=f"{nodes + n} jobs",
            detail=second.output,
        )
        await asyncio.to_thread(sender.join)
    finally:
        assert second.stop() == 0, second.output()
    assert published == [nodes + n]
    assert before_restart < nodes + n  # the kill interrupted the stream
    indexes = await queued_indexes(client, nodes + n)
    assert sorted(indexes) == [0] * nodes + list(range(n))  # births' 0s, then each index once
    assert "for a rebirth" not in second.output()
    assert await client.dead_letter_count("ingest") == 0


async def queued_indexes(client: QueueClient, n: int) -> list[int]:
    """The ``Index`` values of the realtime jobs :func:`sparkplug_burst` made, taken by a
    worker until ``n`` are seen (births give 0s)."""
    indexes: list[int] = []

    async def take(job: Job) -> None:
        indexes.extend(s["values"]["Index"] for s in job.data["samples"] if "Flow" in s["values"])

    stop = await client.start_worker("mqtt_realtime", take, concurrency=8)
    try:
        await eventually(lambda: len(indexes) >= n, timeout=60, what="every job taken")
    finally:
        await stop()
    return indexes


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


def edge_connections(mosquitto: MosquittoServer) -> str:
    """What the broker logged of the edge nodes' connections (a new connection that takes over
    an old one drops what that one had sent and not been read yet), for a failure's message."""
    log = (mosquitto.workdir / "mosquitto.log").read_text(errors="replace")
    return "\n".join(line for line in log.splitlines() if "edge-" in line)


def ingest_metrics(process: CliProcess) -> str:
    """The ingestor's own counters (what it received, enqueued, parked, kept for others), for
    a failure's message."""
    answer = process.probe("/metrics")
    if answer is None:
        return "(no /metrics answer)"
    lines = answer[1].splitlines()
    return "\n".join(line for line in lines if line.startswith("conveyor_ingest_"))


def sparkplug_event(process: CliProcess, event: str) -> float:
    """``conveyor_ingest_sparkplug_events_total{event=...}`` of the process."""
    answer = process.probe("/metrics")
    assert answer is not None
    prefix = f'conveyor_ingest_sparkplug_events_total{{event="{event}"}} '
    found = [line for line in answer[1].splitlines() if line.startswith(prefix)]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


async def test_two_replicas_each_take_their_edge_nodes_whole_and_in_order(
    mosquitto: MosquittoServer, redis_url: str, client: QueueClient, group: str
) -> None:
    """Both replicas receive every Sparkplug message (no shared subscription); each handles
    the edge nodes it holds, all of their messages, in order: no gap is seen, none waits, no
    job is made twice, and the two shares add up to the whole."""
    n, nodes = 4000, 8
    replicas = [
        sparkplug_ingest(
            redis_url,
            mosquitto,
            group,
            MQTT_CLIENT_ID=f"ingest-{group}-{index}",
            MQTT_SHARE_GROUP="conveyor",
        )
        for index in (0, 1)
    ]
    try:
        for replica in replicas:
            await replica.wait_ready()

        async def shared_out() -> bool:
            await asyncio.to_thread(publish, mosquitto.port, sparkplug_burst(group, 0, nodes))
            held = [r.metric("conveyor_ingest_sparkplug_edge_nodes") for r in replicas]
            return all(held) and sum(held) == nodes

        # The births tell them the nodes; they share them out once each sees the other.
        await eventually(shared_out, timeout=30, what="the edge nodes shared out")
        before = (await client.queue_stats("mqtt_realtime")).enqueued
        burst = sparkplug_burst(group, n, nodes)[nodes:]  # the data, no births
        assert await asyncio.to_thread(publish, mosquitto.port, burst) == n

        async def all_in() -> bool:
            return (await client.queue_stats("mqtt_realtime")).enqueued >= before + n

        await eventually(
            all_in,
            timeout=60,
            what=f"{n} jobs",
            detail=lambda: "\n".join(r.output() for r in replicas),
        )
        enqueued = [r.metric("conveyor_ingest_enqueued_total") for r in replicas]
        held = [r.metric("conveyor_ingest_sparkplug_edge_nodes") for r in replicas]
    finally:
        outputs = [r.output() for r in replicas]
        for replica in replicas:
            replica.stop()
    stats = await client.queue_stats("mqtt_realtime")
    assert stats.enqueued == before + n  # no job made twice (not even deduplicated)
    assert all(e > 0 for e in enqueued), enqueued  # both took a share
    assert all(held), held
    assert sum(held) == nodes  # each node held by one
    assert not any("for a rebirth" in out for out in outputs)  # no gap, no waiting
    assert await client.dead_letter_count("ingest") == 0


async def test_edge_nodes_change_hands_losing_nothing_as_replicas_join_stop_and_die(
    mosquitto: MosquittoServer, redis_url: str, client: QueueClient, group: str
) -> None:
    """While edge nodes publish, a third replica joins, one stops (SIGTERM) and one is
    killed (-9, not restarted). Their edge nodes change hands: the taker handles what it kept
    of them after the last one the previous holder stored. Every message reaches the queue,
    none is seen out of order (that would ask for a rebirth), none waits."""
    n, nodes = 24000, 8  # published for about 12 s: the kill comes mid-stream too

    def replica(index: int) -> CliProcess:
        return sparkplug_ingest(
            redis_url,
            mosquitto,
            group,
            MQTT_CLIENT_ID=f"ingest-{group}-{index}",
            MQTT_SHARE_GROUP="conveyor",
        )

    a, b = replica(0), replica(1)
    c: CliProcess | None = None
    await a.wait_ready()
    await b.wait_ready()
    burst = sparkplug_burst(group, n, nodes)
    published: list[int] = []

    def send() -> None:  # about 2,000 a second, so that every change comes mid-stream
        for i in range(0, len(burst), 100):
            published.append(publish(mosquitto.port, burst[i : i + 100]))
            time.sleep(0.05)

    sender = threading.Thread(target=send)
    sender.start()

    async def enqueued() -> int:
        return (await client.queue_stats("mqtt_realtime")).enqueued

    try:
        await eventually(
            lambda: _at_least(enqueued, 2000),
            timeout=60,
            what="a part",
            detail=lambda: f"a: {a.output()}\nb: {b.output()}",
        )
        c = replica(2)
        await c.wait_ready()
        await eventually(lambda: _at_least(enqueued, 6000), timeout=60, what="more")
        assert a.stop() == 0, a.output()
        await eventually(
            lambda: _at_least(enqueued, 10000),
            timeout=60,
            what="more still",
            detail=lambda: f"a: {a.output()}\nb: {b.output()}\nc: {c.output()}",  # type: ignore[union-attr]
        )
        b.kill()
        before_kill = sparkplug_event(c, "taken"), sparkplug_event(c, "replayed")
        assert sender.is_alive()  # messages are in flight as b dies
        await asyncio.to_thread(sender.join)
        assert sum(published) == nodes + n
        # c takes b's edge nodes once b's announcement lapses (10 s).
        await eventually(
            lambda: _at_least(enqueued, nodes + n),
            timeout=90,
            what="every message",
            detail=lambda: f"a: {a.output()}\nb: {b.output()}\nc: {c.output()}",  # type: ignore[union-attr]
        )
        after_kill = sparkplug_event(c, "taken"), sparkplug_event(c, "replayed")
        held = c.metric("conveyor_ingest_sparkplug_edge_nodes")
    finally:
        sender.join()
        outputs = [a.output(), b.output()]
        if c is not None:
            outputs.append(c.output())
            c.stop()
    indexes = await queued_indexes(client, nodes + n)
    assert sorted(set(indexes)) == list(range(n))  # nothing lost (a few may be there twice)
    assert held == nodes  # c holds them all in the end
    assert after_kill[0] > before_kill[0]  # c took b's nodes after b died...
    assert after_kill[1] > before_kill[1]  # ...and handled what it kept of them
    assert not any("for a rebirth" in out for out in outputs), outputs
    assert await client.dead_letter_count("ingest") == 0


async def test_the_primary_host_state_is_online_while_the_ingestor_runs(
    mosquitto: MosquittoServer, redis_url: str, group: str
) -> None:
    """INGEST_SPARKPLUG_HOST_ID: retained STATE online on connecting; offline as its will
    when the process dies, and published when it stops cleanly; both of one start's
    timestamp."""
    host = f"host-{group}"
    states: queue.Queue[dict[str, Any]] = queue.Queue()
    spy = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    spy.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(f"spBv1.0/STATE/{host}", qos=1)
    spy.on_message = lambda _c, _u, m: states.put({**json.loads(m.payload), "retain": m.retain})

    def ingest() -> CliProcess:
        return sparkplug_ingest(redis_url, mosquitto, group, INGEST_SPARKPLUG_HOST_ID=host)

    def next_state() -> dict[str, Any]:
        return states.get(timeout=20)

    first = ingest()
    await first.wait_ready()
    spy.connect("127.0.0.1", mosquitto.port)
    spy.loop_start()
    try:
        online = await asyncio.to_thread(next_state)
        assert online["online"] is True
        assert online["retain"] is True  # kept for edge nodes that connect later
        first.kill()
        will = await asyncio.to_thread(next_state)
        assert will == {"online": False, "timestamp": online["timestamp"], "retain": False}
        second = ingest()
        await second.wait_ready()
        again = await asyncio.to_thread(next_state)
        assert again["online"] is True
        assert again["timestamp"] > online["timestamp"]
        assert second.stop() == 0, second.output()
        stopped = await asyncio.to_thread(next_state)
        assert stopped == {"online": False, "timestamp": again["timestamp"], "retain": False}
    finally:
        spy.disconnect()
        spy.loop_stop()


async def test_the_edge_nodes_data_reaches_influxdb_and_the_cache_named_and_typed(
    mosquitto: MosquittoServer,
    redis_url: str,
    client: QueueClient,
    raw_redis: Redis,
    influx: InfluxServer,
    edge_python: str,
    ingest: CliProcess,
    group: str,
) -> None:
    """The whole way: pysparkplug's edge node, mosquitto, `conveyor ingest`, `conveyor work`,
    InfluxDB and the latest-value cache, by the births' names, at the metrics' own times."""
    started = time.time() * 1000
    run = await asyncio.to_thread(
        subprocess.run,
        [
            edge_python,
            str(EDGE),
            "--port",
            str(mosquitto.port),
            "--group",
            group,
            "--messages",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr + ingest.output()
    worker = start_cli(
        "work",
        "--queue",
        "mqtt_realtime",
        redis_url=redis_url,
        INFLUX_URL=influx.url,
        INFLUX_BUCKET=influx.bucket,
    )
    try:
        stats: list[QueueStats] = []

        async def done() -> bool:
            # 2 NBIRTH and 2 DBIRTH (before and after the death), 11 NDATA and 11 DDATA
            stats[:] = [await client.queue_stats("mqtt_realtime")]
            return stats[0].completed >= 4 + 2 * 11

        await eventually(
            done,
            timeout=60,
            what="every job written",
            detail=lambda: (
                f"queue: {stats}\nworker:\n{worker.output()}\n"
                f"ingestor:\n{ingest.output()[-6000:]}\n{ingest_metrics(ingest)}\n"
                f"broker:\n{edge_connections(mosquitto)}"
            ),
        )
    finally:
        worker.stop()
    node, device = f"{group}/line1", f"{group}/line1/press1"
    where = f"FROM realtime WHERE machine='{node}'"  # the test's own group: no injection
    speeds = influx.query(f"SELECT value {where} AND signal='Line/Speed'")
    times_and_values = [(t, v) for t, v in speeds[0]["values"]]  # type: ignore[index]
    assert sorted(v for _, v in times_and_values if v != 1.5) == [float(i) for i in range(11)]
    assert all(started - 1000 <= _epoch_ms(t) <= time.time() * 1000 for t, _ in times_and_values)
    [recipe] = influx.query(f"SELECT text {where} AND signal='Line/Recipe'")
    assert {row[1] for row in recipe["values"]} == {"A-12"}  # type: ignore[index]
    pressure = await raw_redis.hgetall(latest_values(device))
    assert json.loads(pressure[b"Pressure"]) == 5.0  # the last DDATA: 10 / 2
    assert json.loads(pressure[b"Cycles"]) == 4_000_000_000  # the births' UInt32


def _epoch_ms(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000


async def test_a_redis_outage_longer_than_the_replicas_ttl_loses_nothing(
    own_redis: RedisServer, mosquitto: MosquittoServer, group: str
) -> None:
    """Redis away for 12 s (longer than a replica's announcement lives) while two replicas
    ingest: neither acknowledges what it cannot store or hand over, both announce themselves
    again, and every message reaches the queue, in order."""
    n, nodes = 12000, 8
    replicas = [
        sparkplug_ingest(
            own_redis.url,
            mosquitto,
            group,
            MQTT_CLIENT_ID=f"ingest-{group}-{index}",
            MQTT_SHARE_GROUP="conveyor",
        )
        for index in (0, 1)
    ]
    burst = sparkplug_burst(group, n, nodes)
    published: list[int] = []

    def send() -> None:
        for i in range(0, len(burst), 100):
            published.append(publish(mosquitto.port, burst[i : i + 100]))
            time.sleep(0.05)

    async with QueueClient.from_url(own_redis.url) as client:

        async def enqueued() -> int:
            try:
                return (await client.queue_stats("mqtt_realtime")).enqueued
            except QueueUnavailable:  # this test's own pooled connection died with Redis
                return 0

        try:
            for replica in replicas:
                await replica.wait_ready()
            sender = threading.Thread(target=send)
            sender.start()
            await eventually(lambda: _at_least(enqueued, 2000), timeout=60, what="a part")
            own_redis.stop()
            await asyncio.sleep(12)  # the subject: longer than an announcement lives
            own_redis.start()
            await asyncio.to_thread(sender.join)
            assert sum(published) == nodes + n
            await eventually(
                lambda: _at_least(enqueued, nodes + n),
                timeout=90,
                what="every message",
                detail=lambda: "\n".join(r.output() for r in replicas),
            )
        finally:
            outputs = [r.output() for r in replicas]
            for replica in replicas:
                replica.stop()
        indexes = await queued_indexes(client, nodes + n)
    assert sorted(set(indexes)) == list(range(n))  # nothing lost
    assert not any("for a rebirth" in out for out in outputs), outputs
