"""Loopback servers in the shapes notify talks to, for its tests and `soar lab`: an aiosmtpd SMTP
server (STARTTLS with a self-signed certificate, then AUTH) and one aiohttp server answering as
Slack and Teams incoming webhooks, the PagerDuty Events API v2 and Twilio's Messages API. Each
keeps what it was sent, so tests count effects and the lab can say what was delivered.

Not for production: no mail or message leaves the machine, and the credentials are fixed.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import secrets
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import JsonValue

from soar.connectors import Secrets
from soar.connectors.servers import free_port

__all__ = [
    "Certificate",
    "Mailbox",
    "Received",
    "SmtpServer",
    "Vendor",
    "free_port",
    "make_certificate",
    "running_smtp",
    "running_vendor",
]

SMTP_USER = "soar"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
SMS_FROM = "+15005550006"


@dataclass
class Certificate:
    """A PEM certificate and its key, for a server's TLS."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificate(directory: Path, *, valid: timedelta = timedelta(days=1)) -> Certificate:
    """A self-signed certificate (EC P-256) for 127.0.0.1 and localhost, valid for `valid`,
    written as `cert.pem` and `key.pem` (mode 0600) into `directory`. Clients trust it by
    naming `cert.pem` as their CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + valid)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_path, key_path)


@dataclass
class Mailbox:
    """What the SMTP server accepted, and who may log in (`username`, `password`). Recipients
    starting `refuse` get 550, `busy` get 451 (the first `busy_times` times)."""

    password: str = "smtp-password"  # noqa: S105 - a loopback server's fixed login
    username: str = SMTP_USER
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
            and auth_data.login == self.username.encode()
            and auth_data.password == self.password.encode()
        )
        self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox
    certificate: Certificate

    def settings(self, **smtp: JsonValue) -> dict[str, JsonValue]:
        """notify's settings for mail through this server (the password is a secret)."""
        base: dict[str, JsonValue] = {
            "host": "127.0.0.1",
            "port": self.port,
            "starttls": True,
            "username": self.mailbox.username,
            "from": "soar@example.org",
            "ca_file": str(self.certificate.cert),
        }
        base.update(smtp)
        return {"smtp": base, "timeout_seconds": 5}


@contextmanager
def running_smtp(certificate: Certificate, mailbox: Mailbox | None = None) -> Iterator[SmtpServer]:
    """aiosmtpd on 127.0.0.1, a free port, in a thread of its own: STARTTLS required before
    AUTH, and AUTH (as `mailbox.username`) before mail."""
    box = mailbox or Mailbox()
    port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=box.authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        yield SmtpServer(port, box, certificate)
    finally:
        controller.stop()


@dataclass
class Received:
    kind: str
    path: str
    json: JsonValue
    form: dict[str, str]
    authorization: str | None


def _token() -> str:
    return f"hook-{secrets.token_hex(8)}"


@dataclass
class Vendor:
    """Loopback Slack, Teams, PagerDuty and Twilio endpoints. `script[kind]` holds statuses to
    answer with before answering normally (`"hang"` waits until `release` is set)."""

    port: int = 0
    token: str = field(default_factory=_token)
    routing_key: str = field(default_factory=lambda: f"rk-{secrets.token_hex(16)}")
    auth_token: str = field(default_factory=lambda: f"tok-{secrets.token_hex(16)}")
    account_sid: str = ACCOUNT_SID
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
        """notify's settings for paging and SMS through this server."""
        return {
            "pagerduty_url": self.base,
            "twilio_url": self.base,
            "twilio_account_sid": self.account_sid,
            "sms_from": SMS_FROM,
            "timeout_seconds": 0.5,
        }

    def secret_values(self) -> dict[str, str]:
        """The webhook URLs, routing key and auth token this server accepts, by the names of
        notify's secrets."""
        return {
            "slack_webhook_url": self.webhook("slack"),
            "teams_webhook_url": self.webhook("teams"),
            "pagerduty_routing_key": self.routing_key,
            "twilio_auth_token": self.auth_token,
        }

    def secrets(self) -> Secrets:
        return Secrets(self.secret_values())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/slack/hooks/{token}", self.slack)
        app.router.add_post("/teams/hooks/{token}", self.teams)
        app.router.add_post("/v2/enqueue", self.pagerduty)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.twilio)
        return app

    async def _scripted(self, kind: str, echo: str) -> web.Response | None:
        queue = self.script.get(kind)
        if not queue:
            return None
        step = queue.pop(0)
        if step == "hang":
            await self.release.wait()
            return web.Response(status=504)
        assert isinstance(step, int)  # noqa: S101 - a test's script
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
        if not isinstance(body, dict) or body.get("type") != "message" or not attachments:
            return web.Response(status=400, text="Bad payload")
        return web.Response(status=202)

    async def pagerduty(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(Received("pagerduty", request.path, body, {}, None))
        key = body.get("routing_key", "") if isinstance(body, dict) else ""
        scripted = await self._scripted("pagerduty", f"routing_key {key}")
        if scripted is not None:
            return scripted
        if not isinstance(body, dict) or body.get("event_action") not in (
            "trigger",
            "acknowledge",
            "resolve",
        ):
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid"}, status=400
            )
        if key != self.routing_key:
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
        login = f"{self.account_sid}:{self.auth_token}".encode()
        expected = "Basic " + base64.b64encode(login).decode()
        if authorization != expected or request.match_info["sid"] != self.account_sid:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if not form.get("To", "").startswith("+"):
            return web.json_response(
                {"code": 21211, "message": "The 'To' number is not valid."}, status=400
            )
        sid = "SM" + secrets.token_hex(16)
        return web.json_response(
            {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"]}, status=201
        )


@asynccontextmanager
async def running_vendor(vendor: Vendor | None = None) -> AsyncIterator[Vendor]:
    """`vendor` (or a new one) served on 127.0.0.1, a free port, in this event loop."""
    server = vendor or Vendor()
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        address = runner.addresses[0]
        server.port = int(address[1])
        yield server
    finally:
        server.release.set()
        await runner.cleanup()
