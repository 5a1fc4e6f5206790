"""``enqueue_realtime`` and ``enqueue_alert`` validate like the ingestor and queue the message,
as the worker reads it, on the queue the routing table names; what the ingestor would refuse
they refuse before Redis sees it."""

from __future__ import annotations

import json

import pytest
from conveyor_ingestor import InvalidPayload, RoutingError, enqueue_alert, enqueue_realtime
from conveyor_messages.contract import validate_message

from reliable_queue import QueueClient

pytestmark = pytest.mark.integration


async def test_realtime_and_alert_reach_their_queues_in_the_message_contract(
    client: QueueClient,
) -> None:
    doc = {"timestamp": 1_750_000_000_000, "values": {"temp": 21.5, "run": True}}
    job_id = await enqueue_realtime(client, "press-7/realtime", doc)
    data = await client.job_data("mqtt_realtime", job_id)
    assert validate_message("realtime", data) == data
    assert (data["machine"], data["topic"], data["kind"]) == (
        "press-7",
        "press-7/realtime",
        "realtime",
    )
    assert data["samples"] == [{"ts": 1_750_000_000_000, "values": {"temp": 21.5, "run": True}}]

    alert_id = await enqueue_alert(client, "press-7", {"code": "E42", "severity": "high"})
    alert = await client.job_data("alerts", alert_id)
    assert validate_message("alert", alert) == alert
    assert (alert["type"], alert["severity"], alert["kind"]) == ("E42", "critical", "alert")


async def test_invalid_or_unrouted_input_is_refused(client: QueueClient) -> None:
    with pytest.raises(InvalidPayload) as info:
        await enqueue_realtime(client, "press-7/realtime", {"temp": [1, 2]})
    assert info.value.reason == "bad_value"
    with pytest.raises(RoutingError, match="no route"):
        await enqueue_realtime(client, "press-7/nowhere", json.loads('{"temp": 1}'))
