"""The MQTT side: a paho-mqtt 2 client with a persistent session and manual acknowledgements.

- QoS 1 subscriptions, a stable client id and a persistent session (MQTT 5 ``clean_start``
  false with a session expiry, or MQTT 3.1.1 ``clean_session`` false), so the broker keeps
  and redelivers what was not acknowledged while the ingestor was away.
- ``manual_ack``: the PUBACK for a message is sent only when :meth:`Subscriber.ack` is called,
  which the ingestor does after Redis has accepted the job.
- MQTT 5 ``Receive Maximum`` bounds how many unacknowledged messages the broker sends: it is
  both the flow-control window and the bound on the memory the ingestor holds when Redis is
  slow or down.
- MQTT 5 ``Maximum Packet Size``: the ingestor announces its payload limit plus
  :data:`PACKET_HEADER_ROOM` (:func:`max_packet_size`), so the broker never sends what would
  only be rejected. The broker discards a larger message for this client as if it had been
  delivered (mosquitto logs ``Dropping too large outgoing PUBLISH for <client id>``): it is
  not redelivered, and the ingestor never sees it. MQTT 3.1.1 has no such property: there the
  broker's own ``max_packet_size`` is the only bound.
- QoS 0 deliveries are not bounded by the receive window. While Redis is slow or away they
  would pile up in the inbox, so beyond ``inbox_max_messages`` or ``inbox_max_bytes`` a QoS 0
  delivery is dropped (at most once allows it), counted and logged at most every
  ``drop_log_interval`` seconds. QoS 1 deliveries are never dropped: the receive window bounds
  them (at most ``receive_maximum`` packets of at most ``max_packet_size`` bytes).
- Messages are handed from paho's network thread to asyncio through a deque; the event loop
  is woken once per burst, not once per message.
- paho reads a packet with a system call per header byte and one for the rest, and one packet
  per ``select()``; :class:`_BufferedClient` reads the socket in large chunks and handles every
  complete packet of a chunk before it waits again.
- paho 2 builds an MQTT 5 ``Properties`` object per PUBLISH (a few dozen dict entries, then a
  walk over them all to clear it) even when the packet has none; :func:`_fast_decode_publish`
  decodes such a packet itself, with a fresh empty ``Properties``, and leaves every other
  packet to paho.
- For QoS 0 and 1, :meth:`_BufferedClient._handle_publish` hands the message to
  ``on_message`` directly, without paho's per-message debug log formatting, per-topic
  callback matching (none is added) and callback locks.
- A batch's PUBACKs leave as one write (:meth:`Subscriber.ack_all`): paho's ``ack()`` wakes
  its network thread and sends a 4-byte packet per message, a pair of system calls each.
- A PUBACK is only sent on the connection the message arrived on: after a reconnect the broker
  redelivers unacknowledged messages, and a packet id from the old connection may already
  name another message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt._packet as mqtt_packet
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from conveyor_ingestor.errors import BrokerConfigError

log = logging.getLogger(__name__)

PACKET_HEADER_ROOM = 65_536 + 4_096
"""Bytes of a PUBLISH packet besides its payload that the ingestor accepts: a topic of up to
64 KiB (MQTT's limit) with its length, the packet id, the fixed header and up to about 4 KiB of
MQTT 5 properties."""

_PUBACK = struct.Struct("!BBH")  # the fixed header (type 4, remaining length 2) and packet id
_PUBACK_TYPE = 0x40

MQTT_PACKET_SIZE_LIMIT = 268_435_460
"""The largest packet MQTT can frame (a 256 MiB remaining length plus the fixed header)."""


def max_packet_size(max_payload_bytes: int) -> int:
    """The MQTT 5 Maximum Packet Size the ingestor announces for a payload limit."""
    return min(max_payload_bytes + PACKET_HEADER_ROOM, MQTT_PACKET_SIZE_LIMIT)


_paho_decode_publish = mqtt_packet.decode_publish
_EMPTY_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_MQTT5 = MQTTProtocolVersion.MQTTv5


def _fast_decode_publish(
    header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion
) -> mqtt_packet.PublishPacket:
    """paho's ``decode_publish`` for an MQTT 5 PUBLISH without properties (the common case):
    the same packet, with an empty ``Properties`` made without paho's per-instance tables."""
    qos = (header & 0x06) >> 1
    if protocol == _MQTT5 and len(packet) >= 2:
        topic_end = 2 + ((packet[0] << 8) | packet[1])
        props_at = topic_end + (2 if qos else 0)
        if len(packet) > props_at and packet[props_at] == 0:
            properties = object.__new__(Properties)  # sharing the template's read-only tables
            properties.__dict__.update(_EMPTY_PUBLISH_PROPERTIES.__dict__)
            return mqtt_packet.PublishPacket(
                dup=(header & 0x08) != 0,
                qos=qos,
                retain=(header & 0x01) != 0,
                topic=bytes(packet[2:topic_end]),
                mid=(packet[topic_end] << 8) | packet[topic_end + 1] if qos else 0,
                properties=properties,
                payload=bytes(packet[props_at + 1 :]),
            )
    return _paho_decode_publish(header, packet, protocol)


mqtt_packet.decode_publish = _fast_decode_publish

READ_CHUNK = 256 * 1024
"""Bytes the network thread reads from the broker's socket at a time."""


class _BufferedClient(mqtt.Client):
    """paho's client reading the socket in chunks of :data:`READ_CHUNK` (see the docstring)."""

    _chunk = b""
    _chunk_pos = 0
    _chunk_sock: object = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._chunk_sock is not self._sock or self._chunk_pos >= len(self._chunk):
            # A new connection never inherits bytes of an old one.
            self._chunk, self._chunk_pos, self._chunk_sock = b"", 0, self._sock
            data = super()._sock_recv(max(bufsize, READ_CHUNK))
            if len(data) <= bufsize:
                return data  # also b"": the broker closed the connection
            self._chunk = data
        pos = self._chunk_pos
        piece = self._chunk[pos : pos + bufsize]
        self._chunk_pos = pos + len(piece)
        return piece

    def _handle_publish(self) -> MQTTErrorCode:
        # For QoS 0 and 1 with manual acks paho only builds the message, logs it at debug level,
        # looks for per-topic callbacks (this client adds none) and calls on_message: do just
        # that, without its per-message log formatting, topic matching and locks.
        header = self._in_packet["command"]
        if header & 0x06 == 0x04 or not self._manual_ack:  # QoS 2: paho's handshake
            return super()._handle_publish()
        result = mqtt_packet.decode_publish(header, self._in_packet["packet"], self._protocol)
        message = mqtt.MQTTMessage(mid=result.mid, topic=result.topic)
        message.dup = result.dup
        message.qos = result.qos
        message.retain = result.retain
        message.properties = result.properties
        message.payload = result.payload
        message.timestamp = time.monotonic()
        on_message = self.on_message
        if on_message is not None:
            on_message(self, self._userdata, message)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # select() cannot see bytes already read into the chunk: handle them all now.
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._sock is not None
            and self._chunk_sock is self._sock
            and self._chunk_pos < len(self._chunk)
        ):
            rc = super().loop_read(max_packets)
        return rc


