"""Chat (Slack, Teams), paging (PagerDuty Events v2) and SMS (Twilio) against loopback servers
speaking each vendor's shape: success, refusal, server error, timeout and retry."""

from __future__ import annotations

import pytest
from notify_support import ACCOUNT_SID, ROUTING_KEY, call, context
from soar_notify.testing import Vendor

from soar.connectors import ActionFailed, Secrets

# -- chat ---------------------------------------------------------------------------------------


async def test_slack_gets_text_and_blocks(vendor: Vendor) -> None:
    ctx = context(vendor.settings(), vendor.secrets())
    out = await call(
        "chat", ctx, text="isolation failed", title="host-42", facts={"severity": "high"}
    )
    (got,) = vendor.of("slack")
    assert isinstance(got.json, dict)
    assert got.json["text"] == "isolation failed"
    kinds = [b["type"] for b in got.json["blocks"]]  # type: ignore[index,union-attr]
    assert kinds == ["header", "section", "section", "context"]
    assert out.model_dump() == {"id": out.model_dump()["id"], "platform": "slack"}


async def test_teams_gets_an_adaptive_card(vendor: Vendor) -> None:
    ctx = context({**vendor.settings(), "chat_platform": "teams"}, vendor.secrets())
    await call("chat", ctx, text="isolation failed", facts={"host": "host-42"})
    (got,) = vendor.of("teams")
    assert isinstance(got.json, dict)
    assert got.json["type"] == "message"
    (attachment,) = got.json["attachments"]  # type: ignore[misc]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert [item["type"] for item in card["body"]] == ["TextBlock", "FactSet", "TextBlock"]


async def test_a_platform_input_overrides_the_setting(vendor: Vendor) -> None:
    ctx = context(vendor.settings(), vendor.secrets())
    out = await call("chat", ctx, text="x", platform="teams")
    assert out.model_dump()["platform"] == "teams"
    assert len(vendor.of("teams")) == 1


@pytest.mark.parametrize("platform", ["slack", "teams"])
async def test_chat_server_errors_are_retried_and_then_succeed(
    vendor: Vendor, platform: str
) -> None:
    vendor.script[platform] = [503]
    ctx = context(vendor.settings(), vendor.secrets())
    with pytest.raises(ActionFailed) as failed:
        await call("chat", ctx, text="x", platform=platform)
    assert failed.value.retryable
    await call("chat", ctx, text="x", platform=platform)
    assert len(vendor.of(platform)) == 2


@pytest.mark.parametrize("platform", ["slack", "teams"])
async def test_a_wrong_webhook_is_not_retried(vendor: Vendor, platform: str) -> None:
    secrets = Secrets({f"{platform}_webhook_url": f"{vendor.base}/{platform}/hooks/nope"})
    with pytest.raises(ActionFailed) as failed:
        await call("chat", context(vendor.settings(), secrets), text="x", platform=platform)
    assert not failed.value.retryable
    assert "404" in str(failed.value)


@pytest.mark.parametrize("platform", ["slack", "teams"])
async def test_a_hanging_webhook_times_out_and_is_retryable(vendor: Vendor, platform: str) -> None:
    vendor.script[platform] = ["hang"]
    with pytest.raises(ActionFailed) as failed:
        await call(
            "chat", context(vendor.settings(), vendor.secrets()), text="x", platform=platform
        )
    assert failed.value.retryable
    assert "0.5 s" in str(failed.value)


async def test_a_missing_webhook_secret_is_named(vendor: Vendor) -> None:
    from soar.connectors import SecretMissing

    with pytest.raises(SecretMissing, match="teams_webhook_url"):
        await call("chat", context(vendor.settings(), Secrets({})), text="x", platform="teams")


# -- paging -------------------------------------------------------------------------------------


async def test_a_page_triggers_with_a_dedup_key_from_the_idempotency_key(vendor: Vendor) -> None:
    ctx = context(vendor.settings(), vendor.secrets(), key="run-7/escalate")
    out = await call("page", ctx, service="soc-oncall", summary="P1: db down", severity="error")
    (got,) = vendor.of("pagerduty")
    assert got.path == "/v2/enqueue"
    assert isinstance(got.json, dict)
    assert got.json["routing_key"] == ROUTING_KEY
    assert got.json["event_action"] == "trigger"
    payload = got.json["payload"]
    assert isinstance(payload, dict)
    assert payload["summary"] == "P1: db down"
    assert payload["severity"] == "error"
    assert payload["source"] == "soar"
    dumped = out.model_dump()
    assert dumped["dedup_key"] == got.json["dedup_key"] == dumped["id"]
    assert dumped["status"] == "success"
    again = await call(
        "page",
        context(vendor.settings(), vendor.secrets(), key="run-7/escalate"),
        service="soc-oncall",
    )
    assert again.model_dump()["dedup_key"] == dumped["dedup_key"]


async def test_a_rate_limited_page_is_retried_with_the_same_dedup_key(vendor: Vendor) -> None:
    vendor.script["pagerduty"] = [429]
    ctx = context(vendor.settings(), vendor.secrets())
    with pytest.raises(ActionFailed) as failed:
        await call("page", ctx, service="soc")
    assert failed.value.retryable
    assert "429" in str(failed.value)
    assert failed.value.retry_after == 2  # the vendor's Retry-After, for the engine's next try
    await call("page", ctx, service="soc")
    first, second = vendor.of("pagerduty")
    assert isinstance(first.json, dict)
    assert isinstance(second.json, dict)
    assert first.json["dedup_key"] == second.json["dedup_key"]


