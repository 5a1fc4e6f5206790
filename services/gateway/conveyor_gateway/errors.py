"""How the gateway answers what went wrong: always JSON ``{"error": str, "status": int}``
(:class:`~conveyor_gateway.models.Error`), the error saying what to do about it.

- :class:`ApiError` - raised by the endpoints; its ``detail`` is the answer's ``error``.
- Starlette's own 404 (no route) and 405 (a route without that method) point at the
  OpenAPI document; they never echo more than the request's path and method.
- The queue library's ``QueueUnavailable`` and redis' connection and timeout errors are a 503
  with ``Retry-After``; its ``UsageError`` (an invalid queue name) a 400.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from conveyor_gateway.models import Error, json_response
from conveyor_gateway.state import state_of
from reliable_queue import QueueUnavailable, UsageError

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class ApiError(HTTPException):
    """An error answered as JSON; ``detail`` says what to do."""


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if exc.status_code == 404 and not isinstance(exc, ApiError):
        detail = f"no such endpoint {request.url.path}: see /openapi.json"
    elif exc.status_code == 405 and not isinstance(exc, ApiError):
        detail = f"{request.method} is not allowed on {request.url.path}: see /openapi.json"
    return json_response(
        Error(error=detail, status=exc.status_code),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def unavailable(request: Request, exc: Exception) -> Response:
    state_of(request).metrics.redis_errors.inc()
    return json_response(
        Error(error=f"{exc}; check that Redis runs and REDIS_URL points at it", status=503),
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def usage(request: Request, exc: Exception) -> Response:
    return json_response(Error(error=str(exc), status=400), status_code=400)


EXCEPTION_HANDLERS: Mapping[type[Exception], ErrorHandler] = {
    HTTPException: http_error,
    QueueUnavailable: unavailable,
    RedisConnectionError: unavailable,
    RedisTimeoutError: unavailable,
    UsageError: usage,
}
