"""The ingestor decodes MQTT 5 PUBLISH packets without properties itself (paho builds a
Properties object per packet): every packet, with or without properties, QoS 0/1/2, MQTT 5 or
3.1.1, well formed or not, decodes exactly as paho's own ``decode_publish`` does."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import paho.mqtt._packet as mqtt_packet
import pytest
from conveyor_ingestor import broker
from paho.mqtt.enums import MQTTProtocolVersion


def _packet(topic: bytes, qos: int, props: bytes, payload: bytes) -> bytearray:
    mid = struct.pack("!H", 0xBEEF) if qos else b""
    return bytearray(struct.pack("!H", len(topic)) + topic + mid + props + payload)


def _decoded(decode: Any, header: int, packet: bytearray, protocol: int) -> object:
    try:
        got = decode(header, packet, protocol)
    except Exception as exc:  # the error's type is what is compared
        return type(exc)
    props = got.properties
    shown = None if props is None else (props.packetType, props.json(), str(props))
    return (got.dup, got.qos, got.retain, got.topic, got.mid, type(got.payload), got.payload, shown)


def test_the_ingestor_uses_its_decoder() -> None:
    assert mqtt_packet.decode_publish is broker._fast_decode_publish


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311])
def test_every_packet_decodes_as_paho_decodes_it(protocol: int) -> None:
    topics = [b"", b"m1/realtime", "é/x".encode()]
    props = [b"\x00", b"\x02\x01\x01", b"\x05\x02\x00\x00\x00\x10", b""]
    payloads = [b"", b"{}", b"\x00" * 300]
    for topic, qos, prop, payload, flags in itertools.product(
        topics, (0, 1, 2), props, payloads, (0, 1, 8, 9)
    ):
        header = 0x30 | qos << 1 | flags
        packet = _packet(topic, qos, prop, payload)
        assert _decoded(broker._fast_decode_publish, header, packet, protocol) == _decoded(
            broker._paho_decode_publish, header, packet, protocol
        ), (header, bytes(packet))


@pytest.mark.parametrize("packet", [b"", b"\x00", b"\x00\x10ab", b"\x00\x01a\x00", b"\x00\x01a"])
def test_malformed_packets_fail_as_in_paho(packet: bytes) -> None:
    for header in (0x30, 0x32):
        ours = _decoded(broker._fast_decode_publish, header, bytearray(packet), 5)
        assert ours == _decoded(broker._paho_decode_publish, header, bytearray(packet), 5)
