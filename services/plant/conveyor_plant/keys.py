"""Where the plant's state lives in Redis: the keys the workers write and the gateway reads.

Per machine, hash-tagged by the machine id (``{machine}``), so that one machine's keys share a
Cluster slot. The queue library (``reliable_queue``) knows none of them: it moves jobs; this is
what the jobs leave behind. Reading them is :mod:`conveyor_plant.reading`.
"""

from __future__ import annotations

from reliable_queue.keys import PREFIX

LATEST_UPDATED_FIELD = "_ts"
"""The field of :func:`latest_values` holding the newest sample time (ms) of the machine."""

LATEST_OFFLINE_FIELD = "_offline"
"""The field of :func:`latest_values` holding since when (ms) the machine is offline (its
``node_offline`` alert fired: a Sparkplug B death), absent while it is not: its values are
then the last it sent, not current ones."""

LATEST_ONLINE_FIELD = "_online"
"""The field of :func:`latest_values` holding when (ms) the machine was last seen back online
(its ``node_offline`` alert resolved), so that an older firing processed late is ignored."""

OFFLINE_ALERT = "node_offline"
"""The alert type whose firing and resolving set and clear :data:`LATEST_OFFLINE_FIELD`."""


LIVE_CHANNEL_PATTERN = f"{PREFIX}:live:*"
"""Pub/sub: every processed realtime value, tech change and alert, per machine channel."""

ALERT_HISTORY = f"{PREFIX}:alerts:history"
"""STREAM of processed alerts, capped (XADD MAXLEN ~)."""


def live_channel(machine: str) -> str:
    return f"{PREFIX}:live:{machine}"


def latest_values(machine: str) -> str:
    """HASH signal -> JSON value of the machine's latest realtime values, plus ``_ts``."""
    return f"{PREFIX}:latest:{{{machine}}}"


def latest_units(machine: str) -> str:
    """HASH signal -> unit of measure (``"°C"``) of the signals in :func:`latest_values` whose
    messages named one; expires the machine's TTL after the last value (longer than they)."""
    return f"{PREFIX}:latest-units:{{{machine}}}"


def latest_times(machine: str) -> str:
    """HASH signal -> timestamp (ms) of the value in :func:`latest_values`, so that a message
    processed late (retried, or in another batch) never replaces a newer value."""
    return f"{PREFIX}:latest-ts:{{{machine}}}"


def tech_config(machine: str) -> str:
    """STRING: JSON ``{"version", "ts", "config"}`` of the machine's current configuration."""
    return f"{PREFIX}:tech:{{{machine}}}"


def spc_window(machine: str, characteristic: str) -> str:
    """LIST of the latest SPC points (newest first) of one characteristic."""
    return f"{PREFIX}:spc:{{{machine}}}:{characteristic}"


def alert_seen(machine: str, alert_type: str) -> str:
    """STRING with a TTL: the job id of the last alert of this type delivered (deduplication)."""
    return f"{PREFIX}:alert-seen:{{{machine}}}:{alert_type}"
