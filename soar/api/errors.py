"""Every error the API answers is JSON: `{"error": {"code", "message", "details"?}}`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError


class ApiError(Exception):
    """A refusal with its HTTP status and a stable snake_case `code` for programs."""

    def __init__(
        self, status: int, code: str, message: str, details: list[Any] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        super().__init__(message)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[Any] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    return web.json_response(
        body.model_dump(mode="json", exclude_none=True), status=status, headers=headers
    )


def invalid_body(exc: ValidationError) -> ApiError:
    """A body that does not fit its model: 422 naming each field, never echoing the values."""
    details = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "problem": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return ApiError(422, "invalid_body", "the request body does not fit its schema", details)


# aiohttp's own refusals (no route, wrong method, body too large), by status
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}
