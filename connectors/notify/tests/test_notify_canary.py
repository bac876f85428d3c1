"""A canary secret: every secret holds "canary-notify-secret"; across successes, refusals,
server errors, timeouts and unreachable servers on every channel, it shows in no output, no log
record and no exception text (vendors that echo the secret back included)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable

import pytest
from notify_support import CANARY, call, context
from pydantic import BaseModel, JsonValue
from soar_notify.testing import SmtpServer, Vendor, free_port

from soar.connectors import ActionContext, ActionFailed, Secrets

# the loopback servers' own loggers: what a vendor logs is not the connector's output
_SERVER_LOGGERS = ("mail.log", "aiohttp.access", "aiohttp.server", "aiohttp.web")


async def test_the_canary_never_shows(
    smtp_server: SmtpServer, vendor: Vendor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    secrets = vendor.secrets()
    web = vendor.settings()
    dead = f"http://127.0.0.1:{free_port()}"
    broken = Secrets(
        {
            "slack_webhook_url": f"{vendor.base}/slack/hooks/{CANARY}-wrong",
            "teams_webhook_url": f"not a url {CANARY}",
            "pagerduty_routing_key": f"wrong-{CANARY}",
            "twilio_auth_token": f"wrong-{CANARY}",
            "smtp_password": f"wrong-{CANARY}",
        }
    )
    unreachable = Secrets(
        {"slack_webhook_url": f"{dead}/{CANARY}", "teams_webhook_url": f"{dead}/{CANARY}"}
    )
    mail = smtp_server.settings()
    slow_mail = {"smtp": {"host": "127.0.0.1", "port": free_port(), "username": "u"}}

    async def attempt(name: str, ctx: ActionContext, **inputs: JsonValue) -> None:
        try:
            out: BaseModel = await call(name, ctx, **inputs)
        except ActionFailed as exc:
            texts.append(str(exc))
            texts.append("".join(traceback.format_exception(exc)))
        else:
            texts.append(out.model_dump_json())

    plan: list[Callable[[], Awaitable[None]]] = [
        lambda: attempt("email", context(mail, secrets), to=["a@example.org"], subject="s"),
        lambda: attempt("email", context(mail, broken), to=["a@example.org"], subject="s"),
        lambda: attempt("email", context(slow_mail, secrets), to=["a@example.org"], subject="s"),
        lambda: attempt("chat", context(web, secrets), text="t"),
        lambda: attempt("chat", context(web, secrets), text="t", platform="teams"),
        lambda: attempt("chat", context(web, broken), text="t"),
        lambda: attempt("chat", context(web, broken), text="t", platform="teams"),
        lambda: attempt("chat", context(web, unreachable), text="t"),
        lambda: attempt("page", context(web, secrets), service="s"),
        lambda: attempt("page", context(web, broken), service="s"),
        lambda: attempt("resolve_page", context(web, broken), dedup_key="d"),
        lambda: attempt("sms", context(web, secrets), to=["+14155550100"], body="b"),
        lambda: attempt("sms", context(web, broken), to=["+14155550100"], body="b"),
    ]
    for step in plan:
        await step()
    # servers that fail, time out and echo what they were sent
    vendor.script = {
        "slack": [503, "hang"],
        "teams": [500],
        "pagerduty": [400, 429, 502, "hang"],
        "twilio": [500, "hang"],
    }
    for _ in range(2):
        await attempt("chat", context(web, secrets), text="t")
    await attempt("chat", context(web, secrets), text="t", platform="teams")
    for _ in range(4):
        await attempt("page", context(web, secrets), service="s")
    for _ in range(2):
        await attempt("sms", context(web, secrets), to=["+14155550100"], body="b")

    assert len(texts) >= 30
    records = [r for r in caplog.records if not r.name.startswith(_SERVER_LOGGERS)]
    texts.extend(r.getMessage() for r in records)
    texts.extend("".join(traceback.format_exception(*r.exc_info)) for r in records if r.exc_info)
    assert [t for t in texts if CANARY in t] == []
    # and the vendors did receive the secrets: the canary is where it belongs
    assert any(r.json and CANARY in str(r.json) for r in vendor.of("pagerduty"))
    assert any(CANARY in r.path for r in vendor.of("slack"))
