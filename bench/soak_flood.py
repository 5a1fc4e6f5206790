"""The misbehaving devices of ``python -m bench soak``, as a process of their own (so that their
publishing does not share a GIL with the latency measurement).

At a steady ``--rate`` for ``--seconds``, a random mix (seeded) of:

- topics that match no route (``junk/<random>/<random>``);
- valid messages from machine ids never seen before, with random signal names, random SPC
  characteristic names, random tech configurations and random alert types: every one is
  processed and costs its machine's share of Redis and a few InfluxDB series;
- malformed payloads of every kind issue 15 names: not JSON, not UTF-8, wrong shapes, control
  characters and newlines in names, timestamps out of InfluxDB's range, names over 64 KiB,
  strings and tech configurations over InfluxDB's field limit, too many samples, deep nesting;
- payloads just over ``--max-payload-bytes`` (delivered, dead-lettered ``oversized``) and far
  over it (kept back by the broker: the ingestor announces a Maximum Packet Size).

A third of them at QoS 0. At the end it prints one JSON line: messages sent by kind, and
``new_machines``, the valid messages that came from a new machine id.

    python -m bench.soak_flood --port P --rate R --seconds S --max-payload-bytes N \
        [--groups random_topic,valid,malformed]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

WORDS = ("temp", "rpm", "Öl", "a,b", "x=y", "spindle load", "温度", "p\\q", "bore Ø")

Maker = Callable[[random.Random, int], tuple[str, Any]]
"""(rng, payload limit) -> (the route kind, the payload: bytes, or a document to dump)."""


def _name(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)}-{rng.getrandbits(32):x}"


def _machine(rng: random.Random) -> str:
    return f"flood-{rng.getrandbits(48):x}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _padded(size: int) -> bytes:
    head = json.dumps({"temp": 1.0, "pad": ""}).encode()
    return json.dumps({"temp": 1.0, "pad": "x" * max(0, size - len(head))}).encode()


VALID: dict[str, Maker] = {
    "realtime_new_machine": lambda rng, _: (
        "realtime",
        {"timestamp": _now_ms(), **{_name(rng): rng.random() for _ in range(rng.randint(1, 4))}},
    ),
    "spc_new_characteristic": lambda rng, _: (
        "spc",
        {"characteristic": _name(rng), "value": rng.gauss(10, 1), "timestamp": _now_ms()},
    ),
    "tech_new_machine": lambda rng, _: (
        "tech",
        {"config": {_name(rng): rng.randint(0, 9) for _ in range(5)}, "timestamp": _now_ms()},
    ),
    "alert_new_type": lambda rng, _: (
        "alerts",
        {"type": _name(rng), "message": "door open", "severity": "warning"},
    ),
}

MALFORMED: dict[str, Maker] = {
    "not_json": lambda rng, _: ("realtime", bytes(rng.choices(b"abc=,{}[] 12", k=64))),
    "not_utf8": lambda rng, _: ("realtime", b'{"temp": "' + rng.randbytes(16) + b'\xff"}'),
    "wrong_shape": lambda rng, _: ("realtime", rng.choice([[1, 2], "text", {"values": [1]}])),
    "newline_in_name": lambda rng, _: ("realtime", {"temp\nevil,customer=acme amount=0 1": 1.5}),
    "control_char_in_name": lambda rng, _: ("realtime", {f"t{chr(rng.randint(0, 31))}": 1.0}),
    "timestamp_out_of_range": lambda rng, _: (
        "realtime",
        {"timestamp": rng.choice([1e30, "9999-12-31T00:00:00Z", "1500-01-01T00:00:00Z"]), "t": 1},
    ),
    "timestamp_not_a_time": lambda rng, _: ("realtime", {"timestamp": "yesterday", "t": 1}),
    "nested_value": lambda rng, _: ("realtime", {"temp": {"a": [1, {"b": 2}]}}),
    "null_value": lambda rng, _: ("realtime", {"temp": None}),
    "no_values": lambda rng, _: ("realtime", {}),
    "name_over_64KiB": lambda rng, _: ("realtime", {"n" * (64 * 1024 + rng.randint(1, 4096)): 1}),
    "name_over_cap": lambda rng, _: ("realtime", {"n" * rng.randint(300, 4000): 1}),
    "string_over_64KiB": lambda rng, _: ("realtime", {"note": "s" * (64 * 1024 + 100)}),
    "too_many_samples": lambda rng, _: ("realtime", [{"t": 1}] * 10_001),
    "deep_nesting": lambda rng, _: ("realtime", b"[" * 50_000),
    "spc_newline_characteristic": lambda rng, _: ("spc", {"characteristic": "c\nx", "value": 1}),
    "spc_text_value": lambda rng, _: ("spc", {"characteristic": "bore", "value": "12,5"}),
    "tech_config_over_64KiB": lambda rng, _: ("tech", {"config": {"blob": "b" * 70_000}}),
    "tech_not_object": lambda rng, _: ("tech", [1, 2]),
    "alert_without_type": lambda rng, _: ("alerts", {"severity": "critical"}),
    "alert_bad_severity": lambda rng, _: ("alerts", {"type": "door", "severity": "apocalyptic"}),
    "oversized_just_over": lambda rng, limit: ("realtime", _padded(limit + rng.randint(1, 4096))),
    "oversized_far_over": lambda rng, limit: ("realtime", _padded(2 * limit)),
}
HEAVY = {"name_over_64KiB", "string_over_64KiB", "too_many_samples", "deep_nesting"}
HEAVY |= {"tech_config_over_64KiB", "oversized_just_over", "oversized_far_over"}


GROUPS = {"random_topic": 0.15, "valid": 0.40, "malformed": 0.45}
"""The flood's mix: shares of random topics, valid messages of new machines, malformed ones."""


