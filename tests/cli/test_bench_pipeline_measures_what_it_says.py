"""The pipeline benchmark's measuring parts (``bench/``, ``hack/bench.sh pipeline``): the broker
holds messages for a subscriber's session made ahead of it, and a process's CPU figure includes
what its children burn."""

from __future__ import annotations

import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench import cpu
from bench.broker_sessions import drop_session, hold_session
from bench.mqtt_publish import publish_all
from tests.helpers import wait_until
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

BURN = """
import os, time
parent = os.getppid()
while time.process_time() < 0.6:
    pass
while os.getppid() == parent:  # stay (counted as a live child) until the parent is gone
    time.sleep(0.05)  # idle, not burning: a light poll for the parent's end
"""


def own_cpu_seconds(pid: int) -> float:
    """utime + stime of the process alone (proc(5) fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / cpu.TICKS


def test_cpu_seconds_include_a_busy_grandchild() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN!r}])",
        ]
    )
    try:
        wait_until(
            lambda: cpu.cpu_seconds([parent.pid]) >= 0.5,
            timeout=20,
            interval=0.05,
            what="the grandchild's CPU time counted in the parent's",
        )
        assert own_cpu_seconds(parent.pid) < 0.4, "the parent was busy: this proves nothing"
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt3.1.1"])
def test_a_held_session_receives_what_was_published_while_away(
    mosquitto: MosquittoServer, v5: bool
) -> None:
    client_id = f"bench-held-{'5' if v5 else '311'}"
    drop_session(mosquitto.port, client_id, v5=v5)
    hold_session(mosquitto.port, client_id, ["+/realtime"], v5=v5)
    publish_all(mosquitto.port, [(f"m{i}/realtime", b"{}") for i in range(200)])

    got: list[str] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.topic)
        if len(got) == 200:
            done.set()

    sub = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
    )
    sub.on_message = on_message
    if v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 60
        sub.connect("127.0.0.1", mosquitto.port, clean_start=False, properties=props)
    else:
        sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()  # no subscribe: the session made ahead carries the subscription
    try:
        assert done.wait(10), f"{len(got)} of 200 held messages arrived"
        assert sorted(got) == sorted(f"m{i}/realtime" for i in range(200))
    finally:
        sub.disconnect()
        sub.loop_stop()
        drop_session(mosquitto.port, client_id, v5=v5)
