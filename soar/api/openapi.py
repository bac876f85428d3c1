"""The OpenAPI 3.1 document, generated from the route table and its pydantic models (never
written by hand, so it cannot drift from what the server does)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

import soar
from soar.api.errors import ErrorResponse
from soar.api.routing import Route

_REF = "#/components/schemas/{model}"
_ERRORS = {
    400: "The request is malformed (not JSON, a bad header)",
    401: "No token or session, or one that is unknown, revoked or expired",
    403: "The caller's role may not do this, or a console change lacks its CSRF token",
    404: "No such object",
    409: "The object is not in a state that allows this",
    413: "The body is over the size limit",
    422: "The body or query does not fit its schema, or was refused (the reason is given)",
    503: "The store is unavailable or the request took too long",
}


def document(routes: list[Route]) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for route in routes:
        if route.body is not None:
            wanted.append((route.body, "validation"))
        if route.query is not None:
            wanted.append((route.query, "validation"))
        if route.response is not None:
            wanted.append((route.response, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, definitions = models_json_schema(unique, ref_template=_REF)
    schemas: dict[str, Any] = definitions.get("$defs", {})

    def ref(model: type[BaseModel], mode: Literal["validation", "serialization"]) -> Any:
        return refs[(model, mode)]

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.full_path, {})[route.method.lower()] = _operation(route, ref)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "soar API",
            "version": soar.__version__,
            "description": "Playbooks, runs, approvals, alerts and the audit log of soar. "
            "Authenticate with `Authorization: Bearer <token>` (`soar tokens create`).",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "soar_session"},
            },
        },
    }


def _operation(route: Route, ref: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "tags": [route.tag],
        "security": [] if route.roles is None else [{"token": []}, {"session": []}],
    }
    if route.roles is not None:
        roles = sorted({"admin", *(r.value for r in route.roles)})
        operation["description"] = f"Roles: {', '.join(roles)}."
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in route.path_params
    ]
    if route.query is not None:
        query_schema = route.query.model_json_schema(ref_template=_REF)
        required = set(query_schema.get("required", []))
        for name, schema in query_schema.get("properties", {}).items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": schema}
            )
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(route.body, "validation")}},
        }
    elif route.raw_body is not None:
        operation["requestBody"] = {"required": True, "content": {route.raw_body: {"schema": {}}}}
    responses: dict[str, Any] = {}
    if route.stream is not None:
        responses[str(route.status)] = {
            "description": "OK",
            "content": {route.stream: {"schema": {}}},
        }
    elif route.response is not None:
        responses[str(route.status)] = {
            "description": "OK",
            "content": {"application/json": {"schema": ref(route.response, "serialization")}},
        }
    errors = set(route.errors) | {503}
    if route.roles is not None:
        errors |= {401, 403}
    if route.body is not None or route.raw_body is not None:
        errors |= {400, 413, 422}
    if route.query is not None:
        errors.add(422)
    error_schema = ref(ErrorResponse, "serialization")
    for status in sorted(errors):
        responses[str(status)] = {
            "description": _ERRORS.get(status, "Refused"),
            "content": {"application/json": {"schema": error_schema}},
        }
    operation["responses"] = responses
    return operation
