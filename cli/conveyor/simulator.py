"""A plant to watch Conveyor work: machines that publish realistic telemetry.

Each machine publishes, on the default topics:

- ``<machine>/realtime``: temperature (a slow wave of about half an hour, a random-walk drift
  and sensor noise), pressure, spindle speed, a run flag and the operating mode, with the
  numbers' units;
- ``<machine>/spc``: a subgroup of 5 bore diameters every few seconds, in control around the
  nominal value, except that now and then the process shifts by 2.5 sigma for a dozen
  subgroups, which the SPC rules catch;
- ``<machine>/tech``: its configuration (recipe, firmware, feed rate) at start and whenever an
  operator changes it;
- ``<machine>/alerts``: a start-up notice, over-temperature warnings when the drift runs away,
  and rare emergency stops.

The model is pure (``Plant.tick`` returns messages) and seeded, so it is testable and
repeatable; ``conveyor simulate`` puts it on a broker.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field

NOMINAL_DIAMETER = 10.0
SIGMA = 0.02
SHIFT_CHANCE = 0.03  # per SPC subgroup
SHIFT_LENGTH = 12
RECIPES = ("A-100", "A-120", "B-200", "C-050")
UNITS = {"temperature": "°C", "pressure": "bar", "spindle_rpm": "1/min"}
"""The units each realtime message names, as bridges that know them send."""

Publication = tuple[str, bytes]


@dataclass
class Machine:
    name: str
    rng: random.Random
    phase: float
    drift: float = 0.0
    recipe: str = "A-100"
    feed: float = 0.12
    running: bool = True
    shift_left: int = 0
    overheated: bool = False
    config_version: int = 0

    def realtime(self, now_ms: int) -> Publication:
        self.drift = max(-4.0, min(12.0, self.drift + self.rng.gauss(0, 0.05)))
        temp = 60 + 5 * math.sin(now_ms / 300_000 + self.phase) + self.drift
        temp += self.rng.gauss(0, 0.3)
        if self.rng.random() < 0.005:
            self.running = not self.running
        values = {
            "temperature": round(temp, 2),
            "pressure": round(5.5 + self.rng.gauss(0, 0.05), 3),
            "spindle_rpm": round(1200 + self.rng.gauss(0, 10)) if self.running else 0,
            "running": self.running,
            "mode": "AUTO" if self.running else "MANUAL",
        }
        return self._json("realtime", {"timestamp": now_ms, "values": values, "units": UNITS})

    def spc(self, now_ms: int) -> Publication:
        if self.shift_left == 0 and self.rng.random() < SHIFT_CHANCE:
            self.shift_left = SHIFT_LENGTH
        mean = NOMINAL_DIAMETER + (2.5 * SIGMA if self.shift_left else 0.0)
        self.shift_left = max(0, self.shift_left - 1)
        values = [round(self.rng.gauss(mean, SIGMA), 4) for _ in range(5)]
        doc = {
            "timestamp": now_ms,
            "characteristic": "bore_diameter",
            "values": values,
            "target": NOMINAL_DIAMETER,
            "usl": NOMINAL_DIAMETER + 6 * SIGMA,
            "lsl": NOMINAL_DIAMETER - 6 * SIGMA,
        }
        return self._json("spc", doc)

    def tech(self, now_ms: int, *, change: bool) -> Publication:
        if change:
            self.recipe = self.rng.choice(RECIPES)
            self.feed = round(self.rng.uniform(0.08, 0.2), 3)
        self.config_version += 1
        config = {"recipe": self.recipe, "feed_mm_per_rev": self.feed, "firmware": "4.2.1"}
        return self._json("tech", {"timestamp": now_ms, "config": config})

    def alerts(self, now_ms: int, temperature: float) -> list[Publication]:
        out = []
        if temperature > 70 and not self.overheated:
            self.overheated = True
            out.append(
                self._alert(now_ms, "overtemp", "warning", f"temperature {temperature:.1f} °C")
            )
        elif temperature < 66:
            self.overheated = False
        if self.rng.random() < 0.0005:
            out.append(self._alert(now_ms, "emergency_stop", "critical", "E-stop pressed"))
            self.drift = 0.0
        return out

    def _alert(self, now_ms: int, kind: str, severity: str, message: str) -> Publication:
        doc = {"timestamp": now_ms, "type": kind, "severity": severity, "message": message}
        return self._json("alerts", doc)

    def _json(self, topic: str, doc: object) -> Publication:
        return f"{self.name}/{topic}", json.dumps(doc).encode()


@dataclass
class Plant:
    """``machines`` machines; ``tick`` advances one realtime message per machine."""

    machines: int = 10
    seed: int | None = None
    spc_every: int = 5  # realtime ticks per SPC subgroup
    tech_change_chance: float = 0.002
    _rng: random.Random = field(init=False)
    _fleet: list[Machine] = field(init=False)
    _ticks: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._fleet = [
            Machine(f"press-{i + 1:02d}", random.Random(self._rng.random()), self._rng.random() * 6)
            for i in range(self.machines)
        ]

    def start(self, now_ms: int) -> list[Publication]:
        """What machines publish when they come up: configuration and a start-up notice."""
        out = []
        for m in self._fleet:
            out.append(m.tech(now_ms, change=False))
            out.append(m._alert(now_ms, "started", "info", "machine online"))
        return out

    def tick(self, now_ms: int) -> list[Publication]:
        out: list[Publication] = []
        self._ticks += 1
        for m in self._fleet:
            topic, payload = m.realtime(now_ms)
            out.append((topic, payload))
            temperature = json.loads(payload)["values"]["temperature"]
            out += m.alerts(now_ms, temperature)
            if self._ticks % self.spc_every == 0:
                out.append(m.spc(now_ms))
            if self._rng.random() < self.tech_change_chance:
                out.append(m.tech(now_ms, change=True))
        return out

    def burst(self, count: int, now_ms: int) -> list[Publication]:
        """``count`` realtime messages at once (spread over the machines): a backlog."""
        return [
            self._fleet[i % len(self._fleet)].realtime(now_ms + i // len(self._fleet))
            for i in range(count)
        ]
