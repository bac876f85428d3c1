"""Generic HTTP requests to allow-listed hosts, guarded against SSRF: `http.get` (read-only,
cached briefly) and `http.request` (any method, not idempotent). See docs/connectors/http.md."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator
from yarl import URL

from soar.connectors import ActionContext, ActionFailed, Connector, SecretMissing, TargetKind
from soar_http._client import Exchange, HttpFailure, PinnedResolver, fetch, resolve
from soar_http._guard import METADATA, Policy, Refused, SettingsError, literal_address

__all__ = [
    "METADATA",
    "SECRET_SLOTS",
    "Exchange",
    "GetRequest",
    "HttpFailure",
    "HttpRequest",
    "HttpResponse",
    "PinnedResolver",
    "Policy",
    "Refused",
    "SecretHeader",
    "http",
    "literal_address",
    "resolve",
]

http = Connector("http", doc="Generic HTTP requests to allow-listed hosts, guarded against SSRF.")

# Secrets are declared up front (the engine hands an action only what it declared): a playbook
# picks one by slot name, and `secret_hosts` says to which hosts each may be sent.
SECRET_SLOTS: Final = ("secret_1", "secret_2", "secret_3", "secret_4")
SecretSlot = Literal["secret_1", "secret_2", "secret_3", "secret_4"]
REDACTED: Final = "***"
TIMEOUT: Final = timedelta(seconds=60)
_MARGIN: Final = 0.5
_RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_FORBIDDEN_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
    }
)
_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class SecretHeader(BaseModel):
    """A header whose value is a secret, named by slot: `{secret: secret_1, prefix: "Bearer "}`."""

    model_config = ConfigDict(extra="forbid")

    secret: SecretSlot
    prefix: str = Field(default="", max_length=64)


class GetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=8192)
    method: Literal["GET", "HEAD"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    secret_headers: dict[str, SecretHeader] = Field(default_factory=dict, max_length=8)
    expect_status: list[int] = Field(
        default_factory=list, max_length=20, description="accepted statuses; empty: any 2xx"
    )
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    max_bytes: int | None = Field(default=None, ge=0, description="at most the setting's")
    follow_redirects: bool = True

    @field_validator("headers", "secret_headers")
    @classmethod
    def _header_names(cls, value: dict[str, object]) -> dict[str, object]:
        for name, header in value.items():
            if not _TOKEN.match(name):
                raise ValueError(f"not a header name: {name!r}")
            if name.lower() in _FORBIDDEN_HEADERS:
                raise ValueError(f"the header {name} cannot be set")
            text = header if isinstance(header, str) else getattr(header, "prefix", "")
            if "\r" in text or "\n" in text or "\0" in text:
                raise ValueError(f"the header {name} holds a line break")
        return value


class HttpRequest(GetRequest):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"  # type: ignore[assignment]
    json_: JsonValue = Field(default=None, alias="json", description="a JSON body")
    body: str | None = Field(default=None, max_length=10 * 1024 * 1024, description="a text body")
    send_idempotency_key: bool = Field(
        default=False, description="send the step's idempotency key as `Idempotency-Key`"
    )


class HttpResponse(BaseModel):
    status: int
    url: str = Field(description="the final URL, after redirects")
    headers: dict[str, str] = Field(description="names in lower case; repeated ones joined")
    body: str = Field(description="the body as text (UTF-8, undecodable bytes replaced)")
    data: JsonValue = Field(default=None, description="the body parsed, when it is JSON")
    size: int = Field(description="bytes of the body")
    redirects: list[str] = Field(default_factory=list)


def _policy(ctx: ActionContext) -> Policy:
    try:
        return Policy.from_settings(ctx.settings)
    except SettingsError as exc:
        raise ActionFailed(str(exc)) from None


def _secret_headers(
    ctx: ActionContext, policy: Policy, params: GetRequest
) -> tuple[dict[str, str], list[str]]:
    """The secret headers' values, refused when a secret is not bound to the URL's host."""
    values: dict[str, str] = {}
    known = [value for value in ctx.secrets.values() if value]
    if not params.secret_headers:
        return values, known
    try:
        host = (URL(params.url).raw_host or "").lower().rstrip(".")
        carried = {
            ref.secret: policy.may_carry(ref.secret, host) for ref in params.secret_headers.values()
        }
    except (ValueError, Refused):
        raise ActionFailed("refused: the URL cannot carry secrets") from None
    for name, ref in params.secret_headers.items():
        if not carried[ref.secret]:
            raise ActionFailed(
                f"the secret {ref.secret} may not be sent to {host} (see 'secret_hosts')"
            )
        try:
            values[name] = ref.prefix + ctx.secrets[ref.secret]
        except SecretMissing as exc:
            raise ActionFailed(str(exc)) from None
    return values, known


def _hide(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


async def _exchange(
    ctx: ActionContext, params: GetRequest, *, body: bytes | None, content_type: str | None
) -> HttpResponse:
    policy = _policy(ctx)
    secret_values, secrets = _secret_headers(ctx, policy, params)
    limit = (
        policy.max_bytes if params.max_bytes is None else min(params.max_bytes, policy.max_bytes)
    )
    budget = min(policy.timeout, TIMEOUT.total_seconds() - _MARGIN)
    if params.timeout_seconds is not None:
        budget = min(budget, params.timeout_seconds)
    headers = dict(params.headers)
    if content_type is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    if isinstance(params, HttpRequest) and params.send_idempotency_key:
        headers["Idempotency-Key"] = ctx.idempotency_key
    try:
        exchange = await fetch(
            policy,
            method=params.method,
            url=params.url,
            headers=headers,
            secret_headers=secret_values,
            body=body,
            max_bytes=limit,
            budget=budget,
            follow_redirects=params.follow_redirects,
        )
    except Refused as exc:
        raise ActionFailed(_hide(f"refused: {exc.message}", secrets)) from None
    except HttpFailure as exc:
        raise ActionFailed(_hide(exc.message, secrets), retryable=exc.retryable) from None
    accepted = params.expect_status or list(range(200, 300))
    if exchange.status not in accepted:
        raise ActionFailed(
            _hide(f"{params.method} {exchange.url} answered {exchange.status}", secrets),
            retryable=exchange.status in _RETRYABLE_STATUS,
        )
    return _response(exchange, secrets)


def _response(exchange: Exchange, secrets: list[str]) -> HttpResponse:
    headers: dict[str, str] = {}
    for name, value in exchange.headers:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    text = exchange.body.decode("utf-8", errors="replace")
    data: JsonValue = None
    if "json" in headers.get("content-type", "") and text.strip():
        try:
            data = json.loads(_hide(text, secrets))
        except ValueError:
            data = None
    return HttpResponse(
        status=exchange.status,
        url=_hide(exchange.url, secrets),
        headers={k: _hide(v, secrets) for k, v in headers.items()},
        body=_hide(text, secrets),
        data=data,
        size=len(exchange.body),
        redirects=[_hide(r, secrets) for r in exchange.redirects],
    )


@http.action(
    secrets=SECRET_SLOTS,
    idempotent=True,
    timeout=TIMEOUT,
    target=TargetKind.SERVICE,
    target_field="url",
    cache_ttl=timedelta(seconds=30),
)
async def get(ctx: ActionContext, params: GetRequest) -> HttpResponse:
    """GET (or HEAD) a URL on an allow-listed host. Read-only.

    Retried freely; its output may be reused for 30 s. Fails on a status outside
    `expect_status` (default 2xx): retryable for 408, 425, 429 and 5xx gateways, final
    otherwise."""
    return await _exchange(ctx, params, body=None, content_type=None)


@http.action(
    secrets=SECRET_SLOTS,
    idempotent=False,
    timeout=TIMEOUT,
    target=TargetKind.SERVICE,
    target_field="url",
)
async def request(ctx: ActionContext, params: HttpRequest) -> HttpResponse:
    """Send a request with any method, `json` or `body`, to an allow-listed host.

    Not idempotent: the engine records the attempt before it is sent; `send_idempotency_key`
    passes the step's key as an `Idempotency-Key` header to APIs that deduplicate on it."""
    if params.json_ is not None and params.body is not None:
        raise ActionFailed("give 'json' or 'body', not both")
    if ctx.dry_run and params.method not in ("GET", "HEAD"):
        raise ActionFailed(f"{params.method} takes effect: not sent in a dry run")
    if params.json_ is not None:
        payload = json.dumps(params.json_).encode()
        return await _exchange(ctx, params, body=payload, content_type="application/json")
    if params.body is not None:
        body = params.body.encode()
        return await _exchange(ctx, params, body=body, content_type="text/plain; charset=utf-8")
    return await _exchange(ctx, params, body=None, content_type=None)
