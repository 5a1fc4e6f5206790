"""A plant of Sparkplug B edge nodes, for ``conveyor simulate --sparkplug``.

Each edge node ``line-<n>`` of group ``group`` has a few metrics of its own and ``devices``
devices (``press-<n>``), each with its own. It is born (NBIRTH with ``bdSeq``, then a DBIRTH per
device, every metric with its name, alias, datatype and for measurements its engineering unit),
then publishes data by alias only (NDATA, DDATA) with ``seq`` counting 0-255. Now and then a
node dies (NDEATH with its birth's ``bdSeq``, as its MQTT will would) and is born again with the
next ``bdSeq``; and it answers a host application's Rebirth request (NCMD
``Node Control/Rebirth``) with its births. Given a primary host (``primary_host``), the nodes
wait for its STATE to say online before they are born, die when it goes offline, and are born
again when it is back (Sparkplug 3.0, 5.8). Pure and seeded like :mod:`conveyor.simulator`:
``start``, ``tick`` and ``command`` return the messages to publish.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field

from conveyor_ingestor.sparkplug.decoding import (
    BOOLEAN,
    DOUBLE,
    FLOAT,
    INT64,
    STRING,
    UINT32,
    decode,
)
from conveyor_ingestor.sparkplug.encoding import OutMetric, encode_payload
from conveyor_ingestor.sparkplug.topics import parse_topic

from conveyor.simulator import Publication

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
# name -> (alias, datatype, unit)
NODE_METRICS = {
    "Line/Speed": (1, DOUBLE, "m/min"),
    "Line/Running": (2, BOOLEAN, ""),
    "Line/Produced": (3, INT64, "parts"),
    "Line/Recipe": (4, STRING, ""),
}
DEVICE_METRICS = {
    "Pressure": (10, FLOAT, "bar"),
    "Temperature": (11, DOUBLE, "°C"),
    "Cycles": (12, UINT32, "cycles"),
}


@dataclass
class EdgeNode:
    group: str
    name: str
    devices: list[str]
    rng: random.Random
    bd_seq: int = 0
    seq: int = 0
    online: bool = False
    produced: int = 0
    cycles: int = 0

    def topic(self, kind: str, device: str | None = None) -> str:
        return "/".join([NAMESPACE, self.group, kind, self.name, *([device] if device else [])])

    def _next_seq(self) -> int:
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    def births(self, now_ms: int) -> list[Publication]:
        self.online, self.seq = True, 0
        node = [
            OutMetric(INT64, self.bd_seq, name="bdSeq"),
            OutMetric(BOOLEAN, False, name=REBIRTH),
            *(
                OutMetric(t, v, name=n, alias=a, properties=(("engUnit", u),) if u else ())
                for (n, (a, t, u)), v in zip(NODE_METRICS.items(), self._node_values(), strict=True)
            ),
        ]
        out = [(self.topic("NBIRTH"), encode_payload(node, timestamp=now_ms, seq=self._next_seq()))]
        for device in self.devices:
            metrics = [
                OutMetric(t, v, name=n, alias=a, properties=(("engUnit", u),))
                for (n, (a, t, u)), v in zip(
                    DEVICE_METRICS.items(), self._device_values(now_ms), strict=True
                )
            ]
            payload = encode_payload(metrics, timestamp=now_ms, seq=self._next_seq())
            out.append((self.topic("DBIRTH", device), payload))
        return out

    def data(self, now_ms: int) -> list[Publication]:
        self.produced += self.rng.randint(0, 3)
        node = [
            OutMetric(t, v, alias=a)
            for (a, t, _), v in zip(NODE_METRICS.values(), self._node_values(), strict=True)
            if t != STRING
        ]
        out = [(self.topic("NDATA"), encode_payload(node, timestamp=now_ms, seq=self._next_seq()))]
        for device in self.devices:
            metrics = [
                OutMetric(t, v, alias=a)
                for (a, t, _), v in zip(
                    DEVICE_METRICS.values(), self._device_values(now_ms), strict=True
                )
            ]
            payload = encode_payload(metrics, timestamp=now_ms, seq=self._next_seq())
            out.append((self.topic("DDATA", device), payload))
        return out

    def death(self, now_ms: int) -> Publication:
        """NDEATH with this session's bdSeq; the next birth takes the next bdSeq."""
        self.online = False
        payload = encode_payload([OutMetric(INT64, self.bd_seq, name="bdSeq")], timestamp=now_ms)
        self.bd_seq = (self.bd_seq + 1) % 256
        return self.topic("NDEATH"), payload

    def _node_values(self) -> list[float | int | bool | str]:
        speed = round(42 + self.rng.gauss(0, 0.5), 2)
        return [speed, True, self.produced, "A-100"]

    def _device_values(self, now_ms: int) -> list[float | int | bool | str]:
        self.cycles = (self.cycles + 1) % 2**32
        temperature = 60 + 5 * math.sin(now_ms / 300_000) + self.rng.gauss(0, 0.3)
        return [round(5.5 + self.rng.gauss(0, 0.05), 3), round(temperature, 2), self.cycles]


