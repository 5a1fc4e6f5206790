"""A Sparkplug B edge node made with pysparkplug (an implementation we did not write), for
tests/ingest/test_sparkplug_edge_node.py. It runs in a virtualenv of its own (pysparkplug needs
paho-mqtt 1; hack/bootstrap.sh makes it: $CONVEYOR_SPARKPLUG_EDGE_PYTHON) and imports nothing of
this project.

The script: connect with its NDEATH as the will, NBIRTH (metrics with aliases and datatypes,
bdSeq), DBIRTH of one device, then ``--messages`` NDATA and DDATA by alias only. At message
``--gap-at`` it skips a seq number, as if a message had been lost upstream, sends two more
messages and waits for the host application to ask for a rebirth (NCMD
``Node Control/Rebirth``); then it publishes NBIRTH and DBIRTH again and carries on. Then it
dies (NDEATH with the birth's bdSeq), is born again with the next bdSeq, and sends one more
NDATA and DDATA. Each step is printed as a line of JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from pysparkplug import (
    Client,
    DataType,
    DBirth,
    DData,
    Message,
    MessageType,
    Metric,
    NBirth,
    NData,
    NDeath,
    QoS,
    Topic,
    get_current_timestamp,
)

# name -> (alias, datatype, first value)
NODE = {
    "Line/Speed": (1, DataType.DOUBLE, 1.5),
    "Line/Running": (2, DataType.BOOLEAN, True),
    "Line/Count": (3, DataType.INT64, -3),
    "Line/Recipe": (4, DataType.STRING, "A-12"),
    "Line/Offset": (5, DataType.INT8, -5),
    "Line/Started": (6, DataType.DATETIME, None),
}
DEVICE = {"Pressure": (10, DataType.FLOAT, 2.5), "Cycles": (11, DataType.UINT32, 4_000_000_000)}


def say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Edge:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.group, self.node, self.device = args.group, args.node, args.device
        self.seq = 0
        self.bd_seq = 0
        self.rebirths = threading.Event()
        self.client = Client(client_id=f"edge-{self.node}")

    def topic(self, kind: MessageType, device: str | None = None) -> Topic:
        return Topic(
            message_type=kind, group_id=self.group, edge_node_id=self.node, device_id=device
        )

    def publish(self, kind: MessageType, payload: object, device: str | None = None) -> None:
        self.client.publish(
            Message(self.topic(kind, device), payload, QoS.AT_MOST_ONCE, False),
            include_dtypes=kind in (MessageType.NBIRTH, MessageType.DBIRTH),
        )

    def next_seq(self) -> int:
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    def death(self) -> NDeath:
        bd = Metric(get_current_timestamp(), "bdSeq", DataType.INT64, value=self.bd_seq)
        return NDeath(get_current_timestamp(), bd_seq_metric=bd)

    def births(self) -> None:
        self.seq = 0
        now = get_current_timestamp()
        metrics = [
            Metric(now, name, datatype, value=value if value is not None else _now(), alias=alias)
            for name, (alias, datatype, value) in NODE.items()
        ]
        metrics.append(Metric(now, "bdSeq", DataType.INT64, value=self.bd_seq))
        self.publish(MessageType.NBIRTH, NBirth(now, self.next_seq(), metrics))
        device = [
            Metric(now, name, datatype, value=value, alias=alias)
            for name, (alias, datatype, value) in DEVICE.items()
        ]
        self.publish(MessageType.DBIRTH, DBirth(now, self.next_seq(), device), self.device)
        say("born", bd_seq=self.bd_seq)

    def on_command(self, client: Client, message: Message) -> None:
        names = {m.name: m.value for m in message.payload.metrics}
        say("command", metrics=sorted(names))
        if names.get("Node Control/Rebirth") is True:
            self.births()
            self.rebirths.set()

    def connect(self) -> None:
        self.client.set_will(
            Message(self.topic(MessageType.NDEATH), self.death(), QoS.AT_MOST_ONCE, False)
        )
        # Subscribed on connecting (pysparkplug subscribes what it knows in its on_connect).
        self.client.subscribe(self.topic(MessageType.NCMD), QoS.AT_LEAST_ONCE, self.on_command)
        connected = threading.Event()
        self.client.connect(
            "127.0.0.1", port=self.args.port, blocking=False, callback=lambda _: connected.set()
        )
        if not connected.wait(10):
            raise SystemExit("the broker did not accept the connection within 10 s")
        self.births()

    def data(self, i: int) -> None:
        now = get_current_timestamp()
        if i == self.args.gap_at:
            lost = self.next_seq()
            say("skipped", seq=lost)
        if self.args.gap_at >= 0 and i == self.args.gap_at + 3:  # two more, then the rebirth
            if not self.rebirths.wait(15):
                raise SystemExit("no rebirth request came within 15 s of the seq gap")
            now = get_current_timestamp()
        node = [
            Metric(now, None, DataType.DOUBLE, value=float(i), alias=1),
            Metric(now, None, DataType.INT64, value=-i, alias=3),
        ]
        self.publish(MessageType.NDATA, NData(now, self.next_seq(), node))
        device = [Metric(now, None, DataType.FLOAT, value=float(i) / 2, alias=10)]
        self.publish(MessageType.DDATA, DData(now, self.next_seq(), device), self.device)
        say("data", i=i)

    def run(self) -> None:
        self.connect()
        for i in range(self.args.messages):
            self.data(i)
            time.sleep(self.args.interval)
        # The broker reads one packet per connection at a time, and a new connection under the
        # same client id closes the old one with what it has not read yet. So the edge node
        # hears its own NDEATH back (the broker took everything before it) before it goes.
        heard = threading.Event()
        self.client.subscribe(
            self.topic(MessageType.NDEATH), QoS.AT_MOST_ONCE, lambda _c, _m: heard.set()
        )
        self.publish(MessageType.NDEATH, self.death())
        if not heard.wait(10):
            raise SystemExit("the broker did not route the NDEATH back within 10 s")
        say("died", bd_seq=self.bd_seq)
        self.flush()
        self.client.disconnect()
        self.bd_seq += 1
        self.client = Client(client_id=f"edge-{self.node}")
        self.connect()
        self.data(self.args.messages)
        self.flush()
        self.client.disconnect()
        say("done")

    def flush(self) -> None:
        """Until paho has written every queued packet (QoS 0 has no acknowledgement to await):
        a disconnect could otherwise stop its thread with some unsent."""
        paho = self.client._client  # pysparkplug's paho 1.6 client
        deadline = time.monotonic() + 10
        while paho._out_packet:
            if time.monotonic() > deadline:
                raise SystemExit("paho did not send its queued messages within 10 s")
            time.sleep(0.01)


def _now() -> object:
    import datetime

    return datetime.datetime.now(tz=datetime.UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--group", default="plant")
    parser.add_argument("--node", default="line1")
    parser.add_argument("--device", default="press1")
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--gap-at", type=int, default=-1)
    parser.add_argument("--interval", type=float, default=0.02)
    Edge(parser.parse_args()).run()


if __name__ == "__main__":
    main()
