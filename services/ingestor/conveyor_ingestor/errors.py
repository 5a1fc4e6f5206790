"""The ingestor's errors::

IngestorError
├── RoutingError        the routing table is invalid (at start; fix the configuration)
├── BrokerConfigError   MQTT_BROKER_URL or TLS/credential settings are unusable
└── InvalidPayload      one message cannot be ingested; it goes to dead:ingest
"""

from __future__ import annotations


class IngestorError(Exception):
    """Root of the ingestor's errors."""


class RoutingError(IngestorError, ValueError):
    """The routing table cannot be used."""


class BrokerConfigError(IngestorError, ValueError):
    """The broker settings cannot be used."""


class InvalidPayload(IngestorError):
    """A message that cannot be turned into a job. ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