@dataclass(frozen=True, slots=True)
class Presence:
    """A retained message saying this client is online, published on every connection, and the
    one saying it is not: the MQTT will (the broker sends it if the connection is lost) and
    what :meth:`Subscriber.stop` publishes (a clean disconnect sends no will). QoS 1. Sparkplug
    B's primary host STATE is one (``conveyor_ingestor.sparkplug.host``)."""

    topic: str
    online: bytes
    offline: bytes


@dataclass(frozen=True)
class BrokerConfig:
    """How to reach the broker. Build it with :func:`broker_config` from a URL."""

    host: str
    port: int
    client_id: str
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive: int = 30
    session_expiry_s: int = 7 * 86_400
    receive_maximum: int = 2000
    share_group: str | None = None
    max_packet_size: int | None = None
    """Announced as MQTT 5 Maximum Packet Size (see :func:`max_packet_size`); None: none."""
    inbox_max_messages: int = 10_000
    """QoS 0 deliveries beyond this many waiting messages are dropped."""
    inbox_max_bytes: int = 32 * 1024 * 1024
    """QoS 0 deliveries beyond this many waiting bytes (payloads and topics) are dropped."""
    drop_log_interval: float = 10.0


def broker_config(url: str, *, client_id: str, **options: Any) -> BrokerConfig:
    """Parse ``mqtt://host:port`` or ``mqtts://host:port`` (credentials may be in the URL)."""
    parts = urlsplit(url)
    shown = repr(_without_credentials(url))  # errors are logged: never echo a password
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise BrokerConfigError(
            f"MQTT_BROKER_URL={shown}: use mqtt://host:port or mqtts://host:port"
        )
    if not parts.hostname:
        raise BrokerConfigError(f"MQTT_BROKER_URL={shown} has no host")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise BrokerConfigError(f"MQTT_BROKER_URL={shown}: the port is not a number") from exc
    if not client_id or len(client_id) > 128:
        raise BrokerConfigError("the MQTT client id must be 1-128 characters")
    if parts.username and "username" not in options:
        options["username"] = unquote(parts.username)
    if parts.password and "password" not in options:
        options["password"] = unquote(parts.password)
    return BrokerConfig(host=parts.hostname, port=port, client_id=client_id, tls=tls, **options)


