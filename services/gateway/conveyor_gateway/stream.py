"""``/ws``: one WebSocket client of the live stream, from its handshake to its goodbye.

Before a client gets anything it passes, in order:

1. its ``Origin``: absent (not a browser), the gateway's own, or allowed - else the handshake
   is answered 403 with the reason;
2. the connection cap: past ``max_connections`` open sockets, closed with 1013 and a reason;
3. no token in the URL (URLs land in proxies' access logs): closed with 1008, saying how to
   send it instead;
4. when the stream requires the token: an ``Authorization: Bearer`` header, or a first message
   ``{"action": "auth", "token": "..."}`` within ``auth_timeout_s`` - else closed with 4401.

The client says what it wants in the query string (``?machines=a,b&kinds=realtime,alert``)
and may change it with ``{"action": "subscribe", "machines": [...], "kinds": [...]}``.
Control messages carry ``kind`` ``subscribed``, ``authenticated`` or ``error``; data messages
are the workers' events as published (``kind`` ``realtime``, ``tech`` or ``alert``). A client
that falls a whole buffer behind (in messages or in bytes) is told, when its socket still takes
a message, and closed with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import anyio
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from conveyor_gateway.config import GatewayConfig
from conveyor_gateway.live import LiveClient, Subscription
from conveyor_gateway.security import bearer_token, origin_allowed, token_matches
from conveyor_gateway.state import GatewayState, state_of

log = logging.getLogger(__name__)

WS_POLICY_CLOSE = 1008  # policy violation: a bad request or a token in the URL
WS_SLOW_CLOSE = 1013  # "try again later": dropped as too slow, or the gateway is full
WS_AUTH_CLOSE = 4401
SUBSCRIBE_HELP = 'ignored: send {"action": "subscribe", "machines": ["*"], "kinds": ["alert"]}'
AUTH_HELP = (
    'send {"action": "auth", "token": "<GATEWAY_API_TOKEN>"} as the first message, '
    "or an 'Authorization: Bearer <GATEWAY_API_TOKEN>' header"
)


class StreamGate:
    """The open sockets of ``/ws`` (from accept to close, authenticated or not)."""

    def __init__(self) -> None:
        self.open = 0


async def stream(ws: WebSocket) -> None:
    """The ``/ws`` endpoint, guarded as the module docstring says."""
    gateway = state_of(ws)
    cfg, metrics, gate = gateway.config, gateway.metrics, gateway.gate
    origin = ws.headers.get("origin")
    if not origin_allowed(origin, ws.headers.get("host"), cfg.allowed_origins):
        metrics.ws_refused.labels("origin").inc()
        log.info("refused a WebSocket client from origin %r", origin[:200] if origin else "")
        await _deny(
            ws,
            f"origin {origin} may not open the stream: list it in GATEWAY_ALLOWED_ORIGINS",
        )
        return
    if gate.open >= cfg.max_connections:
        metrics.ws_refused.labels("capacity").inc()
        log.warning("refused a WebSocket client: %d connections open", gate.open)
        await ws.accept()
        await _goodbye(ws, WS_SLOW_CLOSE, "the gateway is full; try again later")
        return
    gate.open += 1
    try:
        await ws.accept()
        if "token" in ws.query_params:
            metrics.ws_refused.labels("token_in_url").inc()
            await _goodbye(
                ws,
                WS_POLICY_CLOSE,
                "token in the URL: send it in the first message or a header",
                "a token in the URL is refused (URLs end up in access logs): " + AUTH_HELP,
            )
            return
        if cfg.stream_requires_token and not await _authenticated(ws, cfg):
            metrics.ws_refused.labels("auth").inc()
            return
        await _subscribe_and_serve(ws, gateway)
    finally:
        gate.open -= 1


async def _authenticated(ws: WebSocket, cfg: GatewayConfig) -> bool:
    """The header's token, or the first message's; closes the socket when it fails."""
    given = bearer_token(ws.headers)
    if given is None:
        try:
            message = await asyncio.wait_for(ws.receive(), cfg.auth_timeout_s)
        except TimeoutError:
            await _goodbye(
                ws,
                WS_AUTH_CLOSE,
                f"no token within {cfg.auth_timeout_s:g} s",
                f"this stream requires the token: within {cfg.auth_timeout_s:g} s, {AUTH_HELP}",
            )
            return False
        if message["type"] == "websocket.disconnect":
            return False
        doc = _json(message.get("text") or message.get("bytes") or "")
        if not isinstance(doc, dict) or doc.get("action") != "auth":
            await _goodbye(ws, WS_AUTH_CLOSE, "the first message must be the token", AUTH_HELP)
            return False
        token = doc.get("token")
        given = token if isinstance(token, str) else ""
    if not token_matches(given, cfg.api_token):
        await _goodbye(ws, WS_AUTH_CLOSE, "wrong token", "wrong token: " + AUTH_HELP)
        return False
    return True


async def _subscribe_and_serve(ws: WebSocket, gateway: GatewayState) -> None:
    cfg, hub = gateway.config, gateway.hub
    try:
        subscription = Subscription.parse(
            _split(ws.query_params.get("machines")), _split(ws.query_params.get("kinds"))
        )
    except ValueError as exc:
        await ws.send_json({"kind": "error", "error": str(exc)})
        await ws.close(WS_POLICY_CLOSE)
        return
    live = hub.connect(subscription)
    try:
        await ws.send_json(
            {
                "kind": "subscribed",
                "subscription": subscription.to_dict(),
                "buffer": cfg.client_buffer,
                "buffer_bytes": cfg.client_buffer_bytes,
            }
        )
        await _serve(ws, live, gateway)
    finally:
        hub.disconnect(live)


async def _serve(ws: WebSocket, live: LiveClient, gateway: GatewayState) -> None:
    """Until the client leaves or falls behind: send its messages, read its requests."""
    cfg = gateway.config
    async with anyio.create_task_group() as tasks:

        async def send() -> None:
            try:
                while True:
                    await ws.send_text(await live.take())
            except (WebSocketDisconnect, OSError, RuntimeError) as exc:
                log.info("WebSocket client gone while sending (%r)", exc)
            tasks.cancel_scope.cancel()

        async def receive() -> None:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await _answer(ws, live, cfg, message.get("text") or message.get("bytes") or "")
            tasks.cancel_scope.cancel()

        async def watch() -> None:
            await live.lagging.wait()
            tasks.cancel_scope.cancel()

        tasks.start_soon(send)
        tasks.start_soon(receive)
        tasks.start_soon(watch)
    if live.lagging.is_set():
        gateway.metrics.slow_clients.inc()
        log.warning(
            "dropped a WebSocket client %d messages (%d bytes) behind",
            live.buffer.qsize(),
            live.queued_bytes,
        )
        with contextlib.suppress(Exception):
            reason = (
                f"too slow: more than {cfg.client_buffer} messages or "
                f"{cfg.client_buffer_bytes} bytes behind; reconnect"
            )
            await asyncio.wait_for(ws.send_json({"kind": "error", "error": reason}), 1.0)
            await asyncio.wait_for(ws.close(WS_SLOW_CLOSE, reason[:120]), 1.0)


async def _answer(ws: WebSocket, live: LiveClient, cfg: GatewayConfig, text: str | bytes) -> None:
    """A request once subscribed: ``subscribe``, or ``auth`` (acknowledged, so that a
    client may always send its token first, whether or not the stream requires it)."""
    doc = _json(text)
    action = doc.get("action") if isinstance(doc, dict) else None
    if action == "auth" and isinstance(doc, dict):
        token = doc.get("token")
        given = token if isinstance(token, str) else None
        if not cfg.stream_requires_token or token_matches(given, cfg.api_token):
            await ws.send_json({"kind": "authenticated"})
        else:
            await ws.send_json({"kind": "error", "error": "ignored: wrong token"})
        return
    if action != "subscribe" or not isinstance(doc, dict):
        await ws.send_json({"kind": "error", "error": SUBSCRIBE_HELP})
        return
    try:
        live.subscription = Subscription.parse(doc.get("machines"), doc.get("kinds"))
    except (ValueError, TypeError, AttributeError) as exc:
        await ws.send_json({"kind": "error", "error": f"ignored: {exc}"})
        return
    await ws.send_json({"kind": "subscribed", "subscription": live.subscription.to_dict()})


async def _deny(ws: WebSocket, error: str) -> None:
    """Refuse the handshake: HTTP 403 with the reason where the server can say it."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"error": error, "status": 403}, 403))
    else:
        await ws.close(WS_POLICY_CLOSE)


async def _goodbye(ws: WebSocket, code: int, reason: str, error: str | None = None) -> None:
    """Tell an accepted client why (a message, then the close frame's reason) and close."""
    with contextlib.suppress(Exception):
        await ws.send_json({"kind": "error", "error": error or reason})
        await ws.close(code, reason[:120])  # a close reason holds 123 bytes


def _json(raw: str | bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _split(raw: str | None) -> list[str] | None:
    return raw.split(",") if raw is not None else None
