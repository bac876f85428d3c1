"""The `notify` actions: who to tell (inputs, directory groups, on-call schedules) and how."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import timedelta
from email.utils import format_datetime
from typing import Literal

from pydantic import BaseModel, Field, JsonValue

from soar.connectors import ActionContext, ActionFailed, Connector, TargetKind
from soar_notify import _mail
from soar_notify._http import post
from soar_notify._oncall import (
    Contact,
    address_of,
    named_group,
    named_schedule,
    schedule_of,
)
from soar_notify._settings import NotifySettings, settings_of

notify = Connector(
    "notify", doc="Email (SMTP), Slack and Teams webhooks, PagerDuty Events v2, Twilio SMS."
)

_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}\Z")
_TIMEOUT = timedelta(seconds=60)


class Audience(BaseModel):
    """Who: explicit addresses, a directory group (`executives`), an on-call schedule by name
    (`directory.oncall.<name>` in the connector settings) or inline (from the playbook's
    `directory`). All given sources are combined, duplicates dropped, order kept."""

    to: list[str] = Field(default_factory=list, max_length=100)
    group: str | None = None
    oncall: str | None = None
    schedule: dict[str, JsonValue] | None = None


class Email(Audience):
    subject: str = Field(max_length=998)
    body: str = Field(default="", max_length=1_000_000)
    html: str | None = Field(default=None, max_length=1_000_000)
    cc: list[str] = Field(default_factory=list, max_length=100)


class EmailSent(BaseModel):
    """Every output has `id`; the other fields default, so recorded responses may give `id` only."""

    id: str = Field(description="the Message-ID, the same on every retry of the step")
    recipients: list[str] = Field(default_factory=list)


class Chat(BaseModel):
    text: str = Field(max_length=40_000)
    title: str | None = Field(default=None, max_length=150)
    channel: str | None = Field(default=None, description="Slack legacy channel override")
    platform: Literal["slack", "teams"] | None = None
    facts: dict[str, str] = Field(default_factory=dict, max_length=20)


class ChatSent(BaseModel):
    id: str
    platform: str = ""


Severity = Literal["critical", "error", "warning", "info"]


class Page(BaseModel):
    service: str = Field(max_length=255)
    summary: str = Field(default="soar escalation", max_length=1024)
    severity: Severity = "critical"
    source: str | None = Field(default=None, max_length=255)
    dedup_key: str | None = Field(default=None, max_length=255)
    details: dict[str, JsonValue] = Field(default_factory=dict)


class PageRef(BaseModel):
    dedup_key: str = Field(min_length=1, max_length=255)


class PageSent(BaseModel):
    id: str
    dedup_key: str = ""
    event_action: str = ""
    status: str = ""


class Sms(Audience):
    body: str = Field(max_length=1600)
    sender: str | None = Field(default=None, alias="from")


class SmsSent(BaseModel):
    id: str
    ids: list[str] = Field(default_factory=list)
    recipients: list[str] = Field(default_factory=list)


class OnCallQuery(BaseModel):
    oncall: str | None = None
    schedule: dict[str, JsonValue] | None = None


class OnCall(BaseModel):
    people: list[str | dict[str, str | None]]
    at: str


# -- email -------------------------------------------------------------------------------------


@notify.action(
    secrets=["smtp_password"], timeout=_TIMEOUT, target=TargetKind.MESSAGE, target_field="subject"
)
async def email(ctx: ActionContext, params: Email) -> EmailSent:
    """Send one email. The Message-ID comes from the idempotency key, so a retried step sends a
    message recognisably the same (mail systems and readers can drop the duplicate). A subject
    or address with CR/LF is refused, not retried."""
    settings = settings_of(ctx.settings)
    to = [_mail.check_address(a) for a in _addresses(ctx, settings, params, "email")]
    cc = [_mail.check_address(a) for a in _unique(params.cc)]
    if not to:
        raise ActionFailed("no recipients: give to, group, oncall or schedule", retryable=False)
    sender = _mail.check_address(settings.smtp.sender)
    domain = settings.smtp.message_id_domain or sender.rpartition("@")[2]
    msg_id = _mail.message_id(ctx.idempotency_key, domain)
    message = _mail.build(
        sender=sender,
        to=to,
        cc=cc,
        subject=params.subject,
        body=params.body,
        html=params.html,
        msg_id=msg_id,
        date=format_datetime(ctx.clock()),
    )
    if ctx.dry_run:
        return EmailSent(id=msg_id, recipients=to + cc)
    password = ctx.secrets["smtp_password"] if settings.smtp.username is not None else None
    accepted = await _mail.send(
        settings.smtp, message, password=password, limit=settings.timeout_seconds
    )
    ctx.logger.info("email %s accepted for %d recipient(s)", msg_id, len(accepted))
    return EmailSent(id=msg_id, recipients=accepted)


# -- chat --------------------------------------------------------------------------------------


@notify.action(
    secrets=["slack_webhook_url", "teams_webhook_url"],
    timeout=_TIMEOUT,
    target=TargetKind.MESSAGE,
)
async def chat(ctx: ActionContext, params: Chat) -> ChatSent:
    """Post to a Slack or Teams incoming webhook (the URL is a secret). Webhooks have no
    idempotency key: a retry after a lost reply may post twice; the footer carries the id."""
    settings = settings_of(ctx.settings)
    platform = params.platform or settings.chat_platform
    ref = _reference(ctx.idempotency_key)
    body = _slack(params, ref) if platform == "slack" else _teams(params, ref)
    if not ctx.dry_run:
        reply = await post(
            f"{platform} webhook",
            ctx.secrets[f"{platform}_webhook_url"],
            json=body,
            secrets=ctx.secrets.values(),
            limit=settings.timeout_seconds,
        )
        if platform == "slack" and reply.text.strip() != "ok":
            raise ActionFailed("slack webhook: the reply was not 'ok'", retryable=False)
    ctx.logger.info("chat message %s posted to %s", ref, platform)
    return ChatSent(id=ref, platform=platform)


def _slack(params: Chat, ref: str) -> JsonValue:
    blocks: list[JsonValue] = []
    if params.title:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": params.title}})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": params.text[:3000]}})
    if params.facts:
        fields: list[JsonValue] = [
            {"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(params.facts.items())[:10]
        ]
        blocks.append({"type": "section", "fields": fields})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"soar {ref}"}]})
    body: dict[str, JsonValue] = {"text": params.text, "blocks": blocks}
    if params.channel:
        body["channel"] = params.channel
    return body


def _teams(params: Chat, ref: str) -> JsonValue:
    items: list[JsonValue] = []
    if params.title:
        items.append(
            {"type": "TextBlock", "text": params.title, "weight": "Bolder", "size": "Medium"}
        )
    items.append({"type": "TextBlock", "text": params.text, "wrap": True})
    if params.facts:
        facts: list[JsonValue] = [{"title": k, "value": v} for k, v in params.facts.items()]
        items.append({"type": "FactSet", "facts": facts})
    items.append({"type": "TextBlock", "text": f"soar {ref}", "isSubtle": True, "size": "Small"})
    card: dict[str, JsonValue] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": items,
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


# -- paging ------------------------------------------------------------------------------------


@notify.action(
    secrets=["pagerduty_routing_key"],
    idempotent=True,
    timeout=_TIMEOUT,
    compensate="notify.resolve_page",
    target=TargetKind.SERVICE,
    target_field="service",
)
async def page(ctx: ActionContext, params: Page) -> PageSent:
    """Trigger a PagerDuty incident (Events API v2). The dedup_key comes from the idempotency
    key unless given, so retries update one alert; undo it with `notify.resolve_page`."""
    dedup = params.dedup_key or f"soar-{_reference(ctx.idempotency_key)}"
    settings = settings_of(ctx.settings)
    payload: dict[str, JsonValue] = {
        "summary": params.summary,
        "source": params.source or settings.pagerduty_source,
        "severity": params.severity,
        "group": params.service,
        "timestamp": ctx.clock().isoformat(),
        "custom_details": params.details,
    }
    return await _event(ctx, settings, "trigger", dedup, payload)


@notify.action(secrets=["pagerduty_routing_key"], idempotent=True, timeout=_TIMEOUT)
async def resolve_page(ctx: ActionContext, params: PageRef) -> PageSent:
    """Resolve the PagerDuty alert with this dedup_key (the compensation of `page`)."""
    return await _event(ctx, settings_of(ctx.settings), "resolve", params.dedup_key, None)


@notify.action(secrets=["pagerduty_routing_key"], idempotent=True, timeout=_TIMEOUT)
async def acknowledge_page(ctx: ActionContext, params: PageRef) -> PageSent:
    """Acknowledge the PagerDuty alert with this dedup_key."""
    return await _event(ctx, settings_of(ctx.settings), "acknowledge", params.dedup_key, None)


async def _event(
    ctx: ActionContext,
    settings: NotifySettings,
    action: str,
    dedup: str,
    payload: dict[str, JsonValue] | None,
) -> PageSent:
    body: dict[str, JsonValue] = {
        "routing_key": ctx.secrets["pagerduty_routing_key"],
        "event_action": action,
        "dedup_key": dedup,
        "client": "soar",
    }
    if payload is not None:
        body["payload"] = payload
    if ctx.dry_run:
        return PageSent(id=dedup, dedup_key=dedup, event_action=action, status="dry_run")
    url = settings.pagerduty_url.rstrip("/") + "/v2/enqueue"
    await post(
        f"pagerduty {action}",
        url,
        json=body,
        secrets=ctx.secrets.values(),
        limit=settings.timeout_seconds,
    )
    ctx.logger.info("pagerduty %s accepted for %s", action, dedup)
    return PageSent(id=dedup, dedup_key=dedup, event_action=action, status="success")


# -- sms ---------------------------------------------------------------------------------------


@notify.action(secrets=["twilio_auth_token"], timeout=_TIMEOUT, target=TargetKind.MESSAGE)
async def sms(ctx: ActionContext, params: Sms) -> SmsSent:
    """Send a text to each recipient (E.164 numbers) through the Twilio Messages API shape.
    Not idempotent: a retry after a partial failure sends again to those already reached."""
    settings = settings_of(ctx.settings)
    sid = settings.twilio_account_sid
    sender = params.sender or settings.sms_from
    if not sid or not sender:
        raise ActionFailed("twilio_account_sid and sms_from must be configured", retryable=False)
    numbers = _addresses(ctx, settings, params, "phone")
    bad = [n for n in [*numbers, sender] if not _PHONE.match(n)]
    if bad:
        raise ActionFailed(f"not E.164 phone numbers: {bad}", retryable=False)
    if not numbers:
        raise ActionFailed("no recipients: give to, group, oncall or schedule", retryable=False)
    ref = _reference(ctx.idempotency_key)
    if ctx.dry_run:
        return SmsSent(id=ref, ids=[], recipients=numbers)
    token = base64.b64encode(f"{sid}:{ctx.secrets['twilio_auth_token']}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    url = f"{settings.twilio_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
    ids: list[str] = []
    for number in numbers:
        reply = await post(
            "twilio message",
            url,
            form={"To": number, "From": sender, "Body": params.body},
            headers=headers,
            secrets=ctx.secrets.values(),
            limit=settings.timeout_seconds,
        )
        ids.append(_sid_of(reply.text))
    ctx.logger.info("sms %s sent to %d recipient(s)", ref, len(numbers))
    return SmsSent(id=ref, ids=ids, recipients=numbers)


def _sid_of(text: str) -> str:
    try:
        sid = json.loads(text).get("sid")
    except (ValueError, AttributeError):
        sid = None
    return sid if isinstance(sid, str) else ""


# -- on call -----------------------------------------------------------------------------------


@notify.action(idempotent=True, timeout=timedelta(seconds=5), name="on_call")
async def on_call(ctx: ActionContext, params: OnCallQuery) -> OnCall:
    """Who is on call now (by `ctx.clock`) on a named or inline schedule."""
    if params.schedule is not None:
        schedule = schedule_of(params.schedule, "(inline)")
    elif params.oncall is not None:
        schedule = named_schedule(settings_of(ctx.settings).directory, params.oncall)
    else:
        raise ActionFailed("give oncall (a schedule name) or schedule", retryable=False)
    now = ctx.clock()
    people = [p if isinstance(p, str) else p.model_dump() for p in schedule.on_call(now)]
    return OnCall(people=people, at=now.isoformat())


# -- shared ------------------------------------------------------------------------------------


def _addresses(
    ctx: ActionContext, settings: NotifySettings, params: Audience, kind: str
) -> list[str]:
    contacts: list[Contact] = list(params.to)
    directory = settings.directory
    if params.group is not None:
        contacts.extend(named_group(directory, params.group))
    if params.oncall is not None:
        contacts.extend(named_schedule(directory, params.oncall).on_call(ctx.clock()))
    if params.schedule is not None:
        contacts.extend(schedule_of(params.schedule, "(inline)").on_call(ctx.clock()))
    found = [address_of(c, kind) for c in contacts]
    return _unique([a for a in found if a])


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _reference(idempotency_key: str) -> str:
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
