"""The gateway's guards that are not about one endpoint: response headers every answer
carries, the bearer token, and which browser origins may open the live stream.

Headers: every HTTP response says ``X-Content-Type-Options: nosniff`` and forbids framing
(``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for browsers that predate it). The
dashboard page gets a full Content-Security-Policy (its scripts, styles and connections from
its own origin only, no inline code, no plugins); every other answer gets the strictest one
(``default-src 'none'``), since it is data, never a document to render.

Origins: a browser sends ``Origin`` on every WebSocket handshake and lets any page open a
socket to any host, so a page from elsewhere could read the stream with the cookies or network
position of whoever views it. The stream therefore admits its own origin (the one named by
``Host``), the allow-list, and clients without an ``Origin`` (not a browser, so not a page).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response, whoever produced it (an
    endpoint, an error handler, the static files or the server error page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            # websocket.http.response.start: a refused handshake answered as HTTP.
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                headers = MutableHeaders(scope=message)
                html = headers.get("content-type", "").startswith("text/html")
                headers["Content-Security-Policy"] = PAGE_CSP if html else DATA_CSP
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def bearer_token(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def token_matches(given: str | None, expected: str | None) -> bool:
    """In constant time; nothing matches when no token is configured."""
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def parse_origin(origin: str) -> tuple[str, str, int]:
    """``scheme://host[:port]`` as (scheme, host, port), the default port filled in. Raises
    ValueError for anything else (a path, no host, ``null``)."""
    parts = urlsplit(origin.strip().rstrip("/").lower())
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path or parts.query:
        raise ValueError(f"{origin!r} is not an origin: use scheme://host[:port]")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError(f"{origin!r} has a bad port") from None
    return parts.scheme, parts.hostname, port


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """Whether a WebSocket handshake with this ``Origin`` and ``Host`` may go on."""
    if origin is None:
        return True  # not a browser: it cannot be a page from another site
    listed = set(allowed)
    if "*" in listed:
        return True
    try:
        scheme, hostname, port = parse_origin(origin)
    except ValueError:
        return False  # "null" (sandboxed frames, files) and other oddities
    for entry in listed:
        if parse_origin(entry) == (scheme, hostname, port):
            return True
    if host is None:
        return False
    # Same origin: the page came from the host it now connects to. The scheme is not compared:
    # behind a proxy that ends TLS the gateway sees http while the page was https.
    target = urlsplit(f"//{host.strip().lower()}")
    try:
        target_port = target.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return False
    return target.hostname == hostname and target_port == port
