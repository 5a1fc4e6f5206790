"""Publishing test traffic with paho (QoS 1, waiting for every PUBACK)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def publish(
    port: int, messages: Iterable[tuple[str, bytes]], *, qos: int = 1, timeout: float = 120
) -> int:
    """Publish every (topic, payload); return how many the broker acknowledged."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        return sum(1 for i in infos if i.is_published())
    finally:
        client.disconnect()
        client.loop_stop()
