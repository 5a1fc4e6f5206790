"""conveyor_ingestor: MQTT in, reliable-queue jobs out, acknowledged only once Redis has them."""

from conveyor_messages.contract import Message

from conveyor_ingestor.broker import (
    PACKET_HEADER_ROOM,
    BrokerConfig,
    Subscriber,
    broker_config,
    max_packet_size,
)
from conveyor_ingestor.errors import BrokerConfigError, IngestorError, InvalidPayload, RoutingError
from conveyor_ingestor.ingesting import DEAD_LETTER_QUEUE, IngestOptions, Ingestor
from conveyor_ingestor.metrics import IngestMetrics
from conveyor_ingestor.payloads import parse_message
from conveyor_ingestor.producers import enqueue_alert, enqueue_realtime
from conveyor_ingestor.routing import DEFAULT_ROUTES, Route, RoutingTable

__all__ = [
    "DEAD_LETTER_QUEUE",
    "DEFAULT_ROUTES",
    "PACKET_HEADER_ROOM",
    "BrokerConfig",
    "BrokerConfigError",
    "IngestMetrics",
    "IngestOptions",
    "Ingestor",
    "IngestorError",
    "InvalidPayload",
    "Message",
    "Route",
    "RoutingError",
    "RoutingTable",
    "Subscriber",
    "broker_config",
    "enqueue_alert",
    "enqueue_realtime",
    "max_packet_size",
    "parse_message",
]
