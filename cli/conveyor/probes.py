"""``/healthz``, ``/readyz`` and ``/metrics`` for a service, on a tiny asyncio HTTP server.

Services expose whether they are alive and ready and a Prometheus registry; the entry point
serves them here, so the service packages need no web framework.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], dict[str, bool]]


class ProbeServer:
    """``ready()`` returns named checks; ready means all true. ``alive()`` likewise."""

    def __init__(
        self, *, registry: CollectorRegistry, ready: Check, alive: Check | None = None
    ) -> None:
        self.registry = registry
        self.ready = ready
        self.alive = alive or (lambda: {"running": True})
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("probes and metrics on http://%s:%d", host, self.port)

    async def start_or_warn(self, host: str, port: int) -> None:
        """Start, or log why not (a port in use on a workstation) and run without probes."""
        try:
            await self.start(host, port)
        except OSError as exc:
            log.warning(
                "probes and metrics not served on %s:%d (%s): set PROBE_PORT", host, port, exc
            )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode(errors="replace").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            status, ctype, body = self._route(path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _route(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path in ("/healthz", "/readyz"):
            checks = (self.alive if path == "/healthz" else self.ready)()
            ok = all(checks.values())
            body = json.dumps({"status": "ok" if ok else "unavailable", "checks": checks}).encode()
            return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body
        return "404 Not Found", "text/plain", b"not found: try /healthz, /readyz or /metrics\n"
