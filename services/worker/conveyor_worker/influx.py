"""The InfluxDB sink: one write per batch of jobs through the v2 write API.

Works with InfluxDB 2.x/3.x and with 1.8+, whose v2-compatible endpoint takes the bucket as
``<database>/<retention policy>`` and the token as ``<user>:<password>``.

A write fails in one of two ways, told apart here because they need opposite handling:

- the data: HTTP 400 (InfluxDB 1.8: ``unable to parse '<line>': ...``, ``partial write: field
  type conflict ...``, ``points beyond retention policy``; 2.x: a JSON body), 422, or 413 (a
  request too large, which splitting cures) -> :class:`PointsRejected`. Retrying the same
  points fails the same way; the caller finds the jobs that carry them (``isolating.py``).
- everything else: no connection, a timeout, 5xx, 429, or 401/403/404 (a wrong token, bucket
  or organisation, which no job can fix) -> :class:`SinkUnavailable`, and the batch is postponed.
  So is a 400 about one of InfluxDB 1.8's capacity limits (``partial write: max-values-per-tag
  limit exceeded (100000/100000): measurement="realtime" tag="machine" value="..."``,
  ``partial write: max-series-per-database limit exceeded: (1000000)``) ->
  :class:`InfluxLimitReached`: a device inventing machine ids or signal names exhausts them,
  and then a legitimate new machine is refused too; it must not be dead-lettered as bad data.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from conveyor_worker.errors import InfluxLimitReached, PointsRejected, SinkUnavailable, shown

log = logging.getLogger(__name__)

REFUSES_DATA = frozenset({400, 413, 422})
"""HTTP statuses with which InfluxDB refuses the data written rather than the request."""

_HINTS = {
    401: "check INFLUX_TOKEN (InfluxDB 1.8: <user>:<password>)",
    403: "check that INFLUX_TOKEN may write to INFLUX_BUCKET",
    404: "check INFLUX_BUCKET (InfluxDB 1.8: <database>/<retention policy>) and INFLUX_ORG",
}

LIMITS = {
    "max-values-per-tag limit exceeded": "max-values-per-tag",
    "max-series-per-database limit exceeded": "max-series-per-database",
}
"""InfluxDB 1.8's answers at its capacity limits (``tsdb``), and the setting of each."""


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
        """Write points. Raise :class:`PointsRejected` if InfluxDB refuses (some of) them as
        bad data, :class:`SinkUnavailable` if it could not be asked or failed otherwise."""
        if not lines:
            return
        started = time.perf_counter()
        try:
            ok = await self._api.write(
                bucket=self.config.bucket,
                org=self.config.org,
                # One body, not a list: the client handles each list item on its own (two
                # isinstance chains and an encode per line, a tenth of a realtime worker).
                record="\n".join(lines).encode(),
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            raise self._refusal(exc) from exc
        except Exception as exc:
            raise SinkUnavailable(
                f"InfluxDB at {self.config.url} did not take the write: "
                f"{shown(str(exc) or type(exc).__name__)}"
            ) from exc
        if ok is False:
            raise SinkUnavailable(f"InfluxDB at {self.config.url} refused the write")
        self.last_write_s = time.perf_counter() - started

    def _refusal(self, exc: ApiException) -> PointsRejected | SinkUnavailable:
        detail = server_message(exc.body) or str(exc.reason or "")
        return refusal(int(exc.status or 0), detail, url=self.config.url)

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]


def refusal(status: int, detail: str, *, url: str) -> PointsRejected | SinkUnavailable:
    """What an error answer of InfluxDB at ``url`` means: bad data, a limit, or an outage."""
    if status in REFUSES_DATA:
        limit = next((name for text, name in LIMITS.items() if text in detail), None)
        if limit is not None:
            return InfluxLimitReached(
                f"InfluxDB at {url} is at its {limit} limit and refuses new series "
                f"(HTTP {status}: {shown(detail)}); 1.8 then writes none of the request. Raise "
                f"{limit} in the [data] section of influxdb.conf (0: no limit; or the "
                f"environment variable INFLUXDB_DATA_{limit.upper().replace('-', '_')}), or "
                "find the sender inventing machine ids or signal names and drop its series "
                "(DROP SERIES FROM <measurement> WHERE <tag> = '<value>'). Retrying"
            )
        return PointsRejected(status=status, detail=detail)
    hint = _HINTS.get(status, "retrying")
    return SinkUnavailable(f"InfluxDB at {url} answered HTTP {status}: {shown(detail)} ({hint})")


def server_message(body: object) -> str:
    """The text of an InfluxDB error body: ``{"error": ...}`` (1.8), ``{"message": ...}``
    (2.x, 3.x), else the body as text."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str):
        return ""
    try:
        doc = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(doc, dict):
        for key in ("error", "message"):
            if isinstance(doc.get(key), str):
                return str(doc[key])
    return body.strip()
