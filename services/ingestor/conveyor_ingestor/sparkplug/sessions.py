"""Sparkplug B sessions: what the ingestor remembers of each edge node, and what a message does.

Pure: :class:`Sessions` takes one decoded message at a time, in the order the edge node sent
them, and says what it makes (realtime messages, ``node_offline`` alerts), what must wait
(parked, with a reason), and whether to ask the node for a rebirth. Storing it is
:mod:`conveyor_ingestor.sparkplug.store`'s; the ingestor loads a node's session before its
first message and writes what changed before it acknowledges the batch.

- **Births and aliases.** NBIRTH records the node's metrics (name, alias, datatype,
  properties such as ``engUnit``) and its ``bdSeq``, and forgets its devices' births (each
  device births again after it); DBIRTH records one device's. Births' values are samples too.
- **Data.** NDATA and DDATA metrics are named by their alias through the birth, typed by the
  birth's datatype when they carry none, and grouped by timestamp (the metric's, else the
  payload's) into one realtime message of the machine ``<group>/<node>[/<device>]``.
- **Sequence.** ``seq`` (0-255, wrapping) is tracked per edge node. A message one ahead of the
  last is in order. A copy of one of the last 128 seen (redelivered) is behind: processed
  without moving ``seq`` (its job id is derived from its bytes, so a copy of a job still queued
  is not queued twice). Anything else is a gap: messages were lost upstream. (A process that
  has just started has seen none, and takes a seq more than 127 "ahead" as behind.)
- **What must wait.** DATA before any birth, a gap, an alias the birth does not name: the
  message is parked with the reason, a Rebirth is requested (at most one per
  ``rebirth_interval_s``), and everything the node sends until its rebirth is parked behind it,
  in order. NBIRTH takes the node's parked messages again, DBIRTH its device's; what still
  cannot be resolved after the rebirth goes to ``dead:ingest`` with the reason, and so does,
  once the node's data flows again, what waited for a device that was not born again. At most
  ``max_parked`` messages and ``max_parked_bytes`` wait per node; beyond, the newest go to
  ``dead:ingest``.
- **A birth that cannot be used** (a metric without a name, an alias given twice) goes to
  ``dead:ingest``, and the node's data waits for its next birth as if it had never been born. A
  birth whose *values* cannot be stored still stands; its values go to ``dead:ingest``.
- **Deaths.** NDEATH whose ``bdSeq`` matches the birth's marks the node and its devices
  offline and raises a ``node_offline`` alert for each; a stale NDEATH (an older session's
  will, delivered late) changes nothing. DDEATH does the same for one device. The next birth
  resolves the alert.
"""

from __future__ import annotations

import base64
import json
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor_messages.contract import AlertMessage, RealtimeMessage, Sample

from conveyor_ingestor.errors import InvalidPayload
from conveyor_ingestor.limits import check_tag, check_text, check_time_ms, clean_unit
from conveyor_ingestor.sparkplug.decoding import Payload, Value, decode, typed_value
from conveyor_ingestor.sparkplug.topics import Topic, parse_topic

SEQ_MODULUS = 256
CONTROL_PREFIXES = ("Node Control/", "Device Control/")
"""Metrics that are commands to the node (Rebirth, Next Server, ...), not measurements."""
MAX_DEVICES = 1000
"""Most devices one edge node may have recorded."""
RECENT_SEQS = 128
"""The seqs a session remembers, to tell a message seen again from one out of order."""
BD_SEQ = "bdSeq"
ENG_UNIT = "engUnit"
"""The metric property that names its unit of measure (as Ignition and most edge nodes send)."""


@dataclass(frozen=True, slots=True)
class SessionOptions:
    rebirth_interval_s: float = 30.0
    """Least time between two Rebirth requests to one edge node."""
    max_parked: int = 1000
    """Most messages waiting per edge node; beyond, the newest go to dead:ingest."""
    max_parked_bytes: int = 4 * 1024 * 1024
    """Most payload bytes waiting per edge node; beyond, the newest go to dead:ingest."""
    max_parked_bytes_total: int = 64 * 1024 * 1024
    """Most payload bytes waiting over all edge nodes of this ingestor (its memory)."""
    node_machine: str = "{group}/{node}"
    device_machine: str = "{group}/{node}/{device}"
    max_sessions: int = 10_000
    """Edge nodes kept in memory; the least recently seen beyond are loaded again when needed."""


