"""Test support for notify: an aiosmtpd server (STARTTLS, a self-signed certificate, AUTH) and an
aiohttp server speaking the Slack, Teams, PagerDuty Events v2 and Twilio shapes, on loopback."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import socket
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from pydantic import BaseModel, JsonValue
from soar_notify import notify

from soar.connectors import ActionContext, Secrets

CANARY = "canary-notify-secret"
SMTP_USER = "soar"
SMTP_PASSWORD = f"pw-{CANARY}-1"
ROUTING_KEY = f"rk-{CANARY}-0123456789abcdef"
AUTH_TOKEN = f"tok-{CANARY}-2"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
MONDAY_10_UTC = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass
class Mailbox:
    """What the SMTP server accepted; recipients starting `refuse` get 550, `busy` get 451
    (the first `busy_times` times)."""

    envelopes: list[Envelope] = field(default_factory=list)
    busy_times: int = 1
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.startswith("refuse"):
            return "550 5.1.1 no such user"
        if address.startswith("busy") and self.busy_times > 0:
            self.busy_times -= 1
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == SMTP_USER.encode()
            and auth_data.password == SMTP_PASSWORD.encode()
        )
        self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox
    certificate: Certificate

    def settings(self, **smtp: JsonValue) -> dict[str, JsonValue]:
        base: dict[str, JsonValue] = {
            "host": "127.0.0.1",
            "port": self.port,
            "starttls": True,
            "username": SMTP_USER,
            "from": "soar@example.org",
            "ca_file": str(self.certificate.cert),
        }
        base.update(smtp)
        return {"smtp": base, "timeout_seconds": 5}


@dataclass
class Received:
    kind: str
    path: str
    json: JsonValue
    form: dict[str, str]
    authorization: str | None


@dataclass
class Vendor:
    """Loopback Slack, Teams, PagerDuty and Twilio endpoints. `script[kind]` holds statuses to
    answer with before answering normally (`"hang"` waits until the test ends)."""

    port: int = 0
    token: str = field(default_factory=lambda: f"{CANARY}-{secrets.token_hex(4)}")
    received: list[Received] = field(default_factory=list)
    script: dict[str, list[int | str]] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def webhook(self, kind: str) -> str:
        return f"{self.base}/{kind}/hooks/{self.token}"

    def of(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]

    def settings(self) -> dict[str, JsonValue]:
        return {
            "pagerduty_url": self.base,
            "twilio_url": self.base,
            "twilio_account_sid": ACCOUNT_SID,
            "sms_from": "+15005550006",
            "timeout_seconds": 0.5,
        }

    def secrets(self) -> Secrets:
        return Secrets(
            {
                "slack_webhook_url": self.webhook("slack"),
                "teams_webhook_url": self.webhook("teams"),
                "pagerduty_routing_key": ROUTING_KEY,
                "twilio_auth_token": AUTH_TOKEN,
                "smtp_password": SMTP_PASSWORD,
            }
        )

    async def _scripted(self, kind: str, echo: str) -> web.Response | None:
        queue = self.script.get(kind)
        if not queue:
            return None
        step = queue.pop(0)
        if step == "hang":
            await self.release.wait()
            return web.Response(status=504)
        assert isinstance(step, int)
        headers = {"Retry-After": "2"} if step == 429 else {}
        return web.Response(status=step, text=f"scripted {step} {echo}", headers=headers)

    async def slack(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=404, text="no_service")
        body = await request.json()
        self.received.append(Received("slack", request.path, body, {}, None))
        scripted = await self._scripted("slack", "invalid_payload")
        if scripted is not None:
            return scripted
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return web.Response(status=400, text="invalid_payload")
        return web.Response(text="ok")

    async def teams(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=404)
        body = await request.json()
        self.received.append(Received("teams", request.path, body, {}, None))
        scripted = await self._scripted("teams", "")
        if scripted is not None:
            return scripted
        attachments = body.get("attachments") if isinstance(body, dict) else None
        if body.get("type") != "message" or not attachments:
            return web.Response(status=400, text="Bad payload")
        return web.Response(status=202)

    async def pagerduty(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(Received("pagerduty", request.path, body, {}, None))
        key = body.get("routing_key", "")
        scripted = await self._scripted("pagerduty", f"routing_key {key}")
        if scripted is not None:
            return scripted
        if body.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid"}, status=400
            )
        if key != ROUTING_KEY:
            # a vendor that echoes what it was sent: the connector must cut the key out
            return web.json_response(
                {"status": "invalid event", "errors": [f"bad routing_key {key}"]}, status=400
            )
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]},
            status=202,
        )

    async def twilio(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        authorization = request.headers.get("Authorization")
        self.received.append(Received("twilio", request.path, None, form, authorization))
        scripted = await self._scripted("twilio", "")
        if scripted is not None:
            return scripted
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if authorization != expected or request.match_info["sid"] != ACCOUNT_SID:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if not form.get("To", "").startswith("+"):
            return web.json_response(
                {"code": 21211, "message": "The 'To' number is not valid."}, status=400
            )
        sid = "SM" + secrets.token_hex(16)
        return web.json_response(
            {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"]}, status=201
        )


def context(
    settings: dict[str, JsonValue],
    secrets_: Secrets,
    *,
    key: str = "run-1/step-1",
    at: datetime = MONDAY_10_UTC,
    dry_run: bool = False,
) -> ActionContext:
    return ActionContext(
        idempotency_key=key,
        settings=settings,
        secrets=secrets_,
        logger=logging.getLogger("soar.action.notify"),
        clock=lambda: at,
        dry_run=dry_run,
    )


async def call(name: str, ctx: ActionContext, **inputs: JsonValue) -> BaseModel:
    """Call a notify action as the engine does: inputs validated by the declared model."""
    spec = notify.actions[name]
    return await spec.fn(ctx, spec.input_model.model_validate(inputs))
