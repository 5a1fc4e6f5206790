"""The gateway's OpenAPI 3.1 document, written out by hand so that it says exactly what the
endpoints accept and answer (a schemathesis run checks the two agree).

It describes the running gateway: every operation states its ``security`` - the bearer token
for replay and delete always, for reads when the gateway requires it (``read_auth``), none for
the probes and metrics.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from typing import Any

from reliable_queue.keys import QUEUE_NAME_PATTERN

_ERROR = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {
        "error": {"type": "string", "description": "what went wrong and what to do"},
        "status": {"type": "integer"},
    },
}
_INT = {"type": "integer"}
_QUEUE_STATS = {
    "type": "object",
    "required": ["pending", "processing", "delayed", "failed", "completed", "workers"],
    "properties": {
        "pending": _INT,
        "processing": _INT,
        "delayed": _INT,
        "failed": {"type": "integer", "description": "dead letters in dead:<queue>"},
        "completed": _INT,
        "enqueued": _INT,
        "retried": _INT,
        "dead_lettered": _INT,
        "recovered": _INT,
        "finished_records": _INT,
        "oldest_pending_age_s": {"type": "number"},
        "workers": {"type": "integer", "description": "live workers (heartbeat within 10 s)"},
        "completed_last_minute": _INT,
        "enqueued_last_minute": _INT,
        "rate_per_s": {"type": "number", "description": "jobs completed per second"},
        "arrival_per_s": {"type": "number", "description": "jobs enqueued per second"},
        "rate_window_s": {"type": "number", "description": "the window the rates cover (<= 60)"},
    },
}
_DEAD_LETTER = {
    "type": "object",
    "required": ["id", "queue", "data", "attempts", "reason", "error", "failed_at"],
    "properties": {
        "id": {"type": "string"},
        "queue": {"type": "string"},
        "data": {},
        "priority": _INT,
        "attempts": _INT,
        "recoveries": _INT,
        "reason": {
            "type": "string",
            "description": "retries_exhausted, permanent, timeout, lost or an ingest tag",
        },
        "error": {"type": "string"},
        "enqueued_at": {"type": "number"},
        "failed_at": {"type": "number"},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


_QUEUE_PARAM = {
    "name": "queue",
    "in": "path",
    "required": True,
    "description": "the queue name (dead:<queue> is accepted too)",
    "schema": {"type": "string", "pattern": "^(dead:)?" + QUEUE_NAME_PATTERN[1:]},
}
_UNAVAILABLE = _error("Redis is unreachable; retry later")
_AUTH = {
    "401": _error("missing or wrong bearer token"),
    "403": _error("disabled: the gateway has no GATEWAY_API_TOKEN"),
}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_OPEN: list[dict[str, list[str]]] = []  # no security requirement
_READS = ("/stats", "/stats/history", "/machines", "/machines/{machine}", "/alerts")


def _page(name: str, default: int, maximum: int) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0 if name == "offset" else 1, "maximum": maximum},
        "description": f"default {default}",
    }


@cache
def openapi_document(*, read_auth: bool = False) -> dict[str, Any]:
    """The document; with ``read_auth`` the reads require the bearer token too."""
    doc = _document()
    read_security = _BEARER if read_auth else _OPEN
    for path in _READS:
        _secure(doc["paths"][path]["get"], read_security)
    _secure(doc["paths"]["/queues/{queue}/dead"]["get"], read_security)
    for path in ("/healthz", "/readyz", "/metrics"):
        _secure(doc["paths"][path]["get"], _OPEN)
    reads = "reads need the bearer token" if read_auth else "reads are open"
    doc["info"]["description"] += (
        f" Authentication: 'Authorization: Bearer <GATEWAY_API_TOKEN>'; {reads} "
        "(GATEWAY_READ_AUTH); replay and delete always need it; /healthz, /readyz, /metrics, "
        "this document and the dashboard's files are open. The stream takes the token as its "
        'first message, {"action": "auth", "token": "..."}, or in an Authorization header, '
        "never in the URL (GATEWAY_STREAM_AUTH)."
    )
    return doc


def _secure(operation: dict[str, Any], security: list[dict[str, list[str]]]) -> None:
    operation["security"] = security
    if security:
        operation["responses"]["401"] = _error("missing or wrong bearer token")
        operation["description"] = "Needs 'Authorization: Bearer <GATEWAY_API_TOKEN>'."


def _document() -> dict[str, Any]:
    def counted(field: str) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["queue", field],
            "properties": {"queue": {"type": "string"}, field: _INT},
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor gateway",
            "version": version("conveyor"),  # the distribution's: pyproject.toml's
            "description": "Queue statistics, machines' latest values, dead letters, and the "
            "live stream at /ws (WebSocket: ?machines=a,b&kinds=realtime,tech,alert).",
        },
        "components": {
            "schemas": {"Error": _ERROR, "QueueStats": _QUEUE_STATS, "DeadLetter": _DEAD_LETTER},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/stats": {
                "get": {
                    "summary": "every queue's figures and its throughput over the last minute",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["queues", "workers"],
                                "properties": {
                                    "queues": {
                                        "type": "object",
                                        "additionalProperties": {
                                            "$ref": "#/components/schemas/QueueStats"
                                        },
                                    },
                                    "workers": {"type": "string", "enum": ["running", "stopped"]},
                                },
                            },
                            "queue statistics",
                        ),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/stats/history": {
                "get": {
                    "summary": "sampled depth and counters per queue, for sparklines",
                    "parameters": [
                        {
                            "name": "minutes",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10},
                        }
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["interval_s", "queues"],
                                "properties": {
                                    "interval_s": {"type": "number"},
                                    "queues": {
                                        "type": "object",
                                        "additionalProperties": {"type": "array"},
                                    },
                                },
                            },
                            "samples, oldest first",
                        ),
                        "422": _error("minutes out of range"),
                    },
                }
            },
            "/machines": {
                "get": {
                    "summary": "machines with cached latest values",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["machines", "truncated"],
                                "properties": {
                                    "machines": {"type": "array", "items": {"type": "string"}},
                                    "truncated": {"type": "boolean"},
                                },
                            },
                            "machine ids, sorted",
                        ),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/machines/{machine}": {
                "get": {
                    "summary": "a machine's latest values and current configuration",
                    "parameters": [
                        {
                            "name": "machine",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["machine", "values", "updated_ms", "config"],
                                "properties": {
                                    "machine": {"type": "string"},
                                    "values": {"type": "object"},
                                    "updated_ms": {"type": ["integer", "null"]},
                                    "config": {"type": ["object", "null"]},
                                },
                            },
                            "latest values",
                        ),
                        "404": _error("nothing known of this machine"),
                        "422": _error("a machine id too long"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/alerts": {
                "get": {
                    "summary": "the latest processed alerts, newest first",
                    "parameters": [_page("limit", 50, 500)],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["alerts"],
                                "properties": {"alerts": {"type": "array"}},
                            },
                            "alerts",
                        ),
                        "422": _error("limit out of range"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/queues/{queue}/dead": {
                "parameters": [_QUEUE_PARAM],
                "get": {
                    "summary": "dead letters of a queue, newest first, paged",
                    "parameters": [_page("offset", 0, 10**9), _page("limit", 50, 500)],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["queue", "total", "offset", "limit", "dead_letters"],
                                "properties": {
                                    "queue": {"type": "string"},
                                    "total": _INT,
                                    "offset": _INT,
                                    "limit": _INT,
                                    "dead_letters": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/DeadLetter"},
                                    },
                                },
                            },
                            "a page of dead letters",
                        ),
                        "400": _error("not a valid queue name"),
                        "404": _error("no such queue"),
                        "422": _error("offset or limit out of range"),
                        "503": _UNAVAILABLE,
                    },
                },
                "delete": {
                    "summary": "delete dead letters for good (all, or ?ids=a,b)",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "ids",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "comma-separated job ids; absent: every dead letter",
                        }
                    ],
                    "responses": {
                        "200": _json(
                            counted("purged"),
                            "how many were deleted",
                        ),
                        "400": _error("not a valid queue name"),
                        **_AUTH,
                        "404": _error("no such queue"),
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/queues/{queue}/dead/replay": {
                "parameters": [_QUEUE_PARAM],
                "post": {
                    "summary": "move dead letters back to the queue with fresh attempts",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "ids": {
                                            "type": "array",
                                            "items": {"type": "string"},
                                            "maxItems": 10_000,
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            counted("replayed"),
                            "how many were replayed",
                        ),
                        "400": _error("not a valid queue name"),
                        **_AUTH,
                        "404": _error("no such queue"),
                        "422": _error('the body is not {"ids": [...]}'),
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/healthz": {
                "get": {
                    "summary": "the process answers",
                    "responses": {"200": _json({"type": "object"}, "alive")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Redis answers and the live stream is subscribed",
                    "responses": {
                        "200": _json({"type": "object"}, "ready"),
                        "503": _json({"type": "object"}, "not ready, with the failing checks"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {"description": "text format", "content": {"text/plain": {}}}
                    },
                }
            },
        },
    }
