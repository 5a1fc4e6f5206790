"""Who may call an operation, one of three levels written in the route table
(:mod:`conveyor_gateway.routes`), which both enforces it and states it in the OpenAPI
document's ``security``:

- ``OPEN``: probes, metrics, the document and the dashboard - they hold no plant data;
- ``READ``: stats, machines, alerts, dead letters - plant data: the API token when the gateway
  is started with ``read_requires_token``;
- ``CHANGE``: replay and delete - the API token always; without one configured they are off.

The check runs before anything else in the request, so that an unauthenticated caller learns
nothing (not even which queues exist, nor which parameters are wrong).
"""

from __future__ import annotations

import enum

from starlette.requests import Request

from conveyor_gateway.config import GatewayConfig
from conveyor_gateway.errors import ApiError
from conveyor_gateway.security import bearer_token, token_matches
from conveyor_gateway.state import state_of


class Access(enum.Enum):
    OPEN = "open"
    READ = "read"
    CHANGE = "change"

    def needs_token(self, config: GatewayConfig) -> bool:
        """Whether this gateway asks for the bearer token here."""
        return self is Access.CHANGE or (self is Access.READ and config.read_requires_token)

    def check(self, request: Request) -> None:
        """Raise the 401 (or 403) that says what to send, unless the request may go on."""
        if self is Access.OPEN:
            return
        config = state_of(request).config
        if self is Access.CHANGE:
            _check_change(request, config)
        elif config.read_requires_token and not token_matches(
            bearer_token(request.headers), config.api_token
        ):
            raise ApiError(
                401,
                "this gateway requires its API token for reads: send "
                "'Authorization: Bearer <GATEWAY_API_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )


def _check_change(request: Request, config: GatewayConfig) -> None:
    if config.api_token is None:
        raise ApiError(
            403,
            "replay and delete are disabled: start the gateway with GATEWAY_API_TOKEN set, "
            "then send 'Authorization: Bearer <token>'",
        )
    if not token_matches(bearer_token(request.headers), config.api_token):
        raise ApiError(
            401,
            "missing or wrong token: send 'Authorization: Bearer <GATEWAY_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
