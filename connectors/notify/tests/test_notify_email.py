"""Email over SMTP against aiosmtpd: STARTTLS with a self-signed certificate, AUTH, refusals,
timeouts, retries with the same Message-ID, and header injection refused."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from email import policy

import pytest
from aiosmtpd.controller import Controller
from notify_support import SMTP_PASSWORD, call, context
from soar_notify.testing import Mailbox, SmtpServer, free_port

from soar.connectors import ActionFailed, Secrets

SECRETS = Secrets({"smtp_password": SMTP_PASSWORD})


def parsed(server: SmtpServer, index: int = -1) -> email.message.EmailMessage:
    content = server.mailbox.envelopes[index].content
    assert isinstance(content, bytes)
    message = email.message_from_bytes(content, policy=policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


async def test_email_is_sent_over_starttls_with_auth(smtp_server: SmtpServer) -> None:
    ctx = context(smtp_server.settings(), SECRETS)
    out = await call("email", ctx, to=["ciso@example.org"], subject="Contained", body="done")
    message = parsed(smtp_server)
    assert message["Subject"] == "Contained"
    assert message["To"] == "ciso@example.org"
    assert message["Message-ID"] == out.model_dump()["id"]
    assert message.get_content().strip() == "done"
    assert smtp_server.mailbox.logins  # it authenticated (only possible after STARTTLS)
    assert out.model_dump()["recipients"] == ["ciso@example.org"]


async def test_the_message_id_comes_from_the_idempotency_key(smtp_server: SmtpServer) -> None:
    settings = smtp_server.settings()
    first = await call("email", context(settings, SECRETS, key="r1/s"), to=["a@x.org"], subject="s")
    again = await call("email", context(settings, SECRETS, key="r1/s"), to=["a@x.org"], subject="s")
    other = await call("email", context(settings, SECRETS, key="r2/s"), to=["a@x.org"], subject="s")
    ids = [first.model_dump()["id"], again.model_dump()["id"], other.model_dump()["id"]]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].endswith("@example.org>")
    assert [parsed(smtp_server, i)["Message-ID"] for i in range(3)] == ids


async def test_a_busy_recipient_is_retried_with_the_same_message_id(
    smtp_server: SmtpServer,
) -> None:
    ctx = context(smtp_server.settings(), SECRETS)
    with pytest.raises(ActionFailed) as failed:
        await call("email", ctx, to=["busy@example.org"], subject="later")
    assert failed.value.retryable
    out = await call("email", ctx, to=["busy@example.org"], subject="later")
    assert len(smtp_server.mailbox.envelopes) == 1
    assert parsed(smtp_server)["Message-ID"] == out.model_dump()["id"]


async def test_a_refused_recipient_is_not_retried(smtp_server: SmtpServer) -> None:
    ctx = context(smtp_server.settings(), SECRETS)
    with pytest.raises(ActionFailed) as failed:
        await call("email", ctx, to=["refuse@example.org"], subject="x")
    assert not failed.value.retryable
    assert smtp_server.mailbox.envelopes == []


async def test_a_partly_refused_message_reaches_the_others(smtp_server: SmtpServer) -> None:
    ctx = context(smtp_server.settings(), SECRETS)
    out = await call("email", ctx, to=["refuse@example.org", "ok@example.org"], subject="x")
    assert out.model_dump()["recipients"] == ["ok@example.org"]


async def test_a_wrong_password_is_not_retried(smtp_server: SmtpServer) -> None:
    ctx = context(smtp_server.settings(), Secrets({"smtp_password": "wrong"}))
    with pytest.raises(ActionFailed) as failed:
        await call("email", ctx, to=["a@example.org"], subject="x")
    assert not failed.value.retryable


async def test_an_untrusted_certificate_is_not_retried(smtp_server: SmtpServer) -> None:
    ctx = context(smtp_server.settings(ca_file=None), SECRETS)
    with pytest.raises(ActionFailed) as failed:
        await call("email", ctx, to=["a@example.org"], subject="x")
    assert not failed.value.retryable
    assert "certificate" in str(failed.value)


async def test_an_unreachable_server_is_retryable() -> None:
    settings = {"smtp": {"host": "127.0.0.1", "port": free_port(), "from": "s@example.org"}}
    with pytest.raises(ActionFailed) as failed:
        await call("email", context(settings, SECRETS), to=["a@example.org"], subject="x")
    assert failed.value.retryable


async def test_a_silent_server_times_out_and_is_retryable() -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = {
        "smtp": {"host": "127.0.0.1", "port": port, "from": "s@example.org"},
        "timeout_seconds": 0.3,
    }
    try:
        with pytest.raises(ActionFailed) as failed:
            await call("email", context(settings, SECRETS), to=["a@example.org"], subject="x")
    finally:
        done.set()
        server.close()
        await server.wait_closed()
    assert failed.value.retryable
    assert "0.3 s" in str(failed.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("subject", "hello\r\nBcc: victim@evil.example", id="crlf-subject"),
        pytest.param("subject", "hello\nBcc: victim@evil.example", id="lf-subject"),
        pytest.param("subject", "hello\rBcc: victim@evil.example", id="cr-subject"),
        pytest.param("to", ["a@example.org\r\nBcc: victim@evil.example"], id="crlf-to"),
        pytest.param("cc", ["a@example.org\nBcc: victim@evil.example"], id="lf-cc"),
        pytest.param("to", ["Eve <a@example.org>, b@evil.example"], id="two-in-one"),
    ],
)
async def test_header_injection_is_refused_and_not_retried(
    smtp_server: SmtpServer, field: str, value: object
) -> None:
    inputs: dict[str, object] = {"to": ["a@example.org"], "subject": "ok", field: value}
    with pytest.raises(ActionFailed) as failed:
        await call("email", context(smtp_server.settings(), SECRETS), **inputs)  # type: ignore[arg-type]
    assert not failed.value.retryable
    assert smtp_server.mailbox.envelopes == []


async def test_executives_come_from_the_directory(smtp_server: SmtpServer) -> None:
    settings = smtp_server.settings()
    settings["directory"] = {
        "executives": ["ceo@example.org", {"name": "CISO", "email": "ciso@example.org"}]
    }
    ctx = context(settings, SECRETS)
    out = await call("email", ctx, group="executives", to=["ceo@example.org"], subject="Report")
    assert out.model_dump()["recipients"] == ["ceo@example.org", "ciso@example.org"]
    assert parsed(smtp_server)["To"] == "ceo@example.org, ciso@example.org"


async def test_an_unknown_group_is_not_retried(smtp_server: SmtpServer) -> None:
    with pytest.raises(ActionFailed) as failed:
        await call("email", context(smtp_server.settings(), SECRETS), group="board", subject="x")
    assert not failed.value.retryable


async def test_a_dry_run_sends_nothing(smtp_server: SmtpServer) -> None:
    ctx = context(smtp_server.settings(), SECRETS, dry_run=True)
    out = await call("email", ctx, to=["a@example.org"], subject="x")
    assert out.model_dump()["id"].startswith("<soar.")
    assert smtp_server.mailbox.envelopes == []


@pytest.fixture
def plain_server() -> Iterator[tuple[int, Mailbox]]:
    """An SMTP server without TLS or AUTH (a relay on a trusted network)."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


async def test_a_server_without_starttls_is_refused_not_used_in_the_clear(
    plain_server: tuple[int, Mailbox],
) -> None:
    port, mailbox = plain_server
    settings = {"smtp": {"host": "127.0.0.1", "port": port, "from": "s@example.org"}}
    with pytest.raises(ActionFailed, match="STARTTLS") as failed:
        await call("email", context(settings, SECRETS), to=["a@example.org"], subject="x")
    assert not failed.value.retryable
    assert mailbox.envelopes == []


async def test_a_trusted_relay_may_be_used_without_tls(plain_server: tuple[int, Mailbox]) -> None:
    port, mailbox = plain_server
    smtp = {"host": "127.0.0.1", "port": port, "from": "s@example.org", "starttls": False}
    out = await call("email", context({"smtp": smtp}, Secrets({})), to=["a@x.org"], subject="x")
    assert out.model_dump()["recipients"] == ["a@x.org"]
    assert len(mailbox.envelopes) == 1
