"""Reading the workers' points back from InfluxDB, for the trend and control charts.

The gateway asks InfluxQL over the v1 ``/query`` endpoint, which InfluxDB 1.8 serves natively
and 2.x/3.x through their v1 compatibility (a DBRP mapping of the bucket): the same settings as
the workers' (``INFLUX_URL``, ``INFLUX_BUCKET`` as ``<database>/<retention policy>``,
``INFLUX_TOKEN``). Names a request carries (machine, signal, characteristic) go as bound
parameters, never into the query's text; numbers are formatted from ints.

Every failure is :class:`InfluxUnavailable`, with what to check: the endpoint answers 503 and
the rest of the dashboard keeps working.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

MAX_ANSWER_BYTES = 32 * 1024 * 1024
"""Most bytes read of one answer (the endpoints bound the rows far below this)."""
MAX_QUERIES = 4
"""Queries one gateway has InfluxDB answer at once; more wait their turn (a page asks for a
control chart per characteristic at once)."""


class InfluxUnavailable(Exception):
    """InfluxDB could not answer; the message says why and what to check."""


@dataclass(frozen=True, slots=True)
class InfluxSource:
    """Where the points are: ``url``, ``bucket`` (``<database>/<retention policy>``, or a
    database alone for its default policy) and ``token`` (1.8: ``<user>:<password>``)."""

    url: str
    bucket: str
    token: str = field(default="", repr=False)
    timeout_s: float = 10.0

    @property
    def database(self) -> str:
        return self.bucket.partition("/")[0]

    @property
    def retention_policy(self) -> str:
        return self.bucket.partition("/")[2]


class InfluxReader:
    """InfluxQL queries against one :class:`InfluxSource`; :meth:`close` when done."""

    def __init__(self, source: InfluxSource) -> None:
        self.source = source
        self._session: aiohttp.ClientSession | None = None
        self._turns = asyncio.Semaphore(MAX_QUERIES)
        parts = urlsplit(source.url)
        self._credentials_in_url = parts.username is not None or parts.password is not None
        # What an answer may say of where InfluxDB is: never a password in the URL.
        self._where = f"InfluxDB at {parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.source.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def series(self, query: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The series of one InfluxQL statement (``name``, ``tags``, ``columns``, ``values``,
        times in epoch milliseconds); empty when nothing matched."""
        src = self.source
        # GET: InfluxDB 1.x runs it read-only, whatever the query says.
        query_string = {"db": src.database, "q": query, "epoch": "ms", "params": json.dumps(params)}
        if src.retention_policy:
            query_string["rp"] = src.retention_policy
        headers = {"Authorization": f"Token {src.token}"} if src.token else {}
        where = self._where
        if self._credentials_in_url:
            raise InfluxUnavailable(
                f"{where}: INFLUX_URL has a user and password in it; put them in INFLUX_TOKEN "
                "as <user>:<password> instead"
            )
        try:
            async with (
                self._turns,
                self._http().get(
                    src.url.rstrip("/") + "/query", params=query_string, headers=headers
                ) as answer,
            ):
                status = answer.status
                body = bytearray()
                async for chunk in answer.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        break
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # ValueError: a bad URL
            raise InfluxUnavailable(
                f"{where} did not answer ({type(exc).__name__}); check INFLUX_URL and that "
                "InfluxDB runs"
            ) from None
        if status in (401, 403):
            raise InfluxUnavailable(
                f"{where} refused the gateway's credentials ({status}): check INFLUX_TOKEN "
                "(InfluxDB 1.8: <user>:<password>) and that it may read INFLUX_BUCKET"
            )
        if len(body) > MAX_ANSWER_BYTES:
            raise InfluxUnavailable(f"{where} answered more than {MAX_ANSWER_BYTES:,} bytes")
        try:
            doc = json.loads(body)
            result = doc["results"][0] if "results" in doc else doc
        except (ValueError, KeyError, IndexError, TypeError):
            raise InfluxUnavailable(
                f"{where} answered {status} without InfluxQL results: check that INFLUX_URL "
                "points at InfluxDB"
            ) from None
        if "error" in result or status >= 300:
            error = str(result.get("error", status))[:300]
            hint = " (check INFLUX_BUCKET)" if "database not found" in error else ""
            raise InfluxUnavailable(f"{where} could not answer: {error}{hint}")
        return list(result.get("series") or [])