def _without_credentials(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if not sep or "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"


@dataclass(slots=True)
class Delivery:
    """One message from the broker, waiting to be enqueued and acknowledged."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: float


class Subscriber:
    """Subscribes to ``filters`` and hands messages to the event loop; acks on request."""

    def __init__(
        self,
        config: BrokerConfig,
        filters: list[str],
        *,
        unshared: Sequence[str] = (),
        presence: Callable[[], Presence] | None = None,
    ) -> None:
        """``unshared``: filters of ``filters`` every replica subscribes to in full (not in the
        share group), such as Sparkplug B's, whose edge nodes are split among the replicas.
        ``presence``: makes the retained online message and its will (:class:`Presence`), anew
        for every connection, so that each carries the time of its own."""
        self.config = config
        self._make_presence = presence
        self.presence = presence() if presence is not None else None
        self.filters = [f if f in unshared else self._shared(f) for f in filters]
        self.connected = False
        self.subscribed = False  # the broker granted every filter on this connection
        self.reconnects = 0
        self.inbox: collections.deque[Delivery] = collections.deque()
        self.inbox_bytes = 0
        self.qos0_dropped = 0
        self.on_drop: Callable[[], None] | None = None
        """Called (on the network thread) for each QoS 0 delivery dropped: a metric's inc."""
        self._inbox_lock = threading.Lock()
        self._drops_logged_at = -float("inf")
        self._drops_since_log = 0
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived = asyncio.Event()
        self._waking = threading.Lock()
        self._wake_pending = False
        self._client = self._make_client()

    def _shared(self, topic_filter: str) -> str:
        group = self.config.share_group
        return f"$share/{group}/{topic_filter}" if group else topic_filter

    def _make_client(self) -> mqtt.Client:
        c = self.config
        v5 = c.protocol == "5"
        client = _BufferedClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=c.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if c.username:
            client.username_pw_set(c.username, c.password)
        if c.tls:
            try:
                client.tls_set(
                    ca_certs=c.ca_file,
                    certfile=c.cert_file,
                    keyfile=c.key_file,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise BrokerConfigError(f"cannot use the TLS files for the broker: {exc}") from exc
        if self.presence is not None:
            client.will_set(self.presence.topic, self.presence.offline, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (in the background; paho keeps reconnecting) and start the network thread."""
        self._loop = asyncio.get_running_loop()
        c = self.config
        properties = None
        if c.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = c.session_expiry_s
            properties.ReceiveMaximum = c.receive_maximum
            if c.max_packet_size is not None:
                properties.MaximumPacketSize = c.max_packet_size
        elif c.max_packet_size is not None:
            log.info(
                "MQTT 3.1.1 cannot announce a maximum packet size: the broker will send payloads "
                "of any size up to its own max_packet_size (set it to about %d bytes), and "
                "larger ones still reach dead:ingest",
                c.max_packet_size,
            )
        if c.protocol == "5" and c.max_packet_size is not None:
            log.info(
                "while Redis is away this ingestor holds at most %d QoS 1 messages "
                "(MQTT_RECEIVE_MAXIMUM) of at most %d bytes each, and QoS 0 ones up to %d "
                "messages or %d bytes: %.0f MiB in the worst case",
                c.receive_maximum,
                c.max_packet_size,
                c.inbox_max_messages,
                c.inbox_max_bytes,
                (c.receive_maximum * c.max_packet_size + c.inbox_max_bytes) / 2**20,
            )
        if c.protocol == "5":
            self._client.connect_async(
                c.host, c.port, keepalive=c.keepalive, clean_start=False, properties=properties
            )
        else:
            self._client.connect_async(c.host, c.port, keepalive=c.keepalive)
        self._client.loop_start()

    async def stop(self) -> None:
        """Disconnect cleanly: unacknowledged messages stay with the broker's session. With a
        presence, say offline first (a clean disconnect sends no will)."""
        said = False
        if self.presence is not None and self.connected:
            info = self._client.publish(
                self.presence.topic, self.presence.offline, qos=1, retain=True
            )
            with contextlib.suppress(RuntimeError, ValueError):  # the connection went meanwhile
                await asyncio.to_thread(info.wait_for_publish, 5)
            said = info.is_published()
        if self.presence is not None and not said and self.config.protocol == "5":
            # Not confirmed: leave with the will (MQTT 5 reason 0x04), so the broker says it.
            self._client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        else:
            self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self.connected = self.subscribed = False

    async def wait(self, timeout: float) -> None:
        """Return when messages are waiting in ``inbox``, or after ``timeout`` seconds."""
        if self.inbox:
            return
        self._arrived.clear()
        with self._waking:
            self._wake_pending = False
        if self.inbox:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout)

    def publish(self, topic: str, payload: bytes) -> None:
        """Send a message at QoS 0 (a Sparkplug B command: asked again if it goes unanswered)."""
        self._client.publish(topic, payload, qos=0)

    def take(self, n: int) -> list[Delivery]:
        """Up to ``n`` waiting messages, oldest first, out of the inbox."""
        with self._inbox_lock:
            batch = [self.inbox.popleft() for _ in range(min(n, len(self.inbox)))]
            self.inbox_bytes -= sum(_weight(d.topic, d.payload) for d in batch)
        return batch

    def ack(self, delivery: Delivery) -> bool:
        """Send the PUBACK, unless the connection it came on is gone (then it is redelivered)."""
        if delivery.generation != self._generation or not self.connected:
            return False
        self._client.ack(delivery.mid, delivery.qos)
        return True

    def ack_all(self, deliveries: Sequence[Delivery]) -> int:
        """:meth:`ack` each of ``deliveries``, in order, as one write to the broker; returns how
        many were acknowledged (those that came on the current connection)."""
        if not self.connected:
            return 0
        generation = self._generation
        current = [d for d in deliveries if d.generation == generation]
        queue = getattr(self._client, "_packet_queue", None)  # paho 2's, present since 1.x
        mids = [d.mid for d in current if d.qos == 1]
        if queue is None or len(mids) < len(current):  # QoS 0 and 2 (or another paho): one by one
            for d in current:
                self._client.ack(d.mid, d.qos)
        elif mids:
            # One packet of many PUBACKs: the broker reads a stream of packets, so these are the
            # bytes paho would send, in order, in one system call instead of two per message.
            pack = _PUBACK.pack
            queue(_PUBACK_TYPE, b"".join([pack(_PUBACK_TYPE, 2, mid) for mid in mids]), 0, 1)
        return len(current)

    # --- paho callbacks (network thread) ------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            log.error(
                "broker %s:%d refused the connection: %s",
                self.config.host,
                self.config.port,
                reason,
            )
            return
        self._generation += 1
        self.connected = True
        if self._generation > 1:
            self.reconnects += 1
        session = getattr(flags, "session_present", False)
        log.info(
            "connected to %s:%d as %s (session %s)",
            self.config.host,
            self.config.port,
            self.config.client_id,
            "resumed" if session else "new",
        )
        client.subscribe([(f, 1) for f in self.filters])
        if self.presence is not None:
            client.publish(self.presence.topic, self.presence.online, qos=1, retain=True)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        for topic_filter, code in zip(self.filters, codes, strict=False):
            if code.is_failure:
                log.error(
                    "the broker refused the subscription to %s (%s): check its ACL for client %s",
                    topic_filter,
                    code,
                    self.config.client_id,
                )
            else:
                log.info("subscribed to %s (QoS %d)", topic_filter, code.value)
        self.subscribed = self.connected and not any(c.is_failure for c in codes)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self.connected = False
        self.subscribed = False
        if self._make_presence is not None:  # the next connection's time, in its will too
            self.presence = self._make_presence()
            client.will_set(self.presence.topic, self.presence.offline, qos=1, retain=True)
        log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # a broker should refuse these; never crash on one
            topic = message._topic.decode(errors="replace")
        weight = _weight(topic, message.payload)
        c = self.config
        with self._inbox_lock:
            full = (
                len(self.inbox) >= c.inbox_max_messages
                or self.inbox_bytes + weight > c.inbox_max_bytes
            )
            if full and message.qos == 0:
                self._dropped(topic)
                return
            self.inbox.append(
                Delivery(
                    topic=topic,
                    payload=bytes(message.payload),
                    mid=message.mid,
                    qos=message.qos,
                    generation=self._generation,
                    received_at=time.time(),
                )
            )
            self.inbox_bytes += weight
        with self._waking:
            if self._wake_pending:
                return
            self._wake_pending = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._arrived.set)

    def _dropped(self, topic: str) -> None:
        """A QoS 0 delivery did not fit in the inbox (called with the inbox lock held)."""
        self.qos0_dropped += 1
        self._drops_since_log += 1
        if self.on_drop is not None:
            self.on_drop()
        now = time.monotonic()
        if now - self._drops_logged_at < self.config.drop_log_interval:
            return
        log.warning(
            "dropped %d QoS 0 message(s) (last on %r): %d messages (%d bytes) already wait for "
            "Redis, the bound set by INGEST_INBOX_MAX_MESSAGES / INGEST_INBOX_MAX_BYTES. QoS 0 "
            "is at most once; devices whose every message matters should publish at QoS 1",
            self._drops_since_log,
            topic,
            len(self.inbox),
            self.inbox_bytes,
        )
        self._drops_logged_at = now
        self._drops_since_log = 0


def _weight(topic: str, payload: bytes | bytearray) -> int:
    return len(topic) + len(payload)
