"""The gateway's bounds on what a request may ask for, each written once: the endpoints enforce
these and the OpenAPI document states them (a test holds the two together)."""

from __future__ import annotations

from reliable_queue.history import COARSE_KEEP_S

MAX_PAGE = 500
"""Most dead letters or alerts in one answer (``limit``)."""

MAX_OFFSET = 10**9
"""Furthest page start in a dead-letter listing (``offset``)."""

MAX_IDS = 10_000
"""Most job ids in one replay request's body."""

MAX_MACHINE_ID = 256
"""Longest machine id in a path (the cache's keys are never longer)."""

MACHINES_LISTED = 1_000
"""Most machine ids ``/machines`` lists (a SCAN stops there and says ``truncated``)."""

MAX_NAME = 256
"""Longest signal or SPC characteristic name asked for."""

MAX_WINDOW_MS = 31 * 24 * 3600 * 1000
"""Longest window (``to - from``) a trend or control chart covers: a month."""

MAX_TREND_POINTS = 2_000
"""Most points per signal in a trend (``points``): a chart is not wider than this."""

MAX_TREND_SIGNALS = 50
"""Most signals in one trend answer (without ``signal``); more says ``truncated``."""

MAX_SPC_POINTS = 5_000
"""Most points of a control chart (``points``): the newest of the window."""

MAX_CHANGES = 100
"""Most configuration versions in one answer (``limit``): each may be 64 KiB of JSON."""


def history_minutes(history_s: float) -> int:
    """The most minutes ``/stats/history`` can answer for: a day of minute samples (or
    ``history_s`` seconds of fine ones, if longer)."""
    return max(1, int(max(history_s, COARSE_KEEP_S) // 60))
