"""The in-chart broker's users and access control, as the chart renders them, on a real
mosquitto: the ConfigMap from `helm template`, its build-auth.sh run as the init container
runs it (mosquitto_passwd, the dynamic-security plugin's configuration), the broker started
from the configuration it writes (on a free loopback port). Anonymous and wrong passwords are
refused; a device may publish only under its own prefix, with its own client id, and may
subscribe to nothing (not '#', not the ingestors' $share group); the ingestor subscribes
through its share group; a publisher publishes what it was granted. The broker keeps no
retained message (a client publishing one is disconnected, and nothing reaches the ingestor),
holds at most mqtt.maxConnections clients, and the init script refuses to start with an
empty password, naming the Secret's key."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from conveyor.local_servers import QUIET, free_port
from tests.cluster.chart import render
from tests.helpers import wait_until
from tests.servers import require_binary

pytestmark = pytest.mark.cluster
INGESTOR, INGESTOR_PASSWORD = "conveyor-ingestor", "ingestor-secret"
DEVICES = {"m1": "m1-secret", "simulator": "sim-secret"}
SHARED = "$share/conveyor/+/realtime"
WAIT = 10.0


def build_auth(
    tmp: Path,
    devices: dict[str, str],
    *sets: str,
    ingestor_password: str = INGESTOR_PASSWORD + "\n",  # as from a file
) -> subprocess.CompletedProcess[str]:
    """Render the broker's ConfigMap and run its build-auth.sh on files laid out as the pod's."""
    [configmap] = render(
        "mqtt.devicesSecret=devices",
        "mqtt.publishers[0].username=simulator",
        "mqtt.publishers[0].topics={+/realtime,+/spc}",
        *sets,
        show_only="templates/mosquitto-configmap.yaml",
    )
    dirs = {name: tmp / name for name in ("config", "ingestor", "devices", "auth", "data")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for key, text in configmap["data"].items():
        (dirs["config"] / key).write_text(text)
    (dirs["ingestor"] / "username").write_text(INGESTOR)
    (dirs["ingestor"] / "password").write_text(ingestor_password)
    for user, password in devices.items():
        (dirs["devices"] / user).write_text(password)
    env = {
        "PATH": f"{os.environ['PATH']}:/usr/sbin",
        "CONFIG": str(dirs["config"]),
        "INGESTOR": str(dirs["ingestor"]),
        "DEVICES": str(dirs["devices"]),
        "OUT": str(dirs["auth"]),
    }
    return subprocess.run(
        ["sh", str(dirs["config"] / "build-auth.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with run_broker(tmp_path_factory.mktemp("broker")) as port:
        yield port


@contextlib.contextmanager
def run_broker(tmp: Path, *sets: str) -> Iterator[int]:
    """mosquitto with the configuration build-auth.sh wrote, on a free loopback port (the
    publishers' listener: it has the same users and access control as the ingestors', since
    per_listener_settings is false, so the tests connect everyone there)."""
    with run_broker_listeners(tmp, *sets) as (port, _):
        yield port


@contextlib.contextmanager
def run_broker_listeners(tmp: Path, *sets: str) -> Iterator[tuple[int, int]]:
    """The same, yielding the ports of both listeners: the publishers' and the ingestors'."""
    binary = require_binary("mosquitto", install="apt-get install mosquitto")
    require_binary("mosquitto_passwd", install="apt-get install mosquitto")
    done = build_auth(tmp, DEVICES, *sets)
    assert done.returncode == 0, done.stderr
    port, ingestor_port = free_port(), free_port()
    conf = (tmp / "auth" / "mosquitto.conf").read_text()
    assert "listener 1883\n" in conf
    assert "listener 1884\n" in conf
    conf = conf.replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
    conf = conf.replace("listener 1884\n", f"listener {ingestor_port} 127.0.0.1\n")
    conf = conf.replace(
        "persistence_location /mosquitto/data/", f"persistence_location {tmp}/data/"
    )
    conf = conf.replace("log_dest stdout", f"log_dest file {tmp}/mosquitto.log")
    if os.geteuid() == 0:  # as root it would switch to the user 'mosquitto', who cannot read
        conf += "user root\n"
    (tmp / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen([binary, "-c", str(tmp / "mosquitto.conf")], **QUIET)
    try:
        wait_until_running(tmp / "mosquitto.log", proc)
        yield port, ingestor_port
    finally:
        proc.terminate()
        proc.wait(10)


def wait_until_running(log: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until mosquitto logs that it runs (its listener is open by then). Not by connecting to
    it: mosquitto 2.0 counts a closed connection out twice (eclipse-mosquitto/mosquitto#1460),
    which would loosen max_connections by one before a test begins."""

    def running() -> bool:
        assert proc.poll() is None, f"mosquitto exited with {proc.returncode}"
        return log.exists() and " running" in log.read_text()

    wait_until(running, timeout=WAIT, what=f"mosquitto to log that it runs in {log}")


