"""``/ws``: one WebSocket client of the live stream, from its subscription to its goodbye.

The client says what it wants in the query string (``?machines=a,b&kinds=realtime,alert``)
and may change it with ``{"action": "subscribe", "machines": [...], "kinds": [...]}``.
Control messages carry ``kind`` ``subscribed`` or ``error``; data messages are the workers'
events as published (``kind`` ``realtime``, ``tech`` or ``alert``). A client that falls a whole
buffer behind is told, when its socket still takes a message, and closed with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from conveyor_gateway.live import LiveClient, LiveHub, Subscription
from conveyor_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

WS_SLOW_CLOSE = 1013  # "try again later": the client fell behind and was dropped
WS_AUTH_CLOSE = 4401
SUBSCRIBE_HELP = 'ignored: send {"action": "subscribe", "machines": ["*"], "kinds": ["alert"]}'


def stream_endpoint(
    hub: LiveHub,
    metrics: GatewayMetrics,
    *,
    client_buffer: int,
    require_token: bool,
    token: str | None,
) -> Callable[[WebSocket], Awaitable[None]]:
    """The ``/ws`` endpoint. With ``require_token``, clients send ``?token=<token>`` (and
    none gets in when there is no token to compare with)."""

    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        if require_token:
            given = ws.query_params.get("token", "")
            if token is None or not hmac.compare_digest(given.encode(), token.encode()):
                await ws.send_json(
                    {
                        "kind": "error",
                        "error": "a token is required: connect to /ws?token=<GATEWAY_API_TOKEN>",
                    }
                )
                await ws.close(WS_AUTH_CLOSE)
                return
        try:
            subscription = Subscription.parse(
                _split(ws.query_params.get("machines")), _split(ws.query_params.get("kinds"))
            )
        except ValueError as exc:
            await ws.send_json({"kind": "error", "error": str(exc)})
            await ws.close(1008)
            return
        live = hub.connect(subscription)
        try:
            await ws.send_json(
                {
                    "kind": "subscribed",
                    "subscription": subscription.to_dict(),
                    "buffer": client_buffer,
                }
            )
            await _serve(ws, live)
        finally:
            hub.disconnect(live)

    async def _serve(ws: WebSocket, live: LiveClient) -> None:
        """Until the client leaves or falls behind: send its messages, read its requests."""
        async with anyio.create_task_group() as tasks:

            async def send() -> None:
                try:
                    while True:
                        await ws.send_text(await live.buffer.get())
                except (WebSocketDisconnect, OSError, RuntimeError) as exc:
                    log.info("WebSocket client gone while sending (%r)", exc)
                tasks.cancel_scope.cancel()

            async def receive() -> None:
                with contextlib.suppress(WebSocketDisconnect):
                    while True:
                        await _answer(ws, live, await ws.receive_text())
                tasks.cancel_scope.cancel()

            async def watch() -> None:
                await live.lagging.wait()
                tasks.cancel_scope.cancel()

            tasks.start_soon(send)
            tasks.start_soon(receive)
            tasks.start_soon(watch)
        if live.lagging.is_set():
            metrics.slow_clients.inc()
            log.warning("dropped a WebSocket client %d messages behind", live.buffer.qsize())
            with contextlib.suppress(Exception):
                reason = f"too slow: more than {client_buffer} messages behind; reconnect"
                await asyncio.wait_for(ws.send_json({"kind": "error", "error": reason}), 1.0)
                await asyncio.wait_for(ws.close(WS_SLOW_CLOSE, reason[:120]), 1.0)

    return stream


async def _answer(ws: WebSocket, live: LiveClient, text: str) -> None:
    """A client's request: ``{"action": "subscribe", "machines": [...], "kinds": [...]}``."""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("action") != "subscribe":
        await ws.send_json({"kind": "error", "error": SUBSCRIBE_HELP})
        return
    try:
        live.subscription = Subscription.parse(doc.get("machines"), doc.get("kinds"))
    except (ValueError, TypeError, AttributeError) as exc:
        await ws.send_json({"kind": "error", "error": f"ignored: {exc}"})
        return
    await ws.send_json({"kind": "subscribed", "subscription": live.subscription.to_dict()})


def _split(raw: str | None) -> list[str] | None:
    return raw.split(",") if raw is not None else None