async def test_a_bad_page_is_not_retried(vendor: Vendor) -> None:
    vendor.script["pagerduty"] = [400]
    with pytest.raises(ActionFailed) as failed:
        await call("page", context(vendor.settings(), vendor.secrets()), service="soc")
    assert not failed.value.retryable


async def test_a_pagerduty_outage_is_retryable(vendor: Vendor) -> None:
    vendor.script["pagerduty"] = [502, "hang"]
    ctx = context(vendor.settings(), vendor.secrets())
    for _ in range(2):
        with pytest.raises(ActionFailed) as failed:
            await call("page", ctx, service="soc")
        assert failed.value.retryable


async def test_the_compensation_of_a_page_resolves_the_same_alert(vendor: Vendor) -> None:
    from soar_notify import notify

    assert notify.actions["page"].compensate == "notify.resolve_page"
    ctx = context(vendor.settings(), vendor.secrets())
    sent = await call("page", ctx, service="soc")
    dedup = sent.model_dump()["dedup_key"]
    await call(
        "acknowledge_page", context(vendor.settings(), vendor.secrets(), key="k2"), dedup_key=dedup
    )
    done = await call(
        "resolve_page", context(vendor.settings(), vendor.secrets(), key="k3"), dedup_key=dedup
    )
    actions = [(r.json["event_action"], r.json["dedup_key"]) for r in vendor.of("pagerduty")]  # type: ignore[index,call-overload]
    assert actions == [("trigger", dedup), ("acknowledge", dedup), ("resolve", dedup)]
    assert "payload" not in vendor.of("pagerduty")[2].json  # type: ignore[operator]
    assert done.model_dump()["event_action"] == "resolve"


# -- sms ----------------------------------------------------------------------------------------


async def test_sms_posts_the_twilio_form_with_basic_auth(vendor: Vendor) -> None:
    ctx = context(vendor.settings(), vendor.secrets())
    out = await call("sms", ctx, to=["+4915112345678", "+14155550100"], body="P1: db down")
    got = vendor.of("twilio")
    assert [r.path for r in got] == [f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"] * 2
    assert [r.form for r in got] == [
        {"To": "+4915112345678", "From": "+15005550006", "Body": "P1: db down"},
        {"To": "+14155550100", "From": "+15005550006", "Body": "P1: db down"},
    ]
    dumped = out.model_dump()
    assert len(dumped["ids"]) == 2
    assert all(i.startswith("SM") for i in dumped["ids"])


async def test_a_wrong_auth_token_is_not_retried(vendor: Vendor) -> None:
    secrets = Secrets({"twilio_auth_token": "wrong"})
    with pytest.raises(ActionFailed) as failed:
        await call("sms", context(vendor.settings(), secrets), to=["+14155550100"], body="x")
    assert not failed.value.retryable
    assert "401" in str(failed.value)


async def test_sms_server_errors_and_timeouts_are_retryable(vendor: Vendor) -> None:
    vendor.script["twilio"] = [500, "hang"]
    ctx = context(vendor.settings(), vendor.secrets())
    for _ in range(2):
        with pytest.raises(ActionFailed) as failed:
            await call("sms", ctx, to=["+14155550100"], body="x")
        assert failed.value.retryable
    await call("sms", ctx, to=["+14155550100"], body="x")
    assert len(vendor.of("twilio")) == 3


async def test_a_number_that_is_not_e164_is_refused_before_sending(vendor: Vendor) -> None:
    with pytest.raises(ActionFailed) as failed:
        await call("sms", context(vendor.settings(), vendor.secrets()), to=["0151 123"], body="x")
    assert not failed.value.retryable
    assert vendor.of("twilio") == []


async def test_an_unreachable_gateway_is_retryable(vendor: Vendor) -> None:
    from soar_notify.testing import free_port

    settings = {**vendor.settings(), "twilio_url": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(ActionFailed) as failed:
        await call("sms", context(settings, vendor.secrets()), to=["+14155550100"], body="x")
    assert failed.value.retryable


async def test_a_slack_reply_that_is_not_ok_is_not_retried(vendor: Vendor) -> None:
    vendor.script["slack"] = [200]
    with pytest.raises(ActionFailed, match="not 'ok'") as failed:
        await call("chat", context(vendor.settings(), vendor.secrets()), text="x")
    assert not failed.value.retryable


async def test_a_rate_limited_sms_is_retryable_and_says_when(vendor: Vendor) -> None:
    vendor.script["twilio"] = [429]
    ctx = context(vendor.settings(), vendor.secrets())
    with pytest.raises(ActionFailed, match="retry after 2 s") as failed:
        await call("sms", ctx, to=["+14155550100"], body="x")
    assert failed.value.retryable


async def test_a_malformed_account_sid_is_refused_by_the_settings(vendor: Vendor) -> None:
    settings = {**vendor.settings(), "twilio_account_sid": "AC../../evil"}
    with pytest.raises(ActionFailed, match="twilio_account_sid") as failed:
        await call("sms", context(settings, vendor.secrets()), to=["+14155550100"], body="x")
    assert not failed.value.retryable
    assert vendor.of("twilio") == []


def test_a_webhook_echoed_without_its_host_is_still_hidden() -> None:
    from soar_notify._http import scrub

    url = "https://hooks.slack.com/services/T0001/B0002/canarytokenvalue"
    text = scrub(
        "invalid_token for /services/T0001/B0002/canarytokenvalue (canarytokenvalue)", [url]
    )
    assert "canarytokenvalue" not in text
    assert text.startswith("invalid_token for ***")
