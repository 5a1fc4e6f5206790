"""The InfluxDB sink: one write per batch of jobs through the v2 write API.

Works with InfluxDB 2.x/3.x and with 1.8+, whose v2-compatible endpoint takes the bucket as
``<database>/<retention policy>`` and the token as ``<user>:<password>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision

from conveyor_worker.errors import SinkUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InfluxConfig:
    url: str
    bucket: str
    org: str = "-"
    token: str = field(default="", repr=False)
    timeout_s: float = 10.0


class InfluxSink:
    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        self._client = InfluxDBClientAsync(
            url=config.url,
            token=config.token,
            org=config.org,
            timeout=int(config.timeout_s * 1000),
            enable_gzip=False,
        )
        self._api = self._client.write_api()
        self.last_write_s = 0.0

    async def write(self, lines: Sequence[str]) -> None:
        """Write points; raise SinkUnavailable if InfluxDB does not take them."""
        if not lines:
            return
        started = time.perf_counter()
        try:
            ok = await self._api.write(
                bucket=self.config.bucket,
                org=self.config.org,
                record=list(lines),
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]
            )
        except Exception as exc:
            raise SinkUnavailable(
                f"InfluxDB at {self.config.url} did not take the write: {exc}"
            ) from exc
        if ok is False:
            raise SinkUnavailable(f"InfluxDB at {self.config.url} refused the write")
        self.last_write_s = time.perf_counter() - started

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
