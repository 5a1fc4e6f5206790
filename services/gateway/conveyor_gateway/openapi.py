"""The gateway's OpenAPI 3.1 document, made from what the code runs: the route table
(:data:`conveyor_gateway.routes.OPERATIONS`: paths, methods, parameters with their bounds,
access) and the JSON Schema of the pydantic models the endpoints answer with
(:mod:`conveyor_gateway.models`). Nothing here repeats a path, a limit or a field; a
schemathesis run checks the document against the running gateway.

It describes one configuration: every operation states its ``security`` - the bearer token
for replay and delete always, for reads when the gateway requires it (``read_requires_token``),
none for the probes, metrics, this document and the dashboard.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

from conveyor_gateway.access import Access
from conveyor_gateway.config import GatewayConfig
from conveyor_gateway.models import Error
from conveyor_gateway.routes import OPERATIONS, Operation

_REF = "#/components/schemas/{model}"
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_NEEDS_TOKEN = "Needs 'Authorization: Bearer <GATEWAY_API_TOKEN>'."  # noqa: S105 (no secret)
_AUTH_ERRORS = {
    401: "missing or wrong bearer token",
    403: "disabled: the gateway has no GATEWAY_API_TOKEN",
}

_Refs = Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]


class _Schema(GenerateJsonSchema):
    """Pydantic's JSON Schema without a title on every field (the models keep theirs)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def openapi_document(config: GatewayConfig | None = None) -> dict[str, Any]:
    """The document for a gateway started with ``config`` (the defaults without one)."""
    cfg = config or GatewayConfig()
    refs, schemas = _schemas(OPERATIONS)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.documented_path, {})[op.method.lower()] = _operation(op, cfg, refs)
    reads = "reads need the bearer token" if cfg.read_requires_token else "reads are open"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor gateway",
            "version": version("conveyor"),  # the distribution's: pyproject.toml's
            "description": "Queue statistics, machines' latest values, dead letters, and the "
            "live stream at /ws (WebSocket: ?machines=a,b&kinds=realtime,tech,alert). "
            f"Authentication: 'Authorization: Bearer <GATEWAY_API_TOKEN>'; {reads} "
            "(GATEWAY_READ_AUTH); replay and delete always need it; /healthz, /readyz, "
            "/metrics, this document and the dashboard's files are open. The stream takes the "
            'token as its first message, {"action": "auth", "token": "..."}, or in an '
            "Authorization header, never in the URL (GATEWAY_STREAM_AUTH).",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }


def _schemas(operations: tuple[Operation, ...]) -> tuple[_Refs, dict[str, Any]]:
    """Each model's ``$ref`` and the components' schemas: answers as serialized, bodies as
    validated."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Error, "serialization")]
    for op in operations:
        if not isinstance(op.answer, str):
            wanted.append((op.answer, "serialization"))
        if op.body is not None:
            wanted.append((op.body, "validation"))
    refs, defs = models_json_schema(
        list(dict.fromkeys(wanted)), ref_template=_REF, schema_generator=_Schema
    )
    return refs, defs["$defs"]


def _operation(op: Operation, cfg: GatewayConfig, refs: _Refs) -> dict[str, Any]:
    needs_token = op.access.needs_token(cfg)
    responses = {"200": _answer(op, op.answered, refs)}
    for status, description in op.unready.items():
        responses[str(status)] = _answer(op, description, refs)
    errors = dict(op.errors)
    if needs_token:
        errors[401] = _AUTH_ERRORS[401]
    if op.access is Access.CHANGE:
        errors[403] = _AUTH_ERRORS[403]
    for status in sorted(errors):
        responses[str(status)] = _json(refs[(Error, "serialization")], errors[status])
    operation: dict[str, Any] = {
        "operationId": op.endpoint.__name__,
        "summary": op.summary,
        "security": _BEARER if needs_token else [],
    }
    if needs_token:
        operation["description"] = _NEEDS_TOKEN
    if op.parameters:
        operation["parameters"] = [p.openapi(cfg) for p in op.parameters]
    if op.body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    operation["responses"] = responses
    return operation


def _answer(op: Operation, description: str, refs: _Refs) -> dict[str, Any]:
    if isinstance(op.answer, str):
        return {"description": description, "content": {op.answer: {}}}
    return _json(refs[(op.answer, "serialization")], description)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
