"""Every `ticket` action against the Freshservice-shaped test server: success, refusal,
slowness, rate limits, taking effect once, and the API key kept out of sight."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable

import pytest
from pydantic import BaseModel, ValidationError
from soar_ticket import marker_of, ticket
from soar_ticket.testing import FreshserviceTestServer

from soar.connectors import ActionContext, ActionFailed, Secrets

NEW = {
    "subject": "Account alice suspended",
    "description": "<p>Suspicious logins from 203.0.113.9</p>",
    "email": "soc@example.com",
    "priority": 4,
    "group_id": 12,
    "custom_fields": {"incident_kind": "account"},
}


MARKER_MODES = [  # where a created ticket carries its step's marker
    pytest.param({}, id="marker-in-description"),
    pytest.param({"idempotency_field": "soar_ref"}, id="custom-field"),
]


async def call(
    helpdesk: FreshserviceTestServer,
    action: str,
    key: str = "run-1:step",
    settings: dict[str, object] | None = None,
    **inputs: object,
) -> BaseModel:
    spec = ticket.actions[action]
    ctx = ActionContext(
        key, settings={**helpdesk.settings, **(settings or {})}, secrets=helpdesk.secrets
    )
    return await spec.fn(ctx, spec.input_model.model_validate(inputs))


async def test_create_ticket_posts_the_freshservice_shape(
    helpdesk: FreshserviceTestServer,
) -> None:
    created = await call(helpdesk, "create_ticket", key="run-1:open", **NEW)
    assert created.model_dump(exclude={"id", "url"}) == {
        "subject": "Account alice suspended",
        "status": 2,
        "status_name": "open",
        "priority": 4,
        "requester_id": 7,
        "group_id": 12,
        "responder_id": None,
        "custom_fields": {"incident_kind": "account"},
        "changed": True,
    }
    assert created.url == f"{helpdesk.url}/a/tickets/{created.id}"  # type: ignore[attr-defined]
    [post] = helpdesk.writes()
    assert post.path == "/api/v2/tickets"
    body = json.loads(post.body)
    assert body["email"] == "soc@example.com"
    assert body["source"] == 2
    assert marker_of("run-1:open") in body["description"]
    expected = base64.b64encode(f"{helpdesk.api_key}:X".encode()).decode()
    assert post.authorization == f"Basic {expected}"


@pytest.mark.parametrize("settings", MARKER_MODES)
async def test_creating_twice_with_the_same_key_creates_one_ticket(
    helpdesk: FreshserviceTestServer, settings: dict[str, object]
) -> None:
    helpdesk.add_ticket(subject="someone else's")
    first = await call(helpdesk, "create_ticket", key="run-1:open", settings=settings, **NEW)
    second = await call(helpdesk, "create_ticket", key="run-1:open", settings=settings, **NEW)
    assert (first.changed, second.changed) == (True, False)  # type: ignore[attr-defined]
    assert first.id == second.id  # type: ignore[attr-defined]
    assert helpdesk.effects["create"] == 1
    other = await call(helpdesk, "create_ticket", key="run-2:open", settings=settings, **NEW)
    assert other.id != first.id  # type: ignore[attr-defined]
    assert helpdesk.effects["create"] == 2


@pytest.mark.parametrize("settings", MARKER_MODES)
async def test_a_create_whose_answer_was_lost_is_not_repeated(
    helpdesk: FreshserviceTestServer, settings: dict[str, object]
) -> None:
    helpdesk.lose_answers(seconds=0.5, times=1)
    with pytest.raises(ActionFailed, match="did not answer in time") as failed:
        await call(
            helpdesk,
            "create_ticket",
            key="run-1:open",
            settings={**settings, "request_timeout": 0.2},
            **NEW,
        )
    assert failed.value.retryable is True
    assert helpdesk.effects["create"] == 1  # it did take effect
    retried = await call(helpdesk, "create_ticket", key="run-1:open", settings=settings, **NEW)
    assert retried.changed is False  # type: ignore[attr-defined]
    assert [t["id"] for t in helpdesk.tickets.values()] == [retried.id]  # type: ignore[attr-defined]
    assert helpdesk.effects["create"] == 1


async def test_a_comment_whose_answer_was_lost_is_not_repeated(
    helpdesk: FreshserviceTestServer,
) -> None:
    record = helpdesk.add_ticket()
    helpdesk.lose_answers(seconds=0.5, times=1)
    inputs = {"ticket_id": record["id"], "body": "diagnosis"}
    with pytest.raises(ActionFailed, match="did not answer in time"):
        await call(helpdesk, "comment_ticket", settings={"request_timeout": 0.2}, **inputs)
    again = await call(helpdesk, "comment_ticket", **inputs)
    assert again.changed is False  # type: ignore[attr-defined]
    assert helpdesk.effects[f"note:{record['id']}"] == 1


async def test_the_custom_field_mode_searches_with_the_filter_query(
    helpdesk: FreshserviceTestServer,
) -> None:
    settings = {"idempotency_field": "soar_ref"}
    created = await call(helpdesk, "create_ticket", key="k1", settings=settings, **NEW)
    assert created.custom_fields["soar_ref"] == marker_of("k1")  # type: ignore[attr-defined]
    [search, *_] = [s for s in helpdesk.seen if s.path == "/api/v2/tickets/filter"]
    assert search.query == {"query": f"\"soar_ref:'{marker_of('k1')}'\""}


async def test_a_create_retried_after_a_lost_answer_finds_its_ticket(
    helpdesk: FreshserviceTestServer,
) -> None:
    spec = ticket.actions["create_ticket"]
    assert spec.verify is not None
    ctx = ActionContext("run-9:open", settings=helpdesk.settings, secrets=helpdesk.secrets)
    params = spec.input_model.model_validate(NEW)
    assert await spec.verify(ctx, params) is None
    created = await spec.fn(ctx, params)
    found = await spec.verify(ctx, params)
    assert found is not None
    assert found.id == created.id  # type: ignore[attr-defined]


def test_a_ticket_needs_a_requester() -> None:
    spec = ticket.actions["create_ticket"]
    with pytest.raises(ValidationError, match="requester"):
        spec.input_model.model_validate({"subject": "s", "description": "d"})
    with pytest.raises(ValidationError, match="priority"):
        spec.input_model.model_validate({**NEW, "priority": 5})


async def test_get_ticket_reads_it_and_an_unknown_one_is_final(
    helpdesk: FreshserviceTestServer,
) -> None:
    record = helpdesk.add_ticket(subject="disk full", responder_id=31, status=3)
    got = await call(helpdesk, "get_ticket", ticket_id=record["id"])
    assert got.model_dump(include={"subject", "responder_id", "status_name", "changed"}) == {
        "subject": "disk full",
        "responder_id": 31,
        "status_name": "pending",
        "changed": False,
    }
    with pytest.raises(ActionFailed, match="no such record") as failed:
        await call(helpdesk, "get_ticket", ticket_id=999_999)
    assert failed.value.retryable is False


async def test_update_writes_only_what_differs_and_keeps_the_old_values(
    helpdesk: FreshserviceTestServer,
) -> None:
    record = helpdesk.add_ticket(priority=2, custom_fields={"a": 1, "b": 2})
    updated = await call(
        helpdesk,
        "update_ticket",
        ticket_id=record["id"],
        priority=4,
        subject="a ticket",
        custom_fields={"a": 1, "b": 3},
    )
    assert updated.changed is True  # type: ignore[attr-defined]
    assert updated.previous == {"priority": 2, "custom_fields": {"b": 2}}  # type: ignore[attr-defined]
    [put] = helpdesk.writes()
    assert json.loads(put.body) == {"priority": 4, "custom_fields": {"b": 3}}
    again = await call(helpdesk, "update_ticket", ticket_id=record["id"], priority=4)
    assert (again.changed, again.previous) == (False, {})  # type: ignore[attr-defined]
    assert len(helpdesk.writes()) == 1


async def test_assign_keeps_the_previous_agent_and_is_unchanged_when_repeated(
    helpdesk: FreshserviceTestServer,
) -> None:
    record = helpdesk.add_ticket(responder_id=31, group_id=5)
    assigned = await call(
        helpdesk, "assign_ticket", ticket_id=record["id"], responder_id=42, group_id=12
    )
    assert assigned.model_dump(
        include={
            "responder_id",
            "group_id",
            "previous_responder_id",
            "previous_group_id",
            "changed",
        }
    ) == {
        "responder_id": 42,
        "group_id": 12,
        "previous_responder_id": 31,
        "previous_group_id": 5,
        "changed": True,
    }
    again = await call(helpdesk, "assign_ticket", ticket_id=record["id"], responder_id=42)
    assert again.changed is False  # type: ignore[attr-defined]
    assert helpdesk.effects[f"update:{record['id']}"] == 1
    restored = await call(
        helpdesk, "assign_ticket", ticket_id=record["id"], responder_id=31, group_id=5
    )
    assert (restored.responder_id, restored.group_id) == (31, 5)  # type: ignore[attr-defined]
    unassigned = await call(helpdesk, "assign_ticket", ticket_id=record["id"], responder_id=None)
    assert unassigned.responder_id is None  # type: ignore[attr-defined]


async def test_resolving_a_resolved_ticket_changes_nothing(
    helpdesk: FreshserviceTestServer,
) -> None:
    record = helpdesk.add_ticket()
    resolved = await call(helpdesk, "resolve_ticket", ticket_id=record["id"])
    assert (resolved.status, resolved.changed) == (4, True)  # type: ignore[attr-defined]
    again = await call(helpdesk, "resolve_ticket", ticket_id=record["id"])
    assert (again.status, again.changed) == (4, False)  # type: ignore[attr-defined]
    assert helpdesk.effects[f"update:{record['id']}"] == 1
    closed = helpdesk.add_ticket(status=5)
    assert (await call(helpdesk, "resolve_ticket", ticket_id=closed["id"])).changed is False  # type: ignore[attr-defined]


async def test_close_and_reopen(helpdesk: FreshserviceTestServer) -> None:
    record = helpdesk.add_ticket()
    closed = await call(helpdesk, "close_ticket", ticket_id=record["id"])
    assert (closed.status_name, closed.changed) == ("closed", True)  # type: ignore[attr-defined]
    assert (await call(helpdesk, "close_ticket", ticket_id=record["id"])).changed is False  # type: ignore[attr-defined]
    reopened = await call(helpdesk, "reopen_ticket", ticket_id=record["id"])
    assert (reopened.status_name, reopened.changed) == ("open", True)  # type: ignore[attr-defined]
    assert (await call(helpdesk, "reopen_ticket", ticket_id=record["id"])).changed is False  # type: ignore[attr-defined]


async def test_a_comment_is_added_once_per_step(helpdesk: FreshserviceTestServer) -> None:
    record = helpdesk.add_ticket()
    first = await call(
        helpdesk, "comment_ticket", key="run-1:note", ticket_id=record["id"], body="<p>diag</p>"
    )
    second = await call(
        helpdesk, "comment_ticket", key="run-1:note", ticket_id=record["id"], body="<p>diag</p>"
    )
    assert (first.changed, second.changed) == (True, False)  # type: ignore[attr-defined]
    assert first.id == second.id  # type: ignore[attr-defined]
    assert first.private is True  # type: ignore[attr-defined]
    public = await call(
        helpdesk,
        "comment_ticket",
        key="run-1:reply",
        ticket_id=record["id"],
        body="We are on it",
        private=False,
    )
    assert public.private is False  # type: ignore[attr-defined]
    assert helpdesk.effects[f"note:{record['id']}"] == 2
    spec = ticket.actions["comment_ticket"]
    assert spec.verify is not None
    ctx = ActionContext("run-1:note", settings=helpdesk.settings, secrets=helpdesk.secrets)
    params = spec.input_model.model_validate({"ticket_id": record["id"], "body": "x"})
    assert await spec.verify(ctx, params) is not None


# every action, against every kind of trouble


def _inputs(helpdesk: FreshserviceTestServer, action: str) -> dict[str, object]:
    ticket_id = helpdesk.add_ticket(responder_id=31)["id"]
    return {
        "create_ticket": NEW,
        "get_ticket": {"ticket_id": ticket_id},
        "update_ticket": {"ticket_id": ticket_id, "priority": 3},
        "assign_ticket": {"ticket_id": ticket_id, "responder_id": 42},
        "comment_ticket": {"ticket_id": ticket_id, "body": "first diagnosis"},
        "resolve_ticket": {"ticket_id": ticket_id},
        "close_ticket": {"ticket_id": ticket_id},
        "reopen_ticket": {"ticket_id": ticket_id},
    }[action]


ACTIONS = sorted(ticket.actions)


def test_every_action_is_covered() -> None:
    assert ACTIONS == [
        "assign_ticket",
        "close_ticket",
        "comment_ticket",
        "create_ticket",
        "get_ticket",
        "reopen_ticket",
        "resolve_ticket",
        "update_ticket",
    ]


FAILURES = [  # the server's trouble, the failure's message, whether it is retryable
    pytest.param(lambda h: h.fail(1, 503), "503", True, id="server-error"),
    pytest.param(lambda h: h.fail(1, 400), "400.*group_id: There is no group", False, id="refused"),
    pytest.param(lambda h: h.rate_limit(1, 3600), r"rate limited.*3600s", True, id="rate-limited"),
]


@pytest.mark.parametrize(("trouble", "message", "retryable"), FAILURES)
@pytest.mark.parametrize("action", ACTIONS)
async def test_a_failure_says_whether_to_retry_and_the_next_attempt_succeeds(
    helpdesk: FreshserviceTestServer,
    action: str,
    trouble: Callable[[FreshserviceTestServer], None],
    message: str,
    retryable: bool,
) -> None:
    inputs = _inputs(helpdesk, action)
    trouble(helpdesk)
    with pytest.raises(ActionFailed, match=message) as failed:
        await call(helpdesk, action, **inputs)
    assert failed.value.retryable is retryable
    # a rate limit tells the engine when to come back; other failures leave it to the policy
    assert failed.value.retry_after == (3600 if "rate limited" in message else None)
    await call(helpdesk, action, **inputs)


@pytest.mark.parametrize("action", ACTIONS)
async def test_a_short_rate_limit_is_waited_out(
    helpdesk: FreshserviceTestServer, action: str
) -> None:
    inputs = _inputs(helpdesk, action)
    helpdesk.rate_limit(times=1, retry_after=0.05)
    await call(helpdesk, action, **inputs)
    assert len(helpdesk.seen) >= 2


@pytest.mark.parametrize("action", ACTIONS)
async def test_a_slow_answer_times_out_as_retryable(
    helpdesk: FreshserviceTestServer, action: str
) -> None:
    inputs = _inputs(helpdesk, action)
    helpdesk.slow(seconds=0.5, times=1)
    with pytest.raises(ActionFailed, match="did not answer in time") as failed:
        await call(helpdesk, action, settings={"request_timeout": 0.1}, **inputs)
    assert failed.value.retryable is True


@pytest.mark.parametrize("action", ACTIONS)
async def test_a_wrong_api_key_is_final_and_not_shown(
    helpdesk: FreshserviceTestServer, action: str
) -> None:
    inputs = _inputs(helpdesk, action)
    spec = ticket.actions[action]
    ctx = ActionContext(
        "k", settings=helpdesk.settings, secrets=Secrets({"api_key": "wrong-key-5678"})
    )
    with pytest.raises(ActionFailed, match="refused the API key") as failed:
        await spec.fn(ctx, spec.input_model.model_validate(inputs))
    assert failed.value.retryable is False
    assert "wrong-key-5678" not in repr(failed.value)


async def test_an_unreachable_helpdesk_is_retryable() -> None:
    async with FreshserviceTestServer() as server:
        settings, secrets = server.settings, server.secrets
    spec = ticket.actions["get_ticket"]
    ctx = ActionContext("k", settings=settings, secrets=secrets)  # the server is gone
    with pytest.raises(ActionFailed, match="unreachable") as failed:
        await spec.fn(ctx, spec.input_model.model_validate({"ticket_id": 1}))
    assert failed.value.retryable is True


async def test_a_missing_base_url_is_a_final_failure(helpdesk: FreshserviceTestServer) -> None:
    spec = ticket.actions["get_ticket"]
    ctx = ActionContext("k", settings={}, secrets=helpdesk.secrets)
    with pytest.raises(ActionFailed, match="base_url") as failed:
        await spec.fn(ctx, spec.input_model.model_validate({"ticket_id": 1}))
    assert failed.value.retryable is False


async def test_the_api_key_shows_nowhere(
    helpdesk: FreshserviceTestServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = helpdesk.api_key
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for action in ACTIONS:
        texts.append((await call(helpdesk, action, **_inputs(helpdesk, action))).model_dump_json())
        for status in (400, 401, 404, 500):
            helpdesk.fail(times=1, status=status)
            try:
                await call(helpdesk, action, **_inputs(helpdesk, action))
            except ActionFailed as exc:
                texts += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
    for slow in (True, False):
        if slow:
            helpdesk.slow(seconds=0.3, times=1)
        else:
            helpdesk.rate_limit(times=1, retry_after=3600)
        with pytest.raises(ActionFailed) as failed:
            await call(helpdesk, "get_ticket", settings={"request_timeout": 0.1}, ticket_id=101)
        texts += [str(failed.value), repr(failed.value)]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text, repr(helpdesk.secrets)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [s.body + repr(s.query) for s in helpdesk.seen]
    assert not [t for t in texts if secret in t]
