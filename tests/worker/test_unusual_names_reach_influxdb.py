"""Unusual but legitimate names (spaces, commas, ``=``, quotes, backslashes, ``#``, leading and
trailing spaces, umlauts, CJK, emoji) and string values (line breaks, quotes, backslashes,
control characters) go from the ingest parser through the real realtime, SPC and tech workers
into a real InfluxDB 1.8, and a query returns exactly what was sent; no other measurement
appears. (A name ending in a backslash cannot be carried by InfluxDB's line protocol at all:
the ingest parser refuses it, see tests/unit/test_unwritable_input_is_refused_with_a_reason.py.)
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

import pytest

from conveyor.local_servers import InfluxServer
from reliable_queue import QueueClient
from tests.helpers import eventually
from tests.worker.conftest import StartWorker, message

pytestmark = pytest.mark.integration
TS = 1_750_000_000_000

NAMES = [
    "plain",
    "with space",
    " leading and trailing ",
    "comma,separated",
    "key=value",
    "a,b=c d",
    'double "quotes"',
    "single 'quotes'",
    "back\\slash",
    "C:\\probes\\temp",
    "two\\\\ backslashes, then a space",
    "\\leading backslash",
    "#hash",
    "=",
    ",",
    "Öltemperatur Düse",
    "温度センサー",
    "🌡️ Temperatur 🔥",
    "👨‍👩‍👧 joined",
    "ü" * 128,  # 256 bytes of UTF-8: the longest name allowed
]
TEXTS = [
    "line one\nline two",
    "crlf\r\nend",
    'say "hi", then = go',
    "ends with a backslash\\",
    "\\",
    "tab\there, nul\u0000, bell\u0007",
    'evil\n"evil,customer=acme amount=0 1',
    "",
]


def text_signal(name: str) -> str:
    return f"{name[:100]} text"


def select(influx: InfluxServer, query: str) -> list[dict[str, Any]]:
    """Rows of an InfluxQL query as dicts, times in epoch milliseconds."""
    data = urllib.parse.urlencode({"q": query, "db": influx.database, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{influx.url}/query", data=data, timeout=10) as resp:  # noqa: S310
        result = json.loads(resp.read())["results"][0]
    assert "error" not in result, result
    rows = []
    for series in result.get("series", []):
        rows += [dict(zip(series["columns"], values, strict=True)) for values in series["values"]]
    return rows


async def completed(client: QueueClient, queue: str, n: int) -> None:
    async def done() -> bool:
        stats = await client.queue_stats(queue)
        assert stats.failed == 0, f"{queue}: a job failed in the worker"
        return stats.completed == n

    await eventually(done, timeout=30, what=f"{n} jobs of {queue} done")


async def test_unusual_names_and_texts_are_written_exactly(
    client: QueueClient, influx: InfluxServer, start_worker: StartWorker
) -> None:
    realtime = [
        message(
            "realtime",
            machine,
            {
                "timestamp": TS + i,
                "values": {
                    signal: float(i),
                    text_signal(signal): TEXTS[i % len(TEXTS)],
                    "on": True,
                },
            },
        )
        for i, (machine, signal) in enumerate(zip(NAMES, reversed(NAMES), strict=True))
    ]
    spc = [
        message("spc", machine, {"characteristic": name, "values": [i, i + 0.5], "ts": TS})
        for i, (machine, name) in enumerate(zip(NAMES, NAMES[1:] + NAMES[:1], strict=True))
    ]
    configs = {
        machine: {name: TEXTS[i % len(TEXTS)], "n": i, "nested": {"k\n": [name]}}
        for i, (machine, name) in enumerate(zip(NAMES, reversed(NAMES), strict=True))
    }
    tech = [message("tech", m, {"config": c, "timestamp": TS}) for m, c in configs.items()]
    await client.enqueue_many("mqtt_realtime", realtime)
    await client.enqueue_many("mqtt_spc", spc)
    await client.enqueue_many("mqtt_tech", tech)
    for queue in ("mqtt_realtime", "mqtt_spc", "mqtt_tech"):
        await start_worker(queue, batch_size=7)  # several writes, each with many names
    await completed(client, "mqtt_realtime", len(realtime))
    await completed(client, "mqtt_spc", len(spc))
    await completed(client, "mqtt_tech", len(tech))

    got = {
        (r["machine"], r["signal"], r["time"]): (r["value"], r["text"], r["flag"])
        for r in select(influx, "SELECT * FROM realtime")
    }
    want: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
    for i, (machine, signal) in enumerate(zip(NAMES, reversed(NAMES), strict=True)):
        want[(machine, signal, TS + i)] = (float(i), None, None)
        want[(machine, text_signal(signal), TS + i)] = (None, TEXTS[i % len(TEXTS)], None)
        want[(machine, "on", TS + i)] = (None, None, True)
    assert got == want

    got_spc = {
        (r["machine"], r["characteristic"], r["time"]): (r["value"], r["range"], r["n"])
        for r in select(influx, "SELECT * FROM spc")
    }
    assert got_spc == {
        (machine, name, TS): (i + 0.25, 0.5, 2)
        for i, (machine, name) in enumerate(zip(NAMES, NAMES[1:] + NAMES[:1], strict=True))
    }

    got_tech = {
        r["machine"]: (r["config"], r["version"], r["time"])
        for r in select(influx, "SELECT * FROM tech")
    }
    assert got_tech == {m: (json.dumps(c, sort_keys=True), 1, TS) for m, c in configs.items()}
    measurements = {r["name"] for r in select(influx, "SHOW MEASUREMENTS")}
    assert measurements == {"realtime", "spc", "tech"}
