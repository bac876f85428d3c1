"""Mail: a message built with the strict stdlib policy (no CR/LF in any header, so no header
injection) and sent over SMTP with aiosmtplib (STARTTLS or implicit TLS, AUTH)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import ssl
from email.message import EmailMessage
from email.policy import SMTP as STRICT_SMTP
from typing import Any

import aiosmtplib

from soar.connectors import ActionFailed
from soar_notify._http import scrub
from soar_notify._settings import SmtpSettings

_CLOSE_WAIT = 1.0  # seconds to wait for a TLS session's close_notify round trip
_ADDRESS = re.compile(r"^[^\s@<>,;:\"()\[\]\\]+@[A-Za-z0-9.-]+\Z")


def check_header(name: str, value: str) -> None:
    """Refuse CR, LF and other control characters in a header value (not retryable)."""
    if any(c in value for c in "\r\n") or any(ord(c) < 32 and c != "\t" for c in value):
        raise ActionFailed(f"{name} holds a line break or control character", retryable=False)


def check_address(address: str) -> str:
    """A bare `local@domain` address, or ActionFailed (not retryable)."""
    check_header("an address", address)
    if not _ADDRESS.match(address):
        raise ActionFailed(f"{address!r} is not a plain email address", retryable=False)
    return address


def message_id(idempotency_key: str, domain: str) -> str:
    """The same Message-ID on every attempt of one step: a retry is recognisably one message."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<soar.{digest}@{domain}>"


def build(
    *,
    sender: str,
    to: list[str],
    cc: list[str],
    subject: str,
    body: str,
    html: str | None,
    msg_id: str,
    date: str,
) -> EmailMessage:
    """The message; any header the strict policy refuses becomes ActionFailed (not retryable)."""
    check_header("the subject", subject)
    message = EmailMessage(policy=STRICT_SMTP)
    try:
        message["From"] = sender
        message["To"] = ", ".join(to)
        if cc:
            message["Cc"] = ", ".join(cc)
        message["Subject"] = subject
        message["Message-ID"] = msg_id
        message["Date"] = date
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(body)
        if html is not None:
            message.add_alternative(html, subtype="html")
    except ValueError as exc:  # the policy refuses CR/LF and malformed headers
        raise ActionFailed(
            f"the message cannot be built: {type(exc).__name__}", retryable=False
        ) from None
    return message


async def send(
    settings: SmtpSettings,
    message: EmailMessage,
    *,
    password: str | None,
    limit: float,
) -> list[str]:
    """Send over SMTP; returns the recipients the server accepted.

    Raises:
        ActionFailed: retryable for timeouts, connection failures and 4xx replies; not
            retryable for 5xx replies, refused recipients, failed AUTH or TLS verification.
    """
    hidden = [password] if password else []
    context = ssl.create_default_context(cafile=settings.ca_file)
    client = _Session(
        hostname=settings.host,
        port=settings.port,
        use_tls=settings.tls,
        start_tls=False,  # upgraded below, so that a server without STARTTLS is refused
        tls_context=context,
        timeout=limit,
    )
    try:
        async with client:
            if settings.starttls and not settings.tls:
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    raise ActionFailed(
                        "the SMTP server does not offer STARTTLS (set starttls = false only "
                        "for a relay on a trusted network)",
                        retryable=False,
                    )
                await client.starttls()
            if settings.username is not None:
                if password is None:
                    raise ActionFailed("smtp username set but no smtp_password", retryable=False)
                await client.login(settings.username, password)
            refused, _ = await client.send_message(message)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = sorted({r.code for r in exc.recipients})
        raise ActionFailed(
            f"the SMTP server refused every recipient ({codes})",
            retryable=all(400 <= c < 500 for c in codes),
        ) from None
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise ActionFailed(f"SMTP AUTH failed ({exc.code})", retryable=False) from None
    except aiosmtplib.SMTPResponseException as exc:
        text = scrub(str(exc.message), hidden)[:200]
        raise ActionFailed(
            f"the SMTP server answered {exc.code}: {text}", retryable=400 <= exc.code < 500
        ) from None
    except (aiosmtplib.SMTPTimeoutError, TimeoutError):
        raise ActionFailed(f"SMTP: no answer within {limit:g} s", retryable=True) from None
    except ssl.SSLCertVerificationError:
        raise ActionFailed(
            "SMTP: the server's TLS certificate is not trusted", retryable=False
        ) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise ActionFailed(f"SMTP unreachable ({type(exc).__name__})", retryable=True) from None
    finally:
        client.close()  # a session that failed half-way (TLS, AUTH) leaves no socket behind
        await client.closed(min(limit, _CLOSE_WAIT))
    accepted = [r for r in _recipients(message) if r not in refused]
    return accepted


class _Session(aiosmtplib.SMTP):
    """An SMTP client whose close can be awaited: over TLS, closing takes a round trip
    (close_notify), and a step should not count as done with its socket still open."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._opened = False
        self._lost = asyncio.Event()

    # aiosmtplib 5 internals (pinned in pyproject): the hooks where a connection is made and lost
    async def _create_connection(self, timeout: float | None) -> aiosmtplib.SMTPResponse:  # noqa: ASYNC109 - the overridden signature
        self._lost.clear()
        try:
            return await super()._create_connection(timeout)
        finally:
            self._opened = self.transport is not None

    def _on_connection_lost(self, protocol: Any) -> None:
        super()._on_connection_lost(protocol)
        self._lost.set()

    async def closed(self, limit: float) -> None:
        """Wait (at most `limit` seconds) until the connection, if one was opened, is gone."""
        if not self._opened or self._lost.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._lost.wait(), limit)


def _recipients(message: EmailMessage) -> list[str]:
    found: list[str] = []
    for header in ("To", "Cc"):
        value = message.get(header)
        if value:
            found.extend(a.strip() for a in str(value).split(","))
    return found
