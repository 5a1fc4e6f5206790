"""What the gateway is told at start: the token and what it guards, the WebSocket limits.

One token (``GATEWAY_API_TOKEN``) guards everything that needs guarding: replay and delete
always, reads (``read_requires_token``) and the live stream (``stream_requires_token``) when
asked. Asking for a token with none to compare against is a configuration error, refused here
so that a gateway never starts open by mistake, nor closed to everyone.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor_gateway.security import parse_origin

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """``api_token``: needed by replay and delete, and by reads and ``/ws`` when
    ``read_requires_token`` / ``stream_requires_token``; None disables replay and delete.
    ``allowed_origins``: browser origins (``scheme://host[:port]``) that may open ``/ws``
    besides the gateway's own; ``"*"`` allows any. ``max_connections``: open WebSocket
    connections, past which new ones are refused. ``client_buffer`` and
    ``client_buffer_bytes``: how far (messages, bytes) a WebSocket client may fall behind before
    it is dropped. ``auth_timeout_s``: how long ``/ws`` waits for the first message's token."""

    api_token: str | None = None
    read_requires_token: bool = False
    stream_requires_token: bool = False
    allowed_origins: tuple[str, ...] = ()
    max_connections: int = 1_000
    client_buffer: int = 1_000
    client_buffer_bytes: int = 4 * MiB
    auth_timeout_s: float = 5.0
    sample_interval_s: float = 2.0
    history_s: float = 600.0

    def __post_init__(self) -> None:
        if self.api_token is None and (self.read_requires_token or self.stream_requires_token):
            field = "read" if self.read_requires_token else "stream"
            raise ValueError(f"{field}_requires_token needs an api_token, and none is configured")
        for origin in self.allowed_origins:
            if origin != "*":
                parse_origin(origin)  # raises ValueError on nonsense
        if self.max_connections < 1 or self.client_buffer < 1 or self.client_buffer_bytes < 1:
            raise ValueError("max_connections, client_buffer and client_buffer_bytes must be > 0")
