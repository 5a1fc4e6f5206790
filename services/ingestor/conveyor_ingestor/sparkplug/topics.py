"""Sparkplug B topics (Sparkplug 3.0, 4.1): ``spBv1.0/<group>/<type>/<edge node>[/<device>]``,
and the host applications' ``spBv1.0/STATE/<host>``."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor_ingestor.errors import InvalidPayload

NAMESPACE = "spBv1.0"
NODE_TYPES = frozenset({"NBIRTH", "NDEATH", "NDATA", "NCMD"})
DEVICE_TYPES = frozenset({"DBIRTH", "DDEATH", "DDATA", "DCMD"})
STATE = "STATE"


@dataclass(frozen=True, slots=True)
class Topic:
    group: str
    message_type: str
    node: str
    device: str | None = None

    @property
    def node_key(self) -> str:
        """The edge node, as ``<group>/<node>``: what its session is kept under."""
        return f"{self.group}/{self.node}"

    def command(self) -> str:
        """The topic of a command to this topic's edge node (NCMD)."""
        return f"{NAMESPACE}/{self.group}/NCMD/{self.node}"


def parse_topic(topic: str) -> Topic | None:
    """The parts of a Sparkplug B topic; None for a host application's STATE;
    InvalidPayload when it is not a Sparkplug B topic."""
    levels = topic.split("/")
    if len(levels) == 3 and levels[:2] == [NAMESPACE, STATE]:
        return None
    if levels[0] != NAMESPACE or len(levels) not in (4, 5):
        raise InvalidPayload(
            "not_sparkplug_topic",
            f"topic {topic!r} is not spBv1.0/<group>/<type>/<edge node>[/<device>]",
        )
    _, group, message_type, node, *device = levels
    expected = NODE_TYPES if not device else DEVICE_TYPES
    if message_type not in expected:
        raise InvalidPayload(
            "not_sparkplug_topic",
            f"topic {topic!r} has message type {message_type!r}; with "
            f"{'a device' if device else 'no device'} level it must be one of "
            f"{', '.join(sorted(expected))}",
        )
    if not group or not node or (device and not device[0]):
        raise InvalidPayload("not_sparkplug_topic", f"topic {topic!r} has an empty level")
    return Topic(group, message_type, node, device[0] if device else None)
