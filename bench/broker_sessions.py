"""Persistent MQTT sessions made ahead of a subscriber, so the broker holds messages for it.

A benchmark creates the subscriber's session (its client id, QoS 1 subscriptions, not cleaned
on disconnect), publishes N messages while the subscriber is away, then starts it: the
publisher's cost stays outside the timed window, and the subscriber drains a full backlog.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SESSION_EXPIRY_S = 86_400
SETUP_TIMEOUT_S = 60.0
"""For a session's set-up, not a measurement: a broker just handed 200,000 messages may save
them to disk first (a run once timed out at 10 s)."""


def _open(port: int, client_id: str, *, v5: bool, clean: bool, timeout: float) -> mqtt.Client:
    """A connected client (CONNACK received), its network loop running."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else clean,
    )
    connected = threading.Event()

    def on_connect(*_: Any) -> None:
        connected.set()

    client.on_connect = on_connect
    if v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0 if clean else SESSION_EXPIRY_S
        client.connect("127.0.0.1", port, clean_start=clean, properties=props)
    else:
        client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(timeout):
        client.loop_stop()
        raise TimeoutError(
            f"the broker on port {port} did not accept {client_id} in {timeout:.0f} s: "
            "is mosquitto running?"
        )
    return client


def _close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def hold_session(
    port: int, client_id: str, filters: Sequence[str], *, v5: bool, timeout: float = SETUP_TIMEOUT_S
) -> None:
    """Create (or keep) ``client_id``'s persistent session subscribed to ``filters`` at QoS 1,
    then disconnect: from now on the broker queues matching messages for it."""
    client = _open(port, client_id, v5=v5, clean=False, timeout=timeout)
    subscribed = threading.Event()

    def on_subscribe(*_: Any) -> None:
        subscribed.set()

    client.on_subscribe = on_subscribe
    try:
        client.subscribe([(f, 1) for f in filters])
        if not subscribed.wait(timeout):
            raise TimeoutError(
                f"the broker on port {port} did not acknowledge {client_id}'s subscription in "
                f"{timeout:.0f} s: is mosquitto running and accepting clients?"
            )
    finally:
        _close(client)


def drop_session(port: int, client_id: str, *, v5: bool, timeout: float = SETUP_TIMEOUT_S) -> None:
    """End ``client_id``'s session at the broker, and whatever is queued for it."""
    _close(_open(port, client_id, v5=v5, clean=True, timeout=timeout))
