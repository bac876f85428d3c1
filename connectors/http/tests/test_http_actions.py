"""`http.get` and `http.request` against a loopback origin: answers, bodies, statuses, secrets,
redirects, size and time limits."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from http_test_servers import CANARY, Origin
from pydantic import BaseModel, ValidationError
from soar_http import http

from soar.connectors import ActionContext, ActionFailed, Secrets


async def call(
    action: str,
    settings: dict[str, Any],
    *,
    key: str = "run-1:step",
    secrets: dict[str, str] | None = None,
    dry_run: bool = False,
    **inputs: object,
) -> Any:
    spec = http.actions[action]
    ctx = ActionContext(key, settings=settings, secrets=Secrets(secrets or {}), dry_run=dry_run)
    output: BaseModel = await spec.fn(ctx, spec.input_model.model_validate(inputs))
    return output


def test_get_is_idempotent_and_cached_and_request_is_not() -> None:
    get, request = http.actions["get"], http.actions["request"]
    assert (get.idempotent, get.cache_ttl is not None) == (True, True)
    assert (request.idempotent, request.cache_ttl) == (False, None)
    assert get.target_field == request.target_field == "url"


async def test_get_from_an_allowed_host(origin: Origin) -> None:
    out = await call("get", origin.settings(), url=f"{origin.url}/ok")
    assert (out.status, out.data, out.headers["x-origin"]) == (200, {"ok": True}, "test")
    assert out.url == f"{origin.url}/ok"
    assert out.size == len(out.body)


async def test_head_has_no_body(origin: Origin) -> None:
    out = await call("get", origin.settings(), url=f"{origin.url}/ok", method="HEAD")
    assert (out.status, out.body, out.size) == (200, "", 0)


async def test_request_posts_json_and_can_send_the_idempotency_key(origin: Origin) -> None:
    out = await call(
        "request",
        origin.settings(),
        key="run-7:notify",
        url=f"{origin.url}/echo",
        method="POST",
        json={"alert": "a1", "n": [1, 2]},
        headers={"X-Custom": "yes"},
        send_idempotency_key=True,
    )
    echoed = out.data
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"alert": "a1", "n": [1, 2]}
    assert echoed["headers"]["Content-Type"] == "application/json"
    assert echoed["headers"]["Idempotency-Key"] == "run-7:notify"
    assert echoed["headers"]["X-Custom"] == "yes"


async def test_request_sends_a_text_body(origin: Origin) -> None:
    out = await call(
        "request", origin.settings(), url=f"{origin.url}/echo", method="PUT", body="plain"
    )
    assert (out.data["method"], out.data["body"]) == ("PUT", "plain")


async def test_json_and_body_together_are_refused(origin: Origin) -> None:
    with pytest.raises(ActionFailed, match="not both"):
        await call(
            "request", origin.settings(), url=f"{origin.url}/echo", method="POST", json={}, body="x"
        )


async def test_a_post_is_not_sent_in_a_dry_run(origin: Origin) -> None:
    with pytest.raises(ActionFailed, match="dry run"):
        await call(
            "request", origin.settings(), url=f"{origin.url}/echo", method="POST", dry_run=True
        )
    assert origin.hits == []


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        pytest.param(404, False, id="404-final"),
        pytest.param(400, False, id="400-final"),
        pytest.param(429, True, id="429-retryable"),
        pytest.param(503, True, id="503-retryable"),
    ],
)
async def test_an_unexpected_status_fails(origin: Origin, code: int, retryable: bool) -> None:
    with pytest.raises(ActionFailed, match=f"answered {code}") as failed:
        await call("get", origin.settings(), url=f"{origin.url}/status/{code}")
    assert failed.value.retryable is retryable


async def test_an_expected_status_is_an_answer(origin: Origin) -> None:
    out = await call(
        "get", origin.settings(), url=f"{origin.url}/status/404", expect_status=[200, 404]
    )
    assert (out.status, out.body) == (404, "status")
    with pytest.raises(ActionFailed, match="answered 200"):
        await call("get", origin.settings(), url=f"{origin.url}/ok", expect_status=[201])


async def test_redirects_are_followed_within_the_limit(origin: Origin) -> None:
    hop2 = f"{origin.url}/redirect?to=/ok"
    out = await call("get", origin.settings(), url=f"{origin.url}/redirect?to={hop2}")
    assert (out.status, out.url, len(out.redirects)) == (200, f"{origin.url}/ok", 2)
    with pytest.raises(ActionFailed, match="more than 1 redirects") as failed:
        await call("get", origin.settings(max_redirects=1), url=f"{origin.url}/redirect?to={hop2}")
    assert failed.value.retryable is False
    unfollowed = await call(
        "get",
        origin.settings(),
        url=f"{origin.url}/redirect?to=/ok",
        follow_redirects=False,
        expect_status=[302],
    )
    assert (unfollowed.status, unfollowed.headers["location"]) == (302, "/ok")


async def test_a_303_turns_a_post_into_a_get(origin: Origin) -> None:
    out = await call(
        "request",
        origin.settings(),
        url=f"{origin.url}/redirect?status=303&to=/echo",
        method="POST",
        json={"a": 1},
    )
    assert (out.data["method"], out.data["body"]) == ("GET", "")


@pytest.mark.parametrize(
    "path", [pytest.param("/big", id="streamed"), pytest.param("/declared", id="declared")]
)
async def test_an_oversize_response_is_refused(origin: Origin, path: str) -> None:
    with pytest.raises(ActionFailed, match="over the limit of 4096") as failed:
        await call("get", origin.settings(max_bytes=4096), url=f"{origin.url}{path}")
    assert failed.value.retryable is False
    with pytest.raises(ActionFailed, match="over the limit of 100"):
        await call("get", origin.settings(), url=f"{origin.url}{path}", max_bytes=100)


async def test_a_slow_response_times_out_as_retryable(origin: Origin) -> None:
    with pytest.raises(ActionFailed, match="did not answer in time") as failed:
        await call(
            "get", origin.settings(), url=f"{origin.url}/slow?seconds=0.6", timeout_seconds=0.2
        )
    assert failed.value.retryable is True
    with pytest.raises(ActionFailed, match="did not answer in time"):
        await call("get", origin.settings(timeout=0.2), url=f"{origin.url}/slow?seconds=0.6")


@pytest.mark.parametrize(
    ("action", "method"), [("get", "GET"), ("request", "POST"), ("request", "DELETE")]
)
async def test_every_action_fails_retryably_and_then_succeeds(
    origin: Origin, action: str, method: str
) -> None:
    with pytest.raises(ActionFailed, match="answered 503") as failed:
        await call(action, origin.settings(), url=f"{origin.url}/flaky", method=method)
    assert failed.value.retryable is True
    out = await call(action, origin.settings(), url=f"{origin.url}/flaky", method=method)
    assert out.status == 200


@pytest.mark.parametrize(("action", "method"), [("get", "GET"), ("request", "POST")])
async def test_every_action_times_out_as_retryable(
    origin: Origin, action: str, method: str
) -> None:
    with pytest.raises(ActionFailed, match="did not answer in time") as failed:
        await call(
            action,
            origin.settings(),
            url=f"{origin.url}/slow?seconds=0.6",
            method=method,
            timeout_seconds=0.2,
        )
    assert failed.value.retryable is True


async def test_an_unreachable_host_is_retryable(origin: Origin) -> None:
    settings = origin.settings()
    async for closed in _closed_port():
        with pytest.raises(ActionFailed, match="unreachable") as failed:
            await call("get", settings, url=f"http://127.0.0.1:{closed}/ok")
        assert failed.value.retryable is True


async def _closed_port():  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        pytest.param({"allowed_hosts": "127.0.0.1"}, "allowed_hosts", id="hosts-not-a-list"),
        pytest.param({"allowed_hosts": ["bad host!"]}, "not a host name", id="bad-host"),
        pytest.param({"allowed_networks": ["10.0.0.0/99"]}, "allowed_networks", id="bad-net"),
        pytest.param({"allow_private": "yes"}, "allow_private", id="private-not-bool"),
        pytest.param({"max_bytes": -1}, "max_bytes", id="negative-max"),
    ],
)
async def test_bad_settings_are_a_final_failure(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ActionFailed, match=problem) as failed:
        await call("get", settings, url="http://example.com/")
    assert failed.value.retryable is False


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Host": "internal"}, id="host"),
        pytest.param({"X-A": "a\r\nX-B: b"}, id="crlf"),
        pytest.param({"Bad Name": "x"}, id="bad-name"),
        pytest.param({"Transfer-Encoding": "chunked"}, id="framing"),
    ],
)
def test_headers_that_change_the_request_framing_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        http.actions["request"].input_model.model_validate(
            {"url": "http://example.com/", "headers": headers}
        )


# secrets: named by slot, bound to hosts, never shown


def _secret_settings(origin: Origin) -> dict[str, Any]:
    return origin.settings(secret_hosts={"secret_1": ["127.0.0.1"]})


async def test_a_secret_header_is_sent_and_hidden_in_the_output(origin: Origin) -> None:
    out = await call(
        "get",
        _secret_settings(origin),
        secrets={"secret_1": CANARY},
        url=f"{origin.url}/echo",
        secret_headers={"Authorization": {"secret": "secret_1", "prefix": "Bearer "}},
    )
    assert out.data["headers"]["Authorization"] == "Bearer ***"
    assert CANARY not in out.model_dump_json()


async def test_a_secret_goes_only_to_its_hosts(origin: Origin) -> None:
    with pytest.raises(ActionFailed, match=r"may not be sent to 127\.0\.0\.1") as failed:
        await call(
            "get",
            origin.settings(),
            secrets={"secret_1": CANARY},
            url=f"{origin.url}/echo",
            secret_headers={"Authorization": {"secret": "secret_1"}},
        )
    assert failed.value.retryable is False
    assert origin.hits == []


async def test_a_missing_secret_is_a_final_failure(origin: Origin) -> None:
    with pytest.raises(ActionFailed, match="secret_1") as failed:
        await call(
            "get",
            _secret_settings(origin),
            url=f"{origin.url}/echo",
            secret_headers={"Authorization": {"secret": "secret_1"}},
        )
    assert failed.value.retryable is False


async def test_a_redirect_to_another_origin_drops_the_secret(
    origin: Origin, other_origin: Origin
) -> None:
    out = await call(
        "get",
        _secret_settings(origin),
        secrets={"secret_1": CANARY},
        url=f"{origin.url}/redirect?to={other_origin.url}/echo",
        secret_headers={"Authorization": {"secret": "secret_1"}},
    )
    assert out.url == f"{other_origin.url}/echo"
    assert "Authorization" not in out.data["headers"]


async def test_the_secret_shows_nowhere(
    origin: Origin, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _secret_settings(origin)
    header = {"Authorization": {"secret": "secret_1", "prefix": "token "}}
    texts: list[str] = []
    for path in ("/echo", "/status/500", "/status/404", "/big", "/slow?seconds=0.6"):
        try:
            out = await call(
                "request",
                {**settings, "max_bytes": 1000},
                secrets={"secret_1": CANARY},
                url=f"{origin.url}{path}",
                method="POST",
                json={"note": "no secret here"},
                secret_headers=header,
                timeout_seconds=0.3,
            )
            texts.append(out.model_dump_json())
        except ActionFailed as exc:
            texts += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    assert len(texts) > 5
    assert not [t for t in texts if CANARY in t]
