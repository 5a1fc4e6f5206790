"""The two baselines of ``python -m bench ingest``, run as their own processes:

- ``count``: a plain paho subscriber that only counts (QoS 1, paho acknowledges by itself):
  what one Python MQTT client can take from this broker at all.
- ``naive``: the ingestor everyone writes first: one ``LPUSH`` per message, from the network
  thread, acknowledged by paho whether or not Redis took it.

Both print ``connected <t>`` and ``done <t>`` (time.time()).

    python -m bench.mqtt_baselines count|naive --broker-port P --n N [--redis-url U]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("count", "naive", "prepare"))
    p.add_argument("--broker-port", type=int, required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--redis-url")
    p.add_argument("--receive-maximum", type=int, default=2000)
    args = p.parse_args()

    done = threading.Event()
    count = 0
    r = redis.Redis.from_url(args.redis_url) if args.mode == "naive" else None

    def on_connect(client: mqtt.Client, *_: Any) -> None:
        print("connected", time.time(), flush=True)
        client.subscribe("+/realtime", qos=1)

    def on_subscribe(*_: Any) -> None:
        if args.mode == "prepare":
            done.set()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        nonlocal count
        if r is not None:
            r.lpush("naive:" + message.topic.split("/")[1], message.payload)
        count += 1
        if count == args.n:
            print("done", time.time(), flush=True)
            done.set()

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=mqtt.MQTTv5,
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = args.receive_maximum
    client.connect("127.0.0.1", args.broker_port, clean_start=False, properties=props)
    client.loop_start()
    if not done.wait(600):
        sys.exit("timed out")
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