@dataclass(slots=True)
class MetricInfo:
    name: str
    datatype: int | None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Birth:
    """A node's or a device's metrics, by name, and its aliases."""

    metrics: dict[str, MetricInfo] = field(default_factory=dict)
    aliases: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": {
                n: {"datatype": m.datatype, "properties": m.properties}
                for n, m in self.metrics.items()
            },
            "aliases": {str(a): n for a, n in self.aliases.items()},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Birth:
        return cls(
            metrics={
                n: MetricInfo(n, m.get("datatype"), m.get("properties") or {})
                for n, m in doc.get("metrics", {}).items()
            },
            aliases={int(a): n for a, n in doc.get("aliases", {}).items()},
        )


@dataclass(slots=True)
class Parked:
    """A message that waits for its edge node's rebirth."""

    topic: str
    payload: bytes
    received_at: int
    reason: str
    device: str | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "topic": self.topic,
                "payload": base64.b64encode(self.payload).decode(),
                "received_at": self.received_at,
                "reason": self.reason,
                "device": self.device,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Parked:
        doc = json.loads(text)
        return cls(
            doc["topic"],
            base64.b64decode(doc["payload"]),
            int(doc["received_at"]),
            str(doc["reason"]),
            doc.get("device"),
        )


@dataclass(slots=True)
class Session:
    """What is remembered of one edge node (``<group>/<node>``)."""

    node_key: str
    bd_seq: int | None = None
    seq: int | None = None
    online: bool = False
    node: Birth | None = None
    devices: dict[str, Birth] = field(default_factory=dict)
    offline_devices: set[str] = field(default_factory=set)
    alerting: set[str] = field(default_factory=set)
    """Machines with a firing node_offline alert."""
    awaiting_rebirth: str | None = None
    """Why the node's messages wait for its rebirth (None: they do not)."""
    parked: list[Parked] = field(default_factory=list)
    rebirth_requested_at: float = -math.inf
    recent_seqs: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_SEQS))
    """The seqs seen lately (not stored: a restarted ingestor remembers none)."""
    changed: bool = False
    """Something beyond ``seq`` changed since the last save."""
    seq_changed: bool = False
    parked_bytes: int = 0
    """Payload bytes of :attr:`parked`."""
    parked_new: list[Parked] = field(default_factory=list)
    """Parked since the last save (appended to the stored list)."""
    parked_rewrite: bool = False
    """The stored list must be written again whole (messages were taken from it)."""

    def snapshot(self) -> dict[str, Any]:
        """What to go back to, should handling a message fail half-way: shallow copies (births
        are replaced, never changed in place), a few microseconds."""
        state = {name: getattr(self, name) for name in _STATE}
        for name in _CONTAINERS:
            state[name] = type(state[name])(state[name])
        return state

    def restore(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @property
    def unsaved(self) -> bool:
        return self.changed or self.seq_changed or bool(self.parked_new) or self.parked_rewrite

    def to_json(self) -> str:
        return json.dumps(
            {
                "bd_seq": self.bd_seq,
                "online": self.online,
                "node": self.node.to_json() if self.node is not None else None,
                "devices": {d: b.to_json() for d, b in self.devices.items()},
                "offline_devices": sorted(self.offline_devices),
                "alerting": sorted(self.alerting),
                "awaiting_rebirth": self.awaiting_rebirth,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_stored(
        cls, node_key: str, stored: str | bytes | None, seq: str | bytes | None, parked: list[Any]
    ) -> Session:
        waiting = [Parked.from_json(p) for p in parked]
        session = cls(node_key, parked=waiting, parked_bytes=sum(len(p.payload) for p in waiting))
        if seq is not None:
            session.seq = int(seq)
        if stored is not None:
            doc = json.loads(stored)
            session.bd_seq = doc.get("bd_seq")
            session.online = bool(doc.get("online"))
            session.node = Birth.from_json(doc["node"]) if doc.get("node") else None
            session.devices = {d: Birth.from_json(b) for d, b in doc.get("devices", {}).items()}
            session.offline_devices = set(doc.get("offline_devices", []))
            session.alerting = set(doc.get("alerting", []))
            session.awaiting_rebirth = doc.get("awaiting_rebirth")
        return session


_STATE = (
    "bd_seq", "seq", "online", "node", "devices", "offline_devices", "alerting",
    "awaiting_rebirth", "parked", "parked_bytes", "parked_new", "parked_rewrite", "changed",
    "seq_changed",
)  # fmt: skip
_CONTAINERS = ("devices", "offline_devices", "alerting", "parked", "parked_new")


@dataclass(slots=True)
class Handled:
    """What one message made."""

    realtime: list[tuple[RealtimeMessage, bytes]] = field(default_factory=list)
    """Each with the payload it came from (this message's, or a parked one's)."""
    alerts: list[AlertMessage] = field(default_factory=list)
    rejected: list[tuple[Parked, InvalidPayload]] = field(default_factory=list)
    """Messages (this one, or parked ones taken again) that cannot be resolved: dead:ingest."""
    rebirth: bool = False
    """Ask the edge node for a rebirth (NCMD Node Control/Rebirth)."""
    parked: bool = False
    """This message waits for a rebirth (it is stored with its session)."""
    resumed: int = 0
    """Parked messages resolved by this birth."""
    stale_death: bool = False
    """An NDEATH of an older session (its bdSeq is not the birth's): ignored."""


Order = Literal["in_order", "gap", "behind"]


class Sessions:
    """The sessions of the edge nodes this ingestor handles, most recently seen last."""

    def __init__(self, options: SessionOptions | None = None) -> None:
        self.options = options or SessionOptions()
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self.parked_bytes = 0
        """Payload bytes waiting, over the sessions in memory."""

    def __contains__(self, node_key: str) -> bool:
        return node_key in self._sessions

    def get(self, node_key: str) -> Session | None:
        return self._sessions.get(node_key)

    def put(self, session: Session) -> None:
        """A session loaded from Redis (or a new one)."""
        old = self._sessions.get(session.node_key)
        if old is not None:
            self.parked_bytes -= old.parked_bytes
        self._sessions[session.node_key] = session
        self._sessions.move_to_end(session.node_key)
        self.parked_bytes += session.parked_bytes

    def drop(self, node_key: str) -> None:
        """Forget a node's session (another replica handles the node now)."""
        old = self._sessions.pop(node_key, None)
        if old is not None:
            self.parked_bytes -= old.parked_bytes

    def trim(self) -> list[str]:
        """Forget the least recently seen sessions beyond ``max_sessions``, once saved (the
        ingestor calls this between batches, never while one needs them); their nodes."""
        trimmed = []
        while len(self._sessions) > self.options.max_sessions:
            key, oldest = next(iter(self._sessions.items()))
            if oldest.unsaved:
                break  # not saved yet: kept until it is
            del self._sessions[key]
            self.parked_bytes -= oldest.parked_bytes
            trimmed.append(key)
        return trimmed

    def changed(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.unsaved]

    def handle(
        self, topic: Topic, payload: Payload, *, raw: bytes, received_at: int, now: float
    ) -> Handled:
        """What the message on ``topic`` (decoded: ``payload``; as sent: ``raw``) makes. Its
        session must have been loaded (:meth:`put`)."""
        session = self._sessions[topic.node_key]
        self._sessions.move_to_end(topic.node_key)
        out = Handled()
        message = Parked(_topic_text(topic), raw, received_at, "", topic.device)
        kind = topic.message_type
        saved, parked_bytes = session.snapshot(), self.parked_bytes
        try:
            if kind == "NBIRTH":
                self._node_birth(session, topic, payload, message, out)
            elif kind == "NDEATH":
                self._node_death(session, topic, payload, received_at, out)
            elif kind == "DBIRTH":
                self._device_birth(session, topic, payload, message, out)
            elif kind == "DDEATH":
                self._device_death(session, topic, payload, received_at, out)
            elif kind in ("NDATA", "DDATA"):
                self._data(session, topic, payload, message, out)
        except InvalidPayload:
            raise  # the message is refused; what it changed before is right (seq moved past it)
        except Exception:
            # A bug: the session goes back to what it was, the message costs only itself.
            session.restore(saved)
            self.parked_bytes = parked_bytes
            raise
        # NCMD and DCMD are commands to edge nodes (a host application's, or ours): not data.
        if out.rebirth:
            if now - session.rebirth_requested_at >= self.options.rebirth_interval_s:
                session.rebirth_requested_at = now
            else:
                out.rebirth = False
        return out

    # --- message types ------------------------------------------------------------------------

    def _node_birth(
        self, s: Session, topic: Topic, payload: Payload, message: Parked, out: Handled
    ) -> None:
        machine = self._machine(topic, None)
        try:
            birth = _birth(payload, what=f"NBIRTH of {topic.node_key}")
        except InvalidPayload as exc:
            # Nothing of the node can be named until it is born again: its data waits.
            s.online, s.node, s.devices = False, None, {}
            s.awaiting_rebirth = f"its NBIRTH was refused: {exc.detail}"
            s.changed = out.rebirth = True
            out.rejected.append((message, exc))
            return
        s.bd_seq = _bd_seq(payload)
        s.seq = payload.seq
        s.online, s.node, s.devices = True, birth, {}
        s.offline_devices.clear()
        s.awaiting_rebirth = None
        s.recent_seqs.clear()
        s.changed = s.seq_changed = True
        self._resolve_alert(s, machine, topic, message.received_at, out)
        self._birth_values(topic, payload, birth, message, out, machine)
        self._take_parked(s, None, out)

    def _device_birth(
        self, s: Session, topic: Topic, payload: Payload, message: Parked, out: Handled
    ) -> None:
        assert topic.device is not None
        if s.node is None or not s.online:
            self._park(s, message, f"DBIRTH of {topic.device} before its node's NBIRTH", out)
            return
        if self._order(s, payload, out) == "gap":
            self._park(s, message, s.awaiting_rebirth or "", out)
            return
        machine = self._machine(topic, topic.device)
        try:
            birth = _birth(payload, what=f"DBIRTH of {topic.node_key}/{topic.device}")
            if topic.device not in s.devices and len(s.devices) >= MAX_DEVICES:
                raise InvalidPayload(
                    "too_many_devices",
                    f"{topic.node_key} already has {MAX_DEVICES} devices: this one is not recorded",
                )
        except InvalidPayload as exc:
            # The device's data cannot be named by a birth it did not get: it waits for the
            # rebirth asked for, as the node's would.
            s.devices.pop(topic.device, None)
            s.awaiting_rebirth = f"the DBIRTH of {topic.device} was refused: {exc.detail}"
            s.changed = out.rebirth = True
            out.rejected.append((message, exc))
            return
        s.devices[topic.device] = birth
        s.offline_devices.discard(topic.device)
        s.changed = True
        self._resolve_alert(s, machine, topic, message.received_at, out)
        self._birth_values(topic, payload, birth, message, out, machine)
        self._take_parked(s, topic.device, out)

    def _data(
        self, s: Session, topic: Topic, payload: Payload, message: Parked, out: Handled
    ) -> None:
        if s.awaiting_rebirth is not None:
            self._park(s, message, s.awaiting_rebirth, out)
            out.rebirth = True  # again, if the last request is old: the node did not answer
            return
        if s.node is None or not s.online:
            s.awaiting_rebirth = f"{topic.message_type} before any NBIRTH of {topic.node_key}"
            s.changed = True
            self._park(s, message, s.awaiting_rebirth, out)
            out.rebirth = True
            return
        birth = s.node if topic.device is None else s.devices.get(topic.device)
        if birth is None:
            s.awaiting_rebirth = f"DDATA of {topic.device} before its DBIRTH"
            s.changed = True
            self._park(s, message, s.awaiting_rebirth, out)
            out.rebirth = True
            return
        if self._order(s, payload, out) == "gap":
            self._park(s, message, s.awaiting_rebirth or "", out)
            return
        unknown = next(
            (m.alias for m in payload.metrics if m.name is None and m.alias not in birth.aliases),
            None,
        )
        if unknown is not None or any(m.name is None and m.alias is None for m in payload.metrics):
            what = f"alias {unknown}" if unknown is not None else "a metric with no name or alias"
            s.awaiting_rebirth = f"{what} of {topic.message_type} is not in the birth"
            s.changed = True
            self._park(s, message, s.awaiting_rebirth, out)
            out.rebirth = True
            return
        self._values(topic, payload, birth, message, out)
        self._expire_unborn_devices(s, out)

    def _node_death(
        self, s: Session, topic: Topic, payload: Payload, received_at: int, out: Handled
    ) -> None:
        bd_seq = _bd_seq(payload)
        if s.bd_seq is not None and bd_seq is not None and bd_seq != s.bd_seq:
            out.stale_death = True  # an older session's will: the node was born again since
            return
        if not s.online:
            return  # dead already (a second NDEATH, or one before any birth)
        s.online = False
        s.changed = True
        machines = [self._machine(topic, None)]
        machines += [self._machine(topic, d) for d in s.devices if d not in s.offline_devices]
        s.offline_devices.update(s.devices)
        for machine in machines:
            self._fire_alert(s, machine, topic, received_at, payload.timestamp, out)

    def _device_death(
        self, s: Session, topic: Topic, payload: Payload, received_at: int, out: Handled
    ) -> None:
        assert topic.device is not None
        self._order(s, payload, out)  # a gap asks for a rebirth; the death stands
        if topic.device not in s.devices or topic.device in s.offline_devices:
            return  # a device this node never gave birth to, or dead already
        s.offline_devices.add(topic.device)
        s.changed = True
        machine = self._machine(topic, topic.device)
        self._fire_alert(s, machine, topic, received_at, payload.timestamp, out)

    # --- parts --------------------------------------------------------------------------------

    def _order(self, s: Session, payload: Payload, out: Handled) -> Order:
        """Where the message's seq falls; a gap sets the session waiting for a rebirth."""
        seq = payload.seq
        if seq is None or s.seq is None:
            if seq is not None:
                s.seq, s.seq_changed = seq, True
            return "in_order"
        ahead = (seq - s.seq - 1) % SEQ_MODULUS
        if ahead == 0:
            s.seq, s.seq_changed = seq, True
            s.recent_seqs.append(seq)
            return "in_order"
        # Behind: a copy of one seen lately (redelivered). Unknown to this process (restarted,
        # so it remembers none), a seq more than half the cycle "ahead" counts as behind too.
        behind = seq in s.recent_seqs or (not s.recent_seqs and ahead >= SEQ_MODULUS // 2)
        if not behind:
            s.awaiting_rebirth = (
                f"seq gap: {ahead} message(s) lost upstream before seq {seq} "
                f"(expected {(s.seq + 1) % SEQ_MODULUS})"
            )
            s.changed = True
            out.rebirth = True
            return "gap"
        return "behind"

    def _park(self, s: Session, message: Parked, reason: str, out: Handled) -> None:
        message.reason = reason
        size = len(message.payload)
        full = (
            len(s.parked) >= self.options.max_parked
            or s.parked_bytes + size > self.options.max_parked_bytes
            or self.parked_bytes + size > self.options.max_parked_bytes_total
        )
        if full:
            out.rejected.append(
                (
                    message,
                    InvalidPayload(
                        "parked_full",
                        f"{len(s.parked)} messages of {s.node_key} already wait for its rebirth "
                        f"({reason}); it may hold {self.options.max_parked} messages and "
                        f"{self.options.max_parked_bytes:,} bytes, and all edge nodes "
                        f"{self.options.max_parked_bytes_total:,} bytes: this one cannot "
                        "wait too",
                    ),
                )
            )
            return
        s.parked.append(message)
        s.parked_new.append(message)
        s.parked_bytes += size
        self.parked_bytes += size
        out.parked = True

    def _take_parked(self, s: Session, device: str | None, out: Handled) -> None:
        """Resolve, with the birth just recorded, what waited for it."""
        waiting = [p for p in s.parked if p.device == device]
        if not waiting:
            return
        self._keep_parked(s, [p for p in s.parked if p.device != device])
        for message in waiting:
            try:
                topic = parse_topic(message.topic)
                assert topic is not None
                birth = s.node if device is None else s.devices.get(device)
                assert birth is not None
                payload = decode(message.payload)
                unknown = [
                    m.alias
                    for m in payload.metrics
                    if m.name is None and m.alias not in birth.aliases
                ]
                if unknown:
                    raise InvalidPayload(
                        "unknown_alias",
                        f"aliases {unknown} are not in {topic.node_key}'s birth, even after its "
                        f"rebirth (the message waited because: {message.reason})",
                    )
                if topic.message_type == "DBIRTH":  # one that came before its node's NBIRTH
                    own = _birth(payload, what=f"DBIRTH of {topic.node_key}/{topic.device}")
                    machine = self._machine(topic, topic.device)
                    self._values(topic, payload, own, message, out, birth_of=machine)
                elif topic.message_type in ("NDATA", "DDATA"):
                    self._values(topic, payload, birth, message, out)
                out.resumed += 1
            except InvalidPayload as exc:
                out.rejected.append((message, exc))
            except Exception as exc:  # noqa: BLE001 - a bug costs this message, not the others
                out.rejected.append((message, unexpected(exc)))

    def _values(
        self,
        topic: Topic,
        payload: Payload,
        birth: Birth,
        message: Parked,
        out: Handled,
        *,
        birth_of: str | None = None,
    ) -> None:
        """The message's values as one realtime message (none if it has none); a birth's
        (``birth_of``) with the units its metrics name (``engUnit``)."""
        by_ts: dict[int | None, dict[str, Value]] = {}
        units: dict[str, str] = {}
        for metric in payload.metrics:
            name = metric.name if metric.name is not None else birth.aliases.get(metric.alias or 0)
            if name is None or name == BD_SEQ or name.startswith(CONTROL_PREFIXES):
                continue
            info = birth.metrics.get(name)
            datatype = metric.datatype
            if datatype is None and info is not None:
                datatype = info.datatype
            what = f"metric {name!r}"
            value = typed_value(metric, datatype, what=what)
            if value is None:
                continue  # null: no value to store (the cache keeps the last one)
            if isinstance(value, str):
                value = check_text(value, what=f"value of {what}")
            ts = metric.timestamp if metric.timestamp is not None else payload.timestamp
            if ts is not None:
                ts = check_time_ms(ts, sent=ts)
            by_ts.setdefault(ts, {})[check_tag(name, what="metric name")] = value
        if not by_ts:
            return
        if birth_of is not None:  # the birth's units, its null metrics' too; not units: none
            for name, info in birth.metrics.items():
                unit = clean_unit(info.properties.get(ENG_UNIT))
                if unit is not None and name != BD_SEQ and not name.startswith(CONTROL_PREFIXES):
                    try:
                        units[check_tag(name, what="metric name")] = unit
                    except InvalidPayload:
                        continue  # a name no value of it can have either
        machine = birth_of or self._machine(topic, topic.device)
        samples: list[Sample] = [{"ts": ts, "values": v} for ts, v in by_ts.items()]
        realtime: RealtimeMessage = {
            "machine": check_tag(machine, what="machine id (from the topic)"),
            "topic": message.topic,
            "received_at": message.received_at,
            "kind": "realtime",
            "samples": samples,
        }
        if units:
            realtime["units"] = units
        out.realtime.append((realtime, message.payload))

    def _machine(self, topic: Topic, device: str | None) -> str:
        if device is None:
            machine = self.options.node_machine.format(group=topic.group, node=topic.node)
        else:
            machine = self.options.device_machine.format(
                group=topic.group, node=topic.node, device=device
            )
        return check_tag(machine, what="machine id (from the Sparkplug topic)")

    def _birth_values(
        self,
        topic: Topic,
        payload: Payload,
        birth: Birth,
        message: Parked,
        out: Handled,
        machine: str,
    ) -> None:
        """A birth's values; if one cannot be stored, the birth still stands (its names and
        aliases are what later data needs) and its values go to dead:ingest with the reason."""
        try:
            self._values(topic, payload, birth, message, out, birth_of=machine)
        except InvalidPayload as exc:
            out.rejected.append((message, exc))

    def _expire_unborn_devices(self, s: Session, out: Handled) -> None:
        """Devices are born right after their node, before any data: once data flows, what
        still waits for a device that was not born again never will be resolved."""
        if not any(p.device is not None and p.device not in s.devices for p in s.parked):
            return
        keep = []
        for p in s.parked:
            if p.device is not None and p.device not in s.devices:
                out.rejected.append(
                    (
                        p,
                        InvalidPayload(
                            "no_device_birth",
                            f"device {p.device} of {s.node_key} was not born again after its "
                            f"node's rebirth (the message waited because: {p.reason})",
                        ),
                    )
                )
            else:
                keep.append(p)
        self._keep_parked(s, keep)

    def _keep_parked(self, s: Session, keep: list[Parked]) -> None:
        """What still waits for the node (the stored list is written again whole)."""
        size = sum(len(p.payload) for p in keep)
        self.parked_bytes += size - s.parked_bytes
        s.parked, s.parked_bytes = keep, size
        s.parked_new.clear()
        s.parked_rewrite = True

    def _fire_alert(
        self,
        s: Session,
        machine: str,
        topic: Topic,
        received_at: int,
        ts: int | None,
        out: Handled,
    ) -> None:
        s.alerting.add(machine)
        out.alerts.append(
            _alert(machine, topic, received_at, ts, "firing", f"{machine} went offline")
        )

    def _resolve_alert(
        self, s: Session, machine: str, topic: Topic, received_at: int, out: Handled
    ) -> None:
        if machine in s.alerting:
            s.alerting.discard(machine)
            out.alerts.append(
                _alert(machine, topic, received_at, None, "resolved", f"{machine} is back online")
            )


def _birth(payload: Payload, *, what: str) -> Birth:
    birth = Birth()
    for metric in payload.metrics:
        if metric.name is None:
            raise InvalidPayload("bad_birth", f"{what} has a metric without a name")
        birth.metrics[metric.name] = MetricInfo(metric.name, metric.datatype, metric.properties)
        if metric.alias is not None:
            taken = birth.aliases.get(metric.alias)
            if taken is not None and taken != metric.name:
                raise InvalidPayload(
                    "bad_birth",
                    f"{what} gives alias {metric.alias} to both {taken!r} and {metric.name!r}",
                )
            birth.aliases[metric.alias] = metric.name
    return birth


def _alert(
    machine: str, topic: Topic, received_at: int, ts: int | None, state: str, message: str
) -> AlertMessage:
    return {
        "machine": machine,
        "topic": _topic_text(topic),
        "received_at": received_at,
        "kind": "alert",
        "ts": ts,
        "type": "node_offline",
        "severity": "warning" if state == "firing" else "info",
        "message": message,
        "details": {"state": state, "node": topic.node_key, "device": topic.device},
    }


def _topic_text(topic: Topic) -> str:
    levels = ["spBv1.0", topic.group, topic.message_type, topic.node]
    if topic.device is not None:
        levels.append(topic.device)
    return "/".join(levels)


def _bd_seq(payload: Payload) -> int | None:
    """The payload's ``bdSeq`` metric, if it has a usable one."""
    metric = next((m for m in payload.metrics if m.name == BD_SEQ), None)
    if metric is None or isinstance(metric.raw, bool) or not isinstance(metric.raw, int):
        return None
    return metric.raw


def unexpected(exc: Exception) -> InvalidPayload:
    """A failure no check foresaw, as a dead letter's reason: a bug to report."""
    return InvalidPayload(
        "sparkplug_error",
        f"handling it failed ({type(exc).__name__}: {exc}); this is a bug in Conveyor: please "
        "report it with this letter",
    )
