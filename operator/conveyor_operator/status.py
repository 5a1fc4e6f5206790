"""A MessageQueue's status conditions: Ready, Scaling, Backlogged, RedisUnavailable, Alerting.

``Ready`` is False with the reason that stops the queue: ``InvalidSpec`` (the installer or the
API does not allow the spec), ``QueueClaimed`` (another MessageQueue owns the queue) or
``RedisUnavailable``. ``Alerting`` is True while one of ``spec.alerts`` fires, with the reason
of the first (``QueueDepthHigh``, ``QueueBacklogOld``, ``DeadLettersGrowing``,
``QueueDrainSlow``) and all of them in its message. A condition's ``lastTransitionTime``
changes only when its status does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any


def now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(
    body: Mapping[str, Any],
    *,
    ready: bool,
    redis_ok: bool = True,
    scaling: bool = False,
    backlogged: bool = False,
    note: str = "",
    blocked: tuple[str, str] | None = None,
    alerting: Sequence[tuple[str, str]] | None = None,
) -> list[dict[str, str]]:
    """``blocked``: (reason, message) of what keeps the queue from running, if anything;
    ``alerting``: (reason, message) of each alert firing, None to keep the condition as it is
    (a poll that did not judge the alerts)."""
    now = now_text()
    old = {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}

    def cond(kind: str, status: bool, reason: str, message: str) -> dict[str, str]:
        value = "True" if status else "False"
        since = (
            old.get(kind, {}).get("lastTransitionTime")
            if old.get(kind, {}).get("status") == value
            else None
        )
        return {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since or now,
        }

    if blocked is not None:
        ready_reason, ready_message = blocked
    elif redis_ok:
        ready_reason, ready_message = "Reconciled", "worker Deployment applied"
    else:
        ready_reason = "RedisUnavailable"
        ready_message = f"Redis unreachable; replicas kept: {note}"
    if alerting is None:
        kept = [old["Alerting"]] if "Alerting" in old else []
    elif alerting:
        reason = alerting[0][0]
        kept = [cond("Alerting", True, reason, "; ".join(message for _, message in alerting))]
    else:
        kept = [cond("Alerting", False, "NoAlerts", "")]
    return [
        cond("Ready", ready and redis_ok and blocked is None, ready_reason, ready_message),
        cond("Scaling", scaling, "Scaled" if scaling else "Steady", note),
        cond("Backlogged", backlogged, "OldJobsWaiting" if backlogged else "Flowing", note),
        cond(
            "RedisUnavailable",
            not redis_ok,
            "RedisDown" if not redis_ok else "RedisUp",
            note if not redis_ok else "",
        ),
        *kept,
    ]


def ready_reason(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of the Ready condition in status now, if there is one."""
    for c in (body.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("reason", "")), str(c.get("message", ""))
    return None
