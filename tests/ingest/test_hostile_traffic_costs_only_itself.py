"""Hostile MQTT traffic costs only itself, end to end (issue 15's proof).

Real mosquitto, Redis and InfluxDB 1.8; ``conveyor ingest`` and ``conveyor work`` for
mqtt_realtime, mqtt_spc and mqtt_tech as processes. A burst of good messages from several
machines, with legitimate unusual names (spaces, commas, ``=``, quotes, backslashes,
non-ASCII), is published with one hostile message of each kind the issue names mixed in.
Then:

- every good point is in InfluxDB exactly as sent, and no other point is;
- InfluxDB has no measurement, tag key or field key but ours (no line injected by a name);
- every hostile message that reached Conveyor is exactly one dead letter with its reason,
  and no good message is one: each case issue 15 lists is in ``dead:ingest`` with the
  ingestor's reason; a point InfluxDB refuses though it is valid (a field type conflict with
  another writer of the database) is in ``dead:mqtt_realtime``, failed permanently with
  InfluxDB's message while the rest of its batch is written - never retried as an outage;
- what the broker refuses never reaches Conveyor, and the user sees it at the broker: a topic
  with a control character disconnects its publisher (mosquitto: malformed packet, so a
  control character in a machine id cannot arrive through mosquitto); a payload far over
  ``INGEST_MAX_PAYLOAD_BYTES`` is not delivered to the ingestor, which announces an MQTT 5
  Maximum Packet Size (mosquitto logs "Dropping too large outgoing PUBLISH"), while one just
  over the limit still arrives and is a dead letter ``oversized``;
- the ingestor and the workers still run and answer ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.mqtt_publish import publish_all
from conveyor.local_servers import InfluxServer
from reliable_queue import QueueClient
from tests.helpers import CliProcess, eventually, start_cli, wait_until
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

LIMIT = 96 * 1024
"""INGEST_MAX_PAYLOAD_BYTES here: room for a 64 KiB name and a 64 KiB tech config, which
must be refused for what they are, not for their size."""
BASE_TS = 1_700_000_000_000
CONFLICT_TS = BASE_TS + 30 * 86_400_000
"""In another shard than the good points (InfluxDB's field types are per shard)."""
OTHER_WRITER = 'realtime,machine=someone-else,signal=temp value="text" ' + str(CONFLICT_TS)
QUEUES = ("mqtt_realtime", "mqtt_spc", "mqtt_tech")
MEASUREMENTS = {
    "realtime": ({"machine", "signal"}, {"value", "flag", "text"}),
    "spc": ({"machine", "characteristic"}, {"value", "range", "n", "cl", "ucl", "lcl"}),
    "tech": ({"machine"}, {"config", "version"}),
}
GOOD_MACHINES = (
    "press-1",
    "press-2",
    "Presse 3, Halle=Süd",
    "línea 4 ☃",
    'cell "5"',
    "robot\\arm 6",
)
UNUSUAL_SIGNALS = (
    "Öl-Temp (°C)",
    "a,b=c d",
    '"quoted" name',
    "温度",
    "ns=2;s=Channel1.Device1\\Tag",
    "tab-free, but = and , and spaces",
)


@dataclass(frozen=True)
class Hostile:
    """One hostile message. ``fate``: ``dead`` (one dead letter in ``dead:<queue>`` with one
    of ``reasons``, its error saying ``error_has``), ``refused`` (the broker disconnects the
    publisher) or ``not_delivered`` (the broker does not pass it to the ingestor)."""

    case: str
    kind: str
    payload: bytes
    reasons: frozenset[str] = frozenset()
    fate: str = "dead"
    machine: str = ""
    queue: str = "ingest"
    error_has: str = ""

    @property
    def topic(self) -> str:
        return f"{self.machine or 'hostile-' + self.case}/{self.kind}"


def _j(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _padded(size: int) -> bytes:
    """A valid realtime message of exactly ``size`` bytes."""
    head = _j({"temp": 1.0, "pad": ""})
    return _j({"temp": 1.0, "pad": "x" * (size - len(head))})


BAD_NAME = frozenset({"bad_name"})
TOO_LONG = frozenset({"name_too_long"})
BAD_TIME = frozenset({"bad_timestamp"})
HOSTILE = (
    # The example: a newline in a JSON key makes a line in a measurement of its own.
    Hostile(
        "newline_in_signal",
        "realtime",
        _j({"temp\nevil,customer=acme amount=0 1": 1.5}),
        BAD_NAME,
    ),
    Hostile(
        "newline_in_named_sample",
        "realtime",
        _j([{"name": "rpm\nevil value=1", "value": 2.0, "timestamp": BASE_TS}]),
        BAD_NAME,
    ),
    Hostile("carriage_return_in_signal", "realtime", _j({"temp\r": 1.0}), BAD_NAME),
    Hostile("bell_in_signal", "realtime", _j({"te\u0007mp": 1.0, "ok": 2.0}), BAD_NAME),
    Hostile(
        "newline_in_characteristic",
        "spc",
        _j({"characteristic": "bore\nevil x=1 1", "value": 12.5}),
        BAD_NAME,
    ),
    Hostile("timestamp_1e30", "realtime", _j({"timestamp": 1e30, "temp": 1.0}), BAD_TIME),
    Hostile(
        "timestamp_year_9999",
        "realtime",
        _j({"timestamp": "9999-12-31T23:59:59Z", "temp": 1.0}),
        BAD_TIME,
    ),
    Hostile(
        "timestamp_year_1500",
        "realtime",
        _j({"timestamp": "1500-01-01T00:00:00Z", "temp": 1.0}),
        BAD_TIME,
    ),
    Hostile("name_over_64KiB", "realtime", _j({"t" * (64 * 1024 + 100): 1.0}), TOO_LONG),
    Hostile(
        "machine_id_over_cap",
        "realtime",
        _j({"temp": 1.0}),
        TOO_LONG,
        machine="hostile-machine-" + "m" * 2000,
    ),
    Hostile(
        "string_value_over_64KiB",
        "realtime",
        _j({"note": "x" * 70_000}),
        frozenset({"value_too_long"}),
    ),
    Hostile(
        "tech_config_over_64KiB",
        "tech",
        _j({"config": {"recipe": "r" * 66_000}, "timestamp": BASE_TS}),
        frozenset({"config_too_large"}),
    ),
    Hostile("not_json", "realtime", b"temp=21.5", frozenset({"not_json"})),
    Hostile("not_utf8", "realtime", b'{"temp": "\xc3\x28"}', frozenset({"not_utf8"})),
    Hostile("array_of_numbers", "realtime", _j([1, 2, 3]), frozenset({"wrong_shape"})),
    Hostile("bare_string", "realtime", _j("hello"), frozenset({"wrong_shape"})),
    Hostile("values_not_object", "realtime", _j({"values": [1, 2]}), frozenset({"wrong_shape"})),
    Hostile("nested_value", "realtime", _j({"temp": {"a": {"b": 1}}}), frozenset({"bad_value"})),
    Hostile("null_value", "realtime", _j({"temp": None}), frozenset({"bad_value"})),
    Hostile("empty_object", "realtime", _j({}), frozenset({"no_values"})),
    Hostile("tech_not_object", "tech", _j([1, 2]), frozenset({"wrong_shape"})),
    Hostile(
        "spc_text_value",
        "spc",
        _j({"characteristic": "bore", "value": "12,5"}),
        frozenset({"bad_value"}),
    ),
    # Valid at ingest, refused by InfluxDB: another writer made ``value`` a string field in
    # that shard. The worker fails just this job, with InfluxDB's message; its batch is written.
    Hostile(
        "field_type_conflict",
        "realtime",
        _j({"timestamp": CONFLICT_TS, "temp": 1.0}),
        frozenset({"permanent"}),
        queue="mqtt_realtime",
        error_has="field type conflict",
    ),
    Hostile("just_over_payload_limit", "realtime", _padded(LIMIT + 1), frozenset({"oversized"})),
    # Far over the limit: with the ingestor's Maximum Packet Size the broker keeps it back.
    Hostile("far_over_payload_limit", "realtime", _padded(4 * LIMIT), fate="not_delivered"),
    # MQTT topics are UTF-8 without control characters: mosquitto disconnects the publisher.
    Hostile(
        "control_char_in_machine",
        "realtime",
        _j({"temp": 1.0}),
        fate="refused",
        machine="hostile-ctl\u0007m",
    ),
)


def _good_realtime() -> tuple[list[tuple[str, bytes]], dict[tuple[str, str, int], tuple[str, Any]]]:
    """300 messages from the good machines, and the point each value must become."""
    messages: list[tuple[str, bytes]] = []
    expected: dict[tuple[str, str, int], tuple[str, Any]] = {}
    for i in range(300):
        machine = GOOD_MACHINES[i % len(GOOD_MACHINES)]
        ts = BASE_TS + i
        values: dict[str, Any] = {
            "temp": 20 + i / 8,
            "rpm": 1000 + i,
            "running": i % 2 == 0,
            "mode": f'auto "{i}" C:\\dir',
        }
        if i % 10 == 0:
            values.update({name: float(i) for name in UNUSUAL_SIGNALS})
        messages.append((f"{machine}/realtime", _j({"timestamp": ts, **values})))
        for signal, value in values.items():
            if isinstance(value, bool):
                expected[(machine, signal, ts)] = ("flag", value)
            elif isinstance(value, int | float):
                expected[(machine, signal, ts)] = ("value", float(value))
            else:
                expected[(machine, signal, ts)] = ("text", value)
    return messages, expected


def _good_spc() -> tuple[list[tuple[str, bytes]], dict[tuple[str, str, int], float]]:
    """Fewer points per characteristic than make control limits: ``value`` only."""
    messages, expected = [], {}
    for i in range(12):
        machine = GOOD_MACHINES[i % 3]
        name, ts, value = "bore Ø 12,5=mm", BASE_TS + i, 12.5 + i / 100
        messages.append(
            (f"{machine}/spc", _j({"characteristic": name, "value": value, "timestamp": ts}))
        )
        expected[(machine, name, ts)] = value
    return messages, expected


def _good_tech() -> tuple[list[tuple[str, bytes]], dict[tuple[str, int], tuple[str, int]]]:
    messages, expected = [], {}
    for i, machine in enumerate(GOOD_MACHINES[:3]):
        config = {"recipe": f"A-{i}", "speed": 3 + i, "notes": 'line "1", bay=2 \\ ok'}
        messages.append((f"{machine}/tech", _j({"config": config, "timestamp": BASE_TS + i})))
        expected[(machine, BASE_TS + i)] = (json.dumps(config, sort_keys=True), 1)
    return messages, expected


async def test_hostile_messages_cost_only_themselves_end_to_end(
    redis_url: str, client: QueueClient, mosquitto: MosquittoServer, influx: InfluxServer
) -> None:
    client_id = f"ingest-hostile-{uuid.uuid4().hex[:8]}"
    ingest = start_cli(
        "ingest",
        redis_url=redis_url,
        MQTT_BROKER_URL=mosquitto.url,
        MQTT_CLIENT_ID=client_id,
        MQTT_SESSION_EXPIRY_S="0",  # the session broker keeps nothing for it afterwards
        INGEST_MAX_PAYLOAD_BYTES=str(LIMIT),
    )
    workers = {
        queue: start_cli(
            "work",
            "--queue",
            queue,
            redis_url=redis_url,
            INFLUX_URL=influx.url,
            INFLUX_BUCKET=influx.bucket,
        )
        for queue in QUEUES
    }
    processes = {"ingest": ingest, **workers}
    try:
        for proc in processes.values():
            await proc.wait_ready()

        _write(influx, OTHER_WRITER)
        realtime, want_realtime = _good_realtime()
        spc, want_spc = _good_spc()
        tech, want_tech = _good_tech()
        sent = [h for h in HOSTILE if h.fate != "refused"]
        burst = _interleave(realtime + spc + tech, [(h.topic, h.payload) for h in sent])
        publish_all(mosquitto.port, burst)
        refused = {h.case: _publish_alone(mosquitto, h) for h in HOSTILE if h.fate == "refused"}

        arriving = [h for h in HOSTILE if h.fate == "dead"]

        async def settled() -> bool:
            stats = (await client.stats(list(QUEUES)))["queues"]
            idle = all(
                stats[q]["pending"] + stats[q]["processing"] + stats[q]["delayed"] == 0
                for q in QUEUES
            )
            letters = await _dead_letters(client)
            return (
                idle
                and all(any(_topic(d) == h.topic for d in letters) for h in arriving)
                and len(_realtime_points(influx)) >= len(want_realtime)
                and len(_spc_points(influx)) >= len(want_spc)
                and len(_tech_points(influx)) >= len(want_tech)
            )

        # Not settled in time is not the failure yet: the comparisons below say what is missing.
        with contextlib.suppress(AssertionError):
            await eventually(settled, timeout=25, interval=0.1, what="everything settled")

        problems: list[str] = []
        _compare("realtime points", _realtime_points(influx), want_realtime, problems)
        _compare("spc points", _spc_points(influx), want_spc, problems)
        _compare("tech points", _tech_points(influx), want_tech, problems)
        _check_schema(influx, problems)
        letters = await _dead_letters(client)
        _check_dead_letters(letters, problems)
        for case, reason in refused.items():
            if reason != "Malformed packet":
                problems.append(f"{case}: the broker did not refuse it (publisher saw {reason!r})")
        _check_not_delivered(mosquitto, client_id, letters, problems)
        for name, proc in processes.items():
            if proc.returncode is not None:
                problems.append(f"conveyor {name} exited with {proc.returncode}")
            elif (_status(proc, "/healthz"), _status(proc, "/readyz")) != (200, 200):
                problems.append(f"conveyor {name} does not answer /healthz and /readyz with 200")
        assert not problems, "\n".join(
            [f"{len(problems)} problem(s):", *problems, *_log_tails(processes)]
        )
    finally:
        for proc in processes.values():
            proc.stop()


# --- publishing ----------------------------------------------------------------------------


def _interleave(
    good: list[tuple[str, bytes]], bad: list[tuple[str, bytes]]
) -> list[tuple[str, bytes]]:
    """The hostile messages spread evenly through the good ones, so they share batches."""
    out, step = [], max(1, len(good) // (len(bad) + 1))
    for i, message in enumerate(good):
        out.append(message)
        if i % step == step - 1 and bad:
            out.append(bad.pop(0))
    return out + bad


def _publish_alone(mosquitto: MosquittoServer, hostile: Hostile) -> str:
    """Publish on a connection of its own; what the publisher saw: the broker's reason for
    disconnecting it, or ``published``."""
    reasons: list[str] = []
    gone = threading.Event()

    def on_disconnect(*args: Any) -> None:
        reasons.append(str(args[3]))
        gone.set()

    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.on_disconnect = on_disconnect
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        info = pub.publish(hostile.topic, hostile.payload, qos=1)
        with contextlib.suppress(AssertionError):  # no answer in 5 s is an outcome: told below
            wait_until(
                lambda: gone.is_set() or info.is_published(),
                timeout=5,
                interval=0.01,
                what="the broker's answer",
            )
        return reasons[0] if reasons else ("published" if info.is_published() else "no answer")
    finally:
        pub.disconnect()
        pub.loop_stop()


# --- what came out -------------------------------------------------------------------------


def _select(influx: InfluxServer, query: str) -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"q": query, "db": influx.database, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{influx.url}/query", data=data, timeout=10) as resp:  # noqa: S310
        result = json.loads(resp.read())["results"][0]
    assert "error" not in result, result["error"]
    return [
        dict(zip(series["columns"], row, strict=True))
        for series in result.get("series", [])
        for row in series["values"]
    ]


def _write(influx: InfluxServer, line: str) -> None:
    query = urllib.parse.urlencode({"db": influx.database, "precision": "ms"})
    url = f"{influx.url}/write?{query}"
    request = urllib.request.Request(url, data=line.encode())  # noqa: S310 - http on loopback
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        assert resp.status == 204


def _realtime_points(influx: InfluxServer) -> dict[tuple[str, str, int], tuple[str, Any]]:
    rows = _select(influx, 'SELECT "machine","signal","value","flag","text" FROM "realtime"')
    out = {}
    for r in rows:
        if r["machine"] == "someone-else":
            continue  # not ours: see OTHER_WRITER
        field = next(f for f in ("value", "flag", "text") if r[f] is not None)
        out[(r["machine"], r["signal"], r["time"])] = (field, r[field])
    return out


def _spc_points(influx: InfluxServer) -> dict[tuple[str, str, int], float]:
    rows = _select(influx, 'SELECT "machine","characteristic","value" FROM "spc"')
    return {(r["machine"], r["characteristic"], r["time"]): r["value"] for r in rows}


def _tech_points(influx: InfluxServer) -> dict[tuple[str, int], tuple[str, int]]:
    rows = _select(influx, 'SELECT "machine","config","version" FROM "tech"')
    return {(r["machine"], r["time"]): (r["config"], r["version"]) for r in rows}


def _compare(what: str, got: dict[Any, Any], want: dict[Any, Any], problems: list[str]) -> None:
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    wrong = [k for k in want if k in got and got[k] != want[k]]
    if missing:
        shown = ", ".join(repr(k)[:120] for k in missing[:5])
        problems.append(f"{what}: {len(missing)} of {len(want)} missing, e.g. {shown}")
    if extra:
        shown = ", ".join(repr(k)[:120] for k in extra[:5])
        problems.append(f"{what}: {len(extra)} not sent as good data, e.g. {shown}")
    for k in wrong[:5]:
        problems.append(f"{what}: {k!r} is {got[k]!r}, sent {want[k]!r}")


def _check_schema(influx: InfluxServer, problems: list[str]) -> None:
    names = {r["name"] for r in _select(influx, "SHOW MEASUREMENTS")}
    if not names <= set(MEASUREMENTS):
        problems.append(f"foreign measurements in InfluxDB: {sorted(names - set(MEASUREMENTS))}")
    for name, (tags, fields) in MEASUREMENTS.items():
        got_tags = {r["tagKey"] for r in _select(influx, f'SHOW TAG KEYS FROM "{name}"')}
        got_fields = {r["fieldKey"] for r in _select(influx, f'SHOW FIELD KEYS FROM "{name}"')}
        if not got_tags <= tags or not got_fields <= fields:
            problems.append(
                f"{name}: foreign tag keys {sorted(got_tags - tags)} or field keys "
                f"{sorted(got_fields - fields)}"
            )


async def _dead_letters(client: QueueClient) -> list[tuple[str, Any]]:
    """(queue, letter) of every dead letter of the ingestor and the three queues."""
    out = []
    for queue in ("ingest", *QUEUES):
        out += [(queue, d) for d in await client.dead_letters(queue, limit=10_000)]
    return out


def _topic(letter: tuple[str, Any]) -> str | None:
    """The letter's topic; dead:ingest keeps the start of a long one and its length, which
    name the hostile message it came from."""
    data = letter[1].data
    if not isinstance(data, dict):
        return None
    topic, length = data.get("topic"), data.get("topic_chars")
    if isinstance(topic, str) and length is not None:
        for h in HOSTILE:
            if len(h.topic) == length and h.topic.startswith(topic):
                return h.topic
    return topic if isinstance(topic, str) else None


def _check_dead_letters(letters: list[tuple[str, Any]], problems: list[str]) -> None:
    by_topic: dict[str | None, list[tuple[str, Any]]] = {}
    for letter in letters:
        by_topic.setdefault(_topic(letter), []).append(letter)
    hostile_topics = {h.topic for h in HOSTILE}
    for topic, found in by_topic.items():
        if topic not in hostile_topics:
            queue, d = found[0]
            problems.append(
                f"{len(found)} good message(s) dead-lettered, e.g. {topic!r} in dead:{queue} "
                f"({d.reason}: {d.error[:200]})"
            )
    for h in HOSTILE:
        found = by_topic.get(h.topic, [])
        if h.fate != "dead":
            continue
        if len(found) != 1:
            problems.append(f"{h.case}: {len(found)} dead letters, want 1")
            continue
        queue, d = found[0]
        if queue != h.queue or d.reason not in h.reasons or h.error_has not in d.error:
            problems.append(
                f"{h.case}: dead:{queue} with reason {d.reason!r} after {d.attempts} attempt(s), "
                f"want dead:{h.queue} with {'/'.join(sorted(h.reasons))} and an error that says "
                f"{h.error_has!r} ({d.error[:300]})"
            )
        if not d.error:
            problems.append(f"{h.case}: the dead letter says nothing of why")


def _check_not_delivered(
    mosquitto: MosquittoServer, client_id: str, letters: list[tuple[str, Any]], problems: list[str]
) -> None:
    log = (mosquitto.workdir / "mosquitto.log").read_text(errors="replace")
    for h in HOSTILE:
        if h.fate != "not_delivered":
            continue
        found = [q for q, d in letters if _topic((q, d)) == h.topic]
        if found:
            problems.append(
                f"{h.case}: delivered to the ingestor (in dead:{found[0]}): it should announce a "
                f"Maximum Packet Size so that the broker keeps it back"
            )
        elif f"Dropping too large outgoing PUBLISH for {client_id}" not in log:
            problems.append(f"{h.case}: neither a dead letter nor in the broker's log")


def _status(proc: CliProcess, path: str) -> int:
    answer = proc.probe(path)
    return 0 if answer is None else answer[0]


def _log_tails(processes: dict[str, CliProcess]) -> list[str]:
    out = []
    for name, proc in processes.items():
        lines = [
            line
            for line in proc.output().splitlines()
            if '"level": "warning"' in line or '"level": "error"' in line
        ]
        out.append(f"--- conveyor {name}: {len(lines)} warning/error lines, last:")
        out += [line[:300] for line in lines[-3:]]
    return out
