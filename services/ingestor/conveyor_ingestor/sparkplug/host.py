"""The primary host application's STATE (Sparkplug 3.0, 7.3): ``spBv1.0/STATE/<host id>``,
retained, JSON ``{"online": true|false, "timestamp": <ms>}``. Edge nodes configured with this
host id publish only while it is online, and buffer while it is not. The ingestor says it is
online on every connection to the broker and leaves its offline STATE as that connection's
will; both carry the time of that connection (made anew for each), so that an edge node can
tell a late will from the current state."""

from __future__ import annotations

import json
import time

from conveyor_ingestor.broker import Presence
from conveyor_ingestor.sparkplug.topics import NAMESPACE, STATE


def host_state(host_id: str, *, timestamp: int | None = None) -> Presence:
    at = int(time.time() * 1000) if timestamp is None else timestamp
    return Presence(
        topic=f"{NAMESPACE}/{STATE}/{host_id}",
        online=json.dumps({"online": True, "timestamp": at}).encode(),
        offline=json.dumps({"online": False, "timestamp": at}).encode(),
    )