@dataclass
class Received:
    topic: str
    payload: bytes


class Client:
    """A paho MQTT v5 client whose connect, subscribe and publish wait for the broker's answer."""

    def __init__(
        self, port: int, username: str | None, password: str | None, client_id: str = ""
    ) -> None:
        self.mqtt = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            self.mqtt.username_pw_set(username, password)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.disconnects: queue.Queue[ReasonCode] = queue.Queue()
        self.retain_available: int | None = None
        self.acks: dict[int, queue.Queue[list[ReasonCode]]] = {}
        self.lock = threading.Lock()
        self.messages: queue.Queue[Received] = queue.Queue()
        self.mqtt.on_connect = self._connected
        self.mqtt.on_disconnect = self._disconnected
        self.mqtt.on_subscribe = lambda _c, _u, mid, rcs, _p: self._ack(mid, list(rcs))
        self.mqtt.on_publish = lambda _c, _u, mid, rc, _p: self._ack(mid, [rc])
        self.mqtt.on_message = lambda _c, _u, m: self.messages.put(
            Received(m.topic, bytes(m.payload))
        )
        self.mqtt.connect("127.0.0.1", port)
        self.mqtt.loop_start()
        self.reason = self.connack.get(timeout=WAIT)

    def _connected(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, props: Any) -> None:
        self.retain_available = getattr(props, "RetainAvailable", None)
        self.connack.put(rc)

    def _disconnected(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.disconnects.put(rc)
        self.connack.put(rc)  # closed before any CONNACK: the connection was refused

    def _box(self, mid: int) -> queue.Queue[list[ReasonCode]]:
        with self.lock:
            return self.acks.setdefault(mid, queue.Queue())

    def _ack(self, mid: int, codes: list[ReasonCode]) -> None:
        self._box(mid).put(codes)

    def subscribe(self, topic: str) -> bool:
        """Whether the broker granted the subscription."""
        _, mid = self.mqtt.subscribe(topic, qos=1)
        assert mid is not None
        [code] = self._box(mid).get(timeout=WAIT)
        return not code.is_failure

    def publish(self, topic: str, payload: bytes = b"{}") -> bool:
        """Whether the broker accepted the message (its PUBACK)."""
        info = self.mqtt.publish(topic, payload, qos=1)
        [code] = self._box(info.mid).get(timeout=WAIT)
        return not code.is_failure

    def next_message(self) -> Received:
        return self.messages.get(timeout=WAIT)

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def connect(broker: int) -> Iterator[Any]:
    clients: list[Client] = []

    def make(username: str | None, password: str | None, client_id: str = "") -> Client:
        client = Client(broker, username, password, client_id)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def test_anonymous_and_wrong_passwords_are_refused(connect: Any) -> None:
    assert connect(None, None).reason.is_failure
    assert connect("m1", "wrong", "m1").reason.is_failure
    assert connect(INGESTOR, "wrong").reason.is_failure
    assert connect("nobody", "m1-secret").reason.is_failure
    assert not connect("m1", DEVICES["m1"], "m1").reason.is_failure


def test_a_device_may_subscribe_to_nothing(connect: Any) -> None:
    device = connect("m1", DEVICES["m1"], "m1")
    for topic in ("#", SHARED, "$share/other/#", "+/realtime", "m1/#", "$SYS/#"):
        assert not device.subscribe(topic), topic


def test_a_device_publishes_only_under_its_own_prefix(connect: Any) -> None:
    ingestor = connect(INGESTOR, INGESTOR_PASSWORD)
    assert ingestor.subscribe(SHARED)
    device = connect("m1", DEVICES["m1"], "m1")
    assert not device.publish("m2/realtime", b"forged")
    assert not device.publish("m10/realtime", b"a prefix of another's name")
    assert device.publish("m1/realtime", b"mine")
    # Same publisher, in order: had the forged one gone through, it would arrive first.
    assert ingestor.next_message() == Received("m1/realtime", b"mine")


def test_a_device_cannot_take_another_client_id(connect: Any) -> None:
    assert connect("m1", DEVICES["m1"], "conveyor-ingestor-0").reason.is_failure
    assert connect("m1", DEVICES["m1"], "m2").reason.is_failure


def test_the_ingestors_share_group_keeps_every_message(connect: Any) -> None:
    ingestor = connect(INGESTOR, INGESTOR_PASSWORD)
    assert ingestor.subscribe(SHARED)
    assert not ingestor.subscribe("#")  # the ingestor too gets only what it routes
    thief = connect("m1", DEVICES["m1"], "m1")
    assert not thief.subscribe(SHARED)
    simulator = connect("simulator", DEVICES["simulator"])
    sent = [f"m{i}/realtime" for i in range(20)]
    for topic in sent:
        assert simulator.publish(topic)
    assert [ingestor.next_message().topic for _ in sent] == sent
    assert thief.messages.empty()


def test_a_publisher_publishes_what_it_was_granted(connect: Any) -> None:
    ingestor = connect(INGESTOR, INGESTOR_PASSWORD)
    assert ingestor.subscribe("$share/conveyor/+/spc")
    simulator = connect("simulator", DEVICES["simulator"])
    assert not simulator.publish("m7/tech")  # not granted
    assert not simulator.publish("m7/spc/extra")
    assert simulator.publish("m7/spc", b"ok")
    assert ingestor.next_message() == Received("m7/spc", b"ok")
    assert not simulator.subscribe("#")


def test_a_device_named_like_an_ingestor_is_refused_at_start(tmp_path: Path) -> None:
    require_binary("mosquitto_passwd", install="apt-get install mosquitto")
    done = build_auth(tmp_path, {"conveyor-ingestor-0": "x"})
    assert done.returncode != 0
    assert "looks like an ingestor's client id" in done.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    done = build_auth(bad, {"m1": "two\nlines"})
    assert done.returncode != 0
    assert "more than one line" in done.stderr


def test_a_retained_message_is_refused_and_never_kept(connect: Any) -> None:
    ingestor = connect(INGESTOR, INGESTOR_PASSWORD)
    assert ingestor.subscribe(SHARED)
    device = connect("m1", DEVICES["m1"], "m1")
    assert device.retain_available == 0  # the CONNACK says so
    device.mqtt.publish("m1/realtime", b"retained", qos=1, retain=True)
    assert device.disconnects.get(timeout=WAIT).value == 0x9A  # Retain not supported
    again = connect("m1", DEVICES["m1"], "m1")
    assert again.publish("m1/realtime", b"plain")
    # Same publisher, in order: had the retained one gone through, it would arrive first.
    assert ingestor.next_message() == Received("m1/realtime", b"plain")


def test_the_broker_holds_at_most_max_connections_clients(tmp_path: Path) -> None:
    with run_broker(tmp_path, "mqtt.maxConnections=2") as port:
        clients = [Client(port, INGESTOR, INGESTOR_PASSWORD) for _ in range(3)]
        try:
            assert [c.reason.is_failure for c in clients] == [False, False, True]
        finally:
            for c in clients:
                c.close()


def test_the_ingestors_listener_has_seats_of_its_own(tmp_path: Path) -> None:
    """Publishers filling their listener (mqtt.maxConnections) take no seat of the ingestors',
    which holds 64 (a fixed cap: scaling the ingestors changes no broker configuration)."""
    with run_broker_listeners(tmp_path, "mqtt.maxConnections=2") as (port, ingestor_port):
        clients = [Client(port, INGESTOR, INGESTOR_PASSWORD) for _ in range(3)]
        try:
            assert [c.reason.is_failure for c in clients] == [False, False, True]
            clients += [Client(ingestor_port, INGESTOR, INGESTOR_PASSWORD) for _ in range(65)]
            seats = [c.reason.is_failure for c in clients[3:]]
            assert seats == [False] * 64 + [True], seats
        finally:
            for c in clients:
                c.close()


def test_an_empty_password_is_refused_at_start_naming_its_key(tmp_path: Path) -> None:
    require_binary("mosquitto_passwd", install="apt-get install mosquitto")
    for n, password in enumerate(("", "\n")):
        done = build_auth(tmp_path / f"device{n}", {"m1": "m1-secret", "m2": password})
        assert done.returncode != 0
        assert "the key 'm2' of the Secret devices (mqtt.devicesSecret) is empty" in done.stderr
    done = build_auth(tmp_path / "ingestor", DEVICES, ingestor_password="")
    assert done.returncode != 0
    assert "the key 'password' of the Secret conveyor-mqtt (the ingestor's) is empty" in done.stderr


def test_with_sparkplug_the_ingestor_receives_every_edge_node_and_may_only_ask_for_rebirths(
    tmp_path: Path,
) -> None:
    sets = (
        "ingestor.sparkplug.enabled=true",
        "ingestor.sparkplug.groups={plant1}",
        "mqtt.publishers[1].username=m1",
        "mqtt.publishers[1].topics={spBv1.0/plant1/+/line1,spBv1.0/plant1/+/line1/+}",
        "mqtt.publishers[1].subscribe={spBv1.0/plant1/NCMD/line1}",
        "ingestor.sparkplug.hostId=conveyor",
        "mqtt.retainAvailable=true",
    )
    with run_broker(tmp_path, *sets) as port:
        clients = []
        try:
            ingestor = Client(port, INGESTOR, INGESTOR_PASSWORD)
            edge = Client(port, "m1", DEVICES["m1"], "m1")
            clients += [ingestor, edge]
            # Not shared: each replica receives every edge node and handles its own share.
            assert ingestor.subscribe("spBv1.0/plant1/#")
            assert not ingestor.subscribe("spBv1.0/plant2/#")  # a group it does not ingest
            assert edge.subscribe("spBv1.0/plant1/NCMD/line1")
            assert not edge.subscribe("spBv1.0/plant1/#")
            assert edge.publish("spBv1.0/plant1/NDATA/line1", b"data")
            assert ingestor.next_message() == Received("spBv1.0/plant1/NDATA/line1", b"data")
            assert ingestor.publish("spBv1.0/plant1/NCMD/line1", b"rebirth")
            assert edge.next_message() == Received("spBv1.0/plant1/NCMD/line1", b"rebirth")
            assert ingestor.publish("spBv1.0/STATE/conveyor", b'{"online": true}')
            # Refused publications last: mosquitto closes the connection of the client.
            assert not edge.publish("spBv1.0/plant1/NDATA/line2", b"another node's")
            assert not ingestor.publish("spBv1.0/plant1/NDATA/line1", b"forged data")
            again = Client(port, INGESTOR, INGESTOR_PASSWORD)
            clients.append(again)
            assert not again.publish("spBv1.0/plant2/NCMD/line1", b"not its group")
            another = Client(port, INGESTOR, INGESTOR_PASSWORD)
            clients.append(another)
            assert not another.publish("spBv1.0/STATE/someone-else", b'{"online": false}')
        finally:
            for c in clients:
                c.close()