def message(
    rng: random.Random, limit: int, groups: tuple[str, ...] = tuple(GROUPS)
) -> tuple[str, str, bytes]:
    """(kind of message, topic, payload) for one flood message of one of ``groups``."""
    [group] = rng.choices(groups, weights=[GROUPS[g] for g in groups])
    if group == "random_topic":
        topic = f"junk/{rng.getrandbits(32):x}/{rng.choice(WORDS)}"
        return "random_topic", topic, rng.randbytes(rng.randint(1, 200))
    if group == "valid":
        kind = rng.choice(list(VALID))
        route, doc = VALID[kind](rng, limit)
    else:
        kind = rng.choice(list(MALFORMED))
        if kind in HEAVY and rng.random() < 0.8:  # a fifth as often: they are large
            kind = rng.choice([k for k in MALFORMED if k not in HEAVY])
        route, doc = MALFORMED[kind](rng, limit)
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return kind, f"{_machine(rng)}/{route}", payload


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--max-payload-bytes", type=int, required=True)
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--groups", default=",".join(GROUPS), help="a subset of " + ", ".join(GROUPS))
    args = p.parse_args()
    groups = tuple(g for g in args.groups.split(",") if g)
    if not groups or not set(groups) <= set(GROUPS):
        p.error(f"--groups: choose from {', '.join(GROUPS)}")
    rng = random.Random(args.seed)
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    counts: Counter[str] = Counter()
    pending = []
    started = time.time()
    n = 0
    try:
        while time.time() - started < args.seconds:
            pause = started + n / args.rate - time.time()
            if pause > 0:
                time.sleep(pause)  # pacing a steady rate
            kind, topic, payload = message(rng, args.max_payload_bytes, groups)
            qos = 0 if rng.random() < 1 / 3 else 1
            info = client.publish(topic, payload, qos=qos)
            if qos:
                pending.append(info)
            counts[kind] += 1
            counts["new_machines"] += kind in VALID
            n += 1
        for info in pending[-2000:]:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()
    print(json.dumps(dict(counts)))


if __name__ == "__main__":
    main()