@dataclass
class SparkplugPlant:
    """``nodes`` edge nodes of ``devices`` devices each in group ``group``."""

    group: str = "plant"
    nodes: int = 3
    devices: int = 2
    seed: int | None = None
    death_chance: float = 0.001
    """Per node and tick: it dies, and is born again at once."""
    primary_host: str | None = None
    """The host application whose STATE the nodes follow; None: they publish regardless."""
    _rng: random.Random = field(init=False)
    _fleet: dict[str, EdgeNode] = field(init=False)
    _host_online: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._fleet = {}
        for i in range(self.nodes):
            name = f"line-{i + 1:02d}"
            devices = [f"press-{j + 1:02d}" for j in range(self.devices)]
            self._fleet[name] = EdgeNode(
                self.group, name, devices, random.Random(self._rng.random())
            )

    @property
    def command_filter(self) -> str:
        return f"{NAMESPACE}/{self.group}/NCMD/+"

    @property
    def state_topic(self) -> str | None:
        return None if self.primary_host is None else f"{NAMESPACE}/STATE/{self.primary_host}"

    def start(self, now_ms: int) -> list[Publication]:
        """The births, unless the nodes wait for their primary host."""
        self._host_online = self.primary_host is None
        return self._births(now_ms) if self._host_online else []

    def host_state(self, payload: bytes, now_ms: int) -> list[Publication]:
        """The primary host's STATE changed: born when it is online, dead while it is not."""
        try:
            online = json.loads(payload).get("online") is True
        except (ValueError, AttributeError):
            return []
        if online == self._host_online:
            return []
        self._host_online = online
        if online:
            return self._births(now_ms)
        return [node.death(now_ms) for node in self._fleet.values() if node.online]

    def _births(self, now_ms: int) -> list[Publication]:
        return [p for node in self._fleet.values() for p in node.births(now_ms)]

    def tick(self, now_ms: int) -> list[Publication]:
        if not self._host_online:
            return []  # waiting for the primary host: nothing is published
        out: list[Publication] = []
        for node in self._fleet.values():
            if self._rng.random() < self.death_chance:
                out.append(node.death(now_ms))
                out += node.births(now_ms)
            out += node.data(now_ms)
        return out

    def command(self, topic: str, payload: bytes, now_ms: int) -> list[Publication]:
        """What an edge node does on a command: births again for a Rebirth request."""
        parsed = parse_topic(topic)
        if parsed is None or parsed.message_type != "NCMD" or parsed.group != self.group:
            return []
        node = self._fleet.get(parsed.node)
        metrics = {m.name: m.raw for m in decode(payload).metrics}
        if node is None or metrics.get(REBIRTH) is not True:
            return []
        return node.births(now_ms)
