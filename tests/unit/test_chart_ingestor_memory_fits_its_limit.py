"""The chart's ingestor can hold, at worst, a full MQTT 5 receive window of the largest packets
it accepts plus its QoS 0 inbox; with the chart's defaults that fits its memory limit, so a
device flooding payloads just under the limit while Redis is away cannot get it OOM-killed."""

from __future__ import annotations

from pathlib import Path

import yaml
from conveyor_ingestor.broker import PACKET_HEADER_ROOM

from conveyor.settings import IngestSettings

VALUES = Path(__file__).parents[2] / "charts/conveyor/values.yaml"
UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def _bytes(quantity: str) -> int:
    for suffix, factor in UNITS.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def test_worst_case_ingestor_memory_fits_the_default_limit() -> None:
    ingestor = yaml.safe_load(VALUES.read_text())["ingestor"]
    window = ingestor["receiveMaximum"] * (ingestor["maxPayloadBytes"] + PACKET_HEADER_ROOM)
    inbox = IngestSettings.model_fields["inbox_max_bytes"].get_default(call_default_factory=True)
    limit = _bytes(ingestor["resources"]["limits"]["memory"])
    headroom = 128 * 1024**2  # the interpreter, paho, redis-py, a batch written, one validated
    assert window + inbox + headroom <= limit, (
        f"{ingestor['receiveMaximum']} x {ingestor['maxPayloadBytes'] + PACKET_HEADER_ROOM} B "
        f"+ {inbox} B + {headroom} B is over the limit of {limit} B: lower "
        "ingestor.receiveMaximum or maxPayloadBytes, or raise the limit"
    )
