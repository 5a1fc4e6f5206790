"""Fast QoS 1 publishing for benchmarks: a large in-flight window, wait for every PUBACK."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

CHUNK = 50_000
"""Messages queued in the client at a time: paho refuses more than 65,535 unacknowledged
ones (its packet ids), so larger runs go in parts."""


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for start in range(0, len(messages), CHUNK):
            part = messages[start : start + CHUNK]
            infos = [client.publish(topic, payload, qos=1) for topic, payload in part]
            for info in infos:
                info.wait_for_publish(120)
    finally:
        client.disconnect()
        client.loop_stop()
