"""Property, over the whole path: arbitrary JSON keys (control characters, backslashes, quotes,
lone surrogates, huge ones), values, machine ids (topic levels) and timestamps (far out of
InfluxDB's range too) go through the ingest parser as the ingestor calls it; what it accepts
goes through the real realtime, SPC and tech workers into a real InfluxDB 1.8.

Every message is either written exactly as sent (queried back by machine and name: value and
time) or refused at ingest with one of the documented reasons, and it never changes another
message's fate: a known-good message rides in every batch and lands, no accepted job fails in
the worker, and no measurement other than realtime, spc and tech ever appears."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from conveyor_ingestor import IngestOptions, InvalidPayload, parse_message
from conveyor_ingestor.limits import MAX_TIME_MS, MIN_TIME_MS
from conveyor_ingestor.routing import Kind
from conveyor_plant.keys import tech_config
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from conveyor.local_servers import InfluxServer
from reliable_queue import QueueClient
from tests.helpers import eventually
from tests.worker.conftest import StartWorker

pytestmark = pytest.mark.integration

TS = 1_750_000_000_000
QUEUES: dict[Kind, str] = {"realtime": "mqtt_realtime", "spc": "mqtt_spc", "tech": "mqtt_tech"}
REASONS = {
    "oversized",
    "not_utf8",
    "not_json",
    "wrong_shape",
    "no_values",
    "no_config",
    "too_many_samples",
    "bad_value",
    "value_too_long",
    "bad_timestamp",
    "bad_name",
    "name_too_long",
    "config_too_large",
}
MAX_PAYLOAD = IngestOptions().max_payload_bytes

# Characters that matter to line protocol, JSON, logs or UTF-8, and some that should not.
TRICKY = list(" ,=\"'\\#\n\r\t\x00\x07\x7f\x85\u2028\u2029\ud800\udfff\u200däß温🌡{}")
LEGIT = list(" ,=\"'\\#äß温🌡\u200d{}")
chars = st.one_of(st.sampled_from(TRICKY), st.characters())
legit_chars = st.one_of(
    st.sampled_from(LEGIT), st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))
)
hostile_names = st.one_of(
    st.text(chars, max_size=10),
    st.sampled_from(["temp", "a\\ b", "a\\\\ b", "end\\", "temp\nevil,customer=acme v=0 1"]),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "ü", "🌡"]), st.integers(60, 70_000)),
)
# One name in ten is hostile, so that most messages carry one bad thing at most.
names = st.integers(0, 9).flatmap(
    lambda i: hostile_names if i == 0 else st.text(legit_chars, min_size=1, max_size=10)
)
numbers = st.one_of(
    st.floats(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 2**53 + 1, 1e300, -1e301, 0.0, -0.0]),
)
values = st.one_of(
    numbers,
    st.booleans(),
    st.text(chars, max_size=12),
    st.builds(lambda n: "é" * n, st.integers(500, 520)),  # around 1 KiB of UTF-8
    st.none(),
    st.lists(numbers, max_size=3),
    st.fixed_dictionaries({"value": numbers, "quality": st.just("good")}),
)
timestamps = st.one_of(
    st.integers(TS, TS + 10**6),  # ms
    st.integers(TS, TS + 10**6),
    st.integers(TS // 1000, TS // 1000 + 1000),  # s
    st.sampled_from(
        [
            0,
            -1,
            1e30,
            10**20,
            float("nan"),
            MAX_TIME_MS,
            MAX_TIME_MS + 1,
            TS * 10**6,
            "2025-06-15T15:06:40.5Z",
            "2262-04-11T23:47:16.854Z",
            "2262-04-11T23:47:16.855Z",
            "1677-09-21T00:12:43.146Z",
            "1677-09-21T00:12:43.145Z",
            "9999-12-31T23:59:59Z",
            "yesterday",
            True,
        ]
    ),
    st.integers(-(10**20), 10**40),
)
json_scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(chars, max_size=8))
documents = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def hostile(draw: st.DrawFn) -> tuple[Kind, str, Any]:
    kind: Kind = draw(st.sampled_from(["realtime", "realtime", "spc", "tech"]))
    machine = draw(names)
    if kind == "tech":
        config = st.one_of(st.dictionaries(names, documents, min_size=1, max_size=3), documents)
        doc: Any = {"config": draw(config)}
    else:
        sample_values = values if kind == "realtime" else st.one_of(numbers, st.lists(numbers))
        doc = draw(st.dictionaries(names, sample_values, min_size=1, max_size=4))
    if draw(st.booleans()):
        doc["timestamp"] = draw(timestamps)
    if kind != "tech" and draw(st.booleans()):
        doc = [doc, draw(st.dictionaries(names, values, max_size=2))]
    return kind, machine, doc


@dataclass
class Expected:
    """What InfluxDB must hold after an example: per point, the values one of the accepted
    messages wrote (two messages may write the same point; either may come last)."""

    points: dict[tuple[str, str, str, int, str], set[Any]] = field(
        default_factory=lambda: defaultdict(set)
    )
    configs: list[tuple[str, str]] = field(default_factory=list)
    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, message: dict[str, Any]) -> None:
        kind, machine = message["kind"], message["machine"]
        self.jobs[QUEUES[kind]].append(message)
        if kind == "tech":
            self.configs.append((machine, json.dumps(message["config"], sort_keys=True)))
            return
        for sample in message["samples"]:
            ts = sample["ts"] if sample["ts"] is not None else message["received_at"]
            if kind == "spc":
                mean = sum(sample["values"]) / len(sample["values"])
                self.points["spc", machine, sample["characteristic"], ts, "value"].add(mean)
                continue
            for signal, value in sample["values"].items():
                fieldname = (
                    "flag"
                    if isinstance(value, bool)
                    else "text"
                    if isinstance(value, str)
                    else "value"
                )
                stored = float(value) if fieldname == "value" else value
                self.points["realtime", machine, signal, ts, fieldname].add(stored)


class Pipeline:
    """The workers of the three queues, a running count of the jobs each has done, and a Redis
    connection of the test's own (for the plant's state the workers leave)."""

    def __init__(self, client: QueueClient, redis: Redis, influx: InfluxServer) -> None:
        self.client = client
        self.redis = redis
        self.influx = influx
        self.done: dict[str, int] = defaultdict(int)
        self.examples = 0

    def select(self, query: str) -> list[dict[str, Any]]:
        data = urllib.parse.urlencode(
            {"q": query, "db": self.influx.database, "epoch": "ms"}
        ).encode()
        with urllib.request.urlopen(f"{self.influx.url}/query", data=data, timeout=10) as resp:  # noqa: S310
            result = json.loads(resp.read())["results"][0]
        assert "error" not in result, result
        return [
            dict(zip(s["columns"], v, strict=True))
            for s in result.get("series", [])
            for v in s["values"]
        ]

    async def run(self, expected: Expected) -> None:
        for queue, jobs in expected.jobs.items():
            await self.client.enqueue_many(queue, jobs)
            self.done[queue] += len(jobs)

        async def all_done() -> bool:
            for queue in QUEUES.values():
                stats = await self.client.queue_stats(queue)
                assert stats.failed == 0, f"an accepted job failed in the {queue} worker"
                assert stats.retried == 0, f"a batch of {queue} was retried"
                if stats.completed != self.done[queue]:
                    return False
            return True

        await eventually(all_done, timeout=30, what="every accepted job done")


@pytest.fixture
async def pipeline(
    client: QueueClient, raw_redis: Redis, influx: InfluxServer, start_worker: StartWorker
) -> Pipeline:
    for queue in QUEUES.values():
        await start_worker(queue, batch_size=4)
    return Pipeline(client, raw_redis, influx)


def ingest(kind: Kind, machine: str, doc: Any, received_at: int) -> dict[str, Any] | str:
    """The job the ingestor would queue, or the reason it would refuse the message."""
    payload = json.dumps(doc).encode()
    if len(payload) > MAX_PAYLOAD:  # checked by the ingestor before parsing
        return "oversized"
    try:
        message = parse_message(
            kind,
            machine=machine,
            topic=f"{machine}/{kind}",
            payload=payload,
            received_at=received_at,
        )
    except InvalidPayload as exc:
        return exc.reason if exc.detail else ""
    return dict(message)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(hostile(), min_size=1, max_size=4))
async def test_every_message_is_written_exactly_or_refused_with_a_reason(
    pipeline: Pipeline, batch: list[tuple[Kind, str, Any]]
) -> None:
    pipeline.examples += 1
    n = pipeline.examples
    good = {"timestamp": TS + n, "values": {"ok": float(n)}}
    expected = Expected()
    # A machine's tech config is written only when it changes: forget earlier examples'.
    stale = {tech_config(m) for k, m, _ in batch if k == "tech"}
    if stale:
        await pipeline.redis.delete(*stale)
    for i, (kind, machine, doc) in enumerate([*batch, ("realtime", "good machine", good)]):
        outcome = ingest(kind, machine, doc, received_at=TS + 10**7 + 1000 * n + i)
        if machine != "good machine":
            event(f"{kind}: {outcome if isinstance(outcome, str) else 'accepted'}")
        if isinstance(outcome, str):
            assert outcome in REASONS  # a documented reason, with a detail
            assert machine != "good machine"
            continue
        assert outcome["machine"] == machine
        first = doc if isinstance(doc, dict) else doc[0]
        sent = first.get("timestamp")
        if kind != "tech" and type(sent) is int and 0 <= sent <= 10**14:
            assert outcome["samples"][0]["ts"] == (sent * 1000 if sent <= 10**11 else sent)
        expected.add(outcome)
    await pipeline.run(expected)

    rows: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for row in pipeline.select("SELECT * FROM realtime"):
        rows["realtime", row["machine"], row["signal"], row["time"]] = row
    for row in pipeline.select("SELECT * FROM spc"):
        rows["spc", row["machine"], row["characteristic"], row["time"]] = row
    for (measurement, machine, name, ts, fieldname), sent in expected.points.items():
        assert MIN_TIME_MS <= ts <= MAX_TIME_MS
        row = rows.get((measurement, machine, name, ts))
        assert row is not None, f"no {measurement} point for {machine!r} {name!r} at {ts}"
        got = row[fieldname]
        if fieldname == "value":  # InfluxDB's JSON writes 5.8e16 as 58145161917699530
            got = float(got)
        assert got in sent, (machine, name, ts, fieldname)
    assert rows["realtime", "good machine", "ok", TS + n]["value"] == float(n)
    configs = {(r["machine"], r["config"]) for r in pipeline.select("SELECT * FROM tech")}
    assert set(expected.configs) <= configs
    measurements = {r["name"] for r in pipeline.select("SHOW MEASUREMENTS")}
    assert measurements <= {"realtime", "spc", "tech"}
