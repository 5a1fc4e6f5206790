"""What a replica keeps of the edge nodes other replicas handle, to take them over losing nothing.

Every replica receives every Sparkplug message. Those of a node another replica handles are
acknowledged and kept here a while: should that replica stop or die before it handled them,
the one that takes the node over (:mod:`conveyor_ingestor.sparkplug.owners`) handles them
from here, after the last one the other stored. Kept: each node's messages of the last
``window_s`` seconds, at most ``max_bytes`` of payload over all nodes (beyond, the oldest are
dropped, and counted).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from conveyor_ingestor.broker import Delivery


@dataclass(slots=True, eq=False)
class _Kept:
    node_key: str
    delivery: Delivery
    at: float
    taken: bool = False


class Standby:
    def __init__(self, *, window_s: float, max_bytes: int) -> None:
        self.window_s = window_s
        self.max_bytes = max_bytes
        self.bytes = 0
        self.dropped = 0
        """Messages dropped to stay within ``max_bytes`` (their window was not over)."""
        self._order: deque[_Kept] = deque()
        self._nodes: dict[str, deque[_Kept]] = {}

    def __len__(self) -> int:
        return sum(len(kept) for kept in self._nodes.values())

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def add(self, node_key: str, delivery: Delivery, now: float) -> None:
        kept = _Kept(node_key, delivery, now)
        self._order.append(kept)
        self._nodes.setdefault(node_key, deque()).append(kept)
        self.bytes += len(delivery.payload)
        self.expire(now)

    def expire(self, now: float) -> None:
        """Drop what is older than the window, and the oldest beyond ``max_bytes``."""
        while self._order:
            oldest = self._order[0]
            if not oldest.taken and now - oldest.at < self.window_s:
                if self.bytes <= self.max_bytes:
                    break
                self.dropped += 1
            self._order.popleft()
            if not oldest.taken:
                node = self._nodes[oldest.node_key]
                node.popleft()  # the node's oldest: kept in the same order
                if not node:
                    del self._nodes[oldest.node_key]
                self.bytes -= len(oldest.delivery.payload)

    def peek(self, node_key: str) -> list[Delivery]:
        """The node's messages kept, oldest first."""
        return [k.delivery for k in self._nodes.get(node_key, ())]

    def take(self, node_key: str) -> list[Delivery]:
        """The node's messages kept, oldest first; no longer kept."""
        kept = self._nodes.pop(node_key, ())
        for k in kept:
            k.taken = True
            self.bytes -= len(k.delivery.payload)
        return [k.delivery for k in kept]
