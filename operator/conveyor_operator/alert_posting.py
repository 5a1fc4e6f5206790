"""Where a queue alert goes when it fires or clears: an Event on the MessageQueue, and an alert
job on the alerts queue beside the machines' alerts (so it reaches the gateway's ``/alerts``,
the dashboard and the webhooks, with their de-duplication). Which alerts fire is decided in
``queue_alerts``."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf
from conveyor_messages.contract import AlertMessage

from conveyor_operator.context import REDIS_ERRORS, Operator
from conveyor_operator.queue_alerts import Transition

log = logging.getLogger(__name__)


async def post_alert(op: Operator, body: kopf.Body, queue: str, change: Transition) -> None:
    """An Event on the MessageQueue and an alert job beside the machines' alerts."""
    if change.state == "firing":
        kopf.warn(body, reason=change.rule.reason, message=f"{queue}: {change.message}")
    else:
        kopf.info(body, reason="AlertResolved", message=f"{queue}: {change.message}")
    target = op.config.alerts_queue
    try:
        await op.queues.enqueue(target, queue_alert(body, queue, change))
    except REDIS_ERRORS as exc:  # the Event and the condition say it all the same
        op.config.metrics.errors.labels("redis").inc()
        log.warning("queue alert on %s not enqueued on %s: %s", queue, target, exc)


def queue_alert(
    body: Mapping[str, Any], queue: str, change: Transition, *, now_ms: int | None = None
) -> AlertMessage:
    """The alert job of a queue alert, in the machines' alert contract (``machine`` is
    ``queue/<queue>``, ``details.state`` ``firing`` or ``resolved``)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    meta, firing = body["metadata"], change.state == "firing"
    return AlertMessage(
        machine=f"queue/{queue}",
        topic="",
        received_at=now_ms,
        kind="alert",
        ts=now_ms,
        type=change.rule.alert_type,
        severity="warning" if firing else "info",
        message=f"queue {queue}: {change.message}",
        details={
            "state": change.state,
            "queue": queue,
            "messagequeue": f"{meta.get('namespace', '')}/{meta['name']}",
            "value": change.value,
            "threshold": change.threshold,
            "for_s": change.for_s,
        },
    )
