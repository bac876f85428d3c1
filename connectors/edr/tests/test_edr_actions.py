"""Every `edr` action against the Falcon-shaped test server: success, refusal, slowness, limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from pydantic import BaseModel
from soar_edr import edr
from soar_edr.testing import FalconTestServer

from soar.connectors import ActionContext, ActionFailed, Secrets

CONTAINMENT = "/devices/entities/devices-actions/v2"


async def call(
    falcon: FalconTestServer,
    action: str,
    key: str = "run-1:step",
    settings: dict[str, object] | None = None,
    **inputs: object,
) -> BaseModel:
    spec = edr.actions[action]
    ctx = ActionContext(
        key, settings={**falcon.settings, **(settings or {})}, secrets=falcon.secrets
    )
    return await spec.fn(ctx, spec.input_model.model_validate(inputs))


async def test_get_host_reads_the_device_record(falcon: FalconTestServer) -> None:
    host = await call(falcon, "get_host", host="web-01")
    assert host.model_dump() == {
        "host": "web-01",
        "device_id": falcon.host("web-01").device_id,
        "hostname": "web-01",
        "status": "normal",
        "isolated": False,
        "platform": "Windows",
        "os_version": "Windows 11",
        "local_ip": "10.0.0.5",
        "last_seen": "2026-11-29T07:00:00Z",
    }
    query = next(s for s in falcon.seen if s.path == "/devices/queries/devices/v1")
    assert query.query == {"filter": "hostname:'web-01'"}
    assert edr.actions["get_host"].cache_ttl is not None


async def test_a_device_id_is_used_as_it_is(falcon: FalconTestServer) -> None:
    device_id = falcon.host("db-01").device_id
    host = await call(falcon, "get_host", host=device_id)
    assert (host.hostname, host.isolated) == ("db-01", True)  # type: ignore[attr-defined]
    assert not [s for s in falcon.seen if s.path == "/devices/queries/devices/v1"]
    with pytest.raises(ActionFailed, match="404") as failed:
        await call(falcon, "get_host", host="0" * 32)
    assert failed.value.retryable is False


async def test_an_unknown_host_is_a_final_failure(falcon: FalconTestServer) -> None:
    with pytest.raises(ActionFailed, match="no host named 'nope-01'") as failed:
        await call(falcon, "get_host", host="nope-01")
    assert failed.value.retryable is False


async def test_isolating_contains_the_host_and_passes_the_idempotency_key(
    falcon: FalconTestServer,
) -> None:
    result = await call(falcon, "isolate_host", key="run-1:isolate", host="web-01")
    assert result.model_dump(include={"isolated", "changed", "status"}) == {
        "isolated": True,
        "changed": True,
        "status": "contained",
    }
    [write] = falcon.writes(CONTAINMENT)
    assert write.query == {"action_name": "contain"}
    assert write.idempotency_key == "run-1:isolate"
    assert falcon.host("web-01").status == "contained"


async def test_isolating_twice_with_the_same_key_contains_once(falcon: FalconTestServer) -> None:
    first = await call(falcon, "isolate_host", key="run-1:isolate", host="web-01")
    second = await call(falcon, "isolate_host", key="run-1:isolate", host="web-01")
    assert (first.changed, second.changed) == (True, False)  # type: ignore[attr-defined]
    device_id = falcon.host("web-01").device_id
    assert falcon.effects[f"contain:{device_id}"] == 1
    assert len(falcon.writes(CONTAINMENT)) == 1


async def test_releasing_lifts_containment_and_a_free_host_is_left_alone(
    falcon: FalconTestServer,
) -> None:
    released = await call(falcon, "release_host", host="db-01")
    assert (released.isolated, released.changed) == (False, True)  # type: ignore[attr-defined]
    assert falcon.writes(CONTAINMENT)[0].query == {"action_name": "lift_containment"}
    again = await call(falcon, "release_host", host="web-01")
    assert again.changed is False  # type: ignore[attr-defined]
    assert len(falcon.writes(CONTAINMENT)) == 1


async def test_verify_probes_report_the_state_in_place(falcon: FalconTestServer) -> None:
    spec = edr.actions["isolate_host"]
    assert spec.verify is not None
    ctx = ActionContext("k", settings=falcon.settings, secrets=falcon.secrets)
    params = spec.input_model.model_validate({"host": "web-01"})
    assert await spec.verify(ctx, params) is None
    await call(falcon, "isolate_host", host="web-01")
    found = await spec.verify(ctx, params)
    assert found is not None
    assert found.isolated is True  # type: ignore[attr-defined]


async def test_kill_process_kills_once_and_a_gone_pid_is_unchanged(
    falcon: FalconTestServer,
) -> None:
    falcon.pending_polls = 2
    killed = await call(falcon, "kill_process", key="run-1:kill", host="web-01", pid=4242)
    assert (killed.pid, killed.changed) == (4242, True)  # type: ignore[attr-defined]
    again = await call(falcon, "kill_process", key="run-1:kill", host="web-01", pid=4242)
    assert again.changed is False  # type: ignore[attr-defined]
    assert falcon.effects[f"kill:{falcon.host('web-01').device_id}:4242"] == 1
    command = "/real-time-response/entities/active-responder-command/v1"
    assert {w.idempotency_key for w in falcon.writes(command)} == {"run-1:kill"}


async def test_a_refused_kill_is_a_final_failure_with_the_edr_message(
    falcon: FalconTestServer,
) -> None:
    falcon.host("web-01").protected.add(4)
    with pytest.raises(ActionFailed, match="Access is denied") as failed:
        await call(falcon, "kill_process", host="web-01", pid=4)
    assert failed.value.retryable is False


async def test_forensic_collection_gets_the_file_once(falcon: FalconTestServer) -> None:
    path = r"C:\evil.exe"
    first = await call(falcon, "start_forensic_collection", host="web-01", path=path)
    assert first.model_dump(include={"filename", "size", "changed"}) == {
        "filename": path,
        "size": 13,
        "changed": True,
    }
    second = await call(falcon, "start_forensic_collection", host="web-01", path=path)
    assert second.changed is False  # type: ignore[attr-defined]
    assert second.sha256 == first.sha256  # type: ignore[attr-defined]
    assert falcon.effects[f"get:{falcon.host('web-01').device_id}:{path}"] == 1


async def test_collecting_a_missing_file_fails_with_the_edr_message(
    falcon: FalconTestServer,
) -> None:
    with pytest.raises(ActionFailed, match="not found") as failed:
        await call(falcon, "start_forensic_collection", host="web-01", path="C:\\none")
    assert failed.value.retryable is False


ACTIONS = [
    pytest.param("get_host", {"host": "web-01"}, id="get_host"),
    pytest.param("isolate_host", {"host": "web-01"}, id="isolate_host"),
    pytest.param("release_host", {"host": "db-01"}, id="release_host"),
    pytest.param("kill_process", {"host": "web-01", "pid": 4242}, id="kill_process"),
    pytest.param(
        "start_forensic_collection",
        {"host": "web-01", "path": r"C:\evil.exe"},
        id="start_forensic_collection",
    ),
]


FAILURES = [  # the server's trouble, the failure's message, whether it is retryable
    pytest.param(lambda f: f.fail(1, 503), "503", True, id="server-error"),
    pytest.param(  # the token request goes through: the 400 hits the API
        lambda f: f.fail(1, 400, after=1),
        r"400 to [A-Z]+ /.*internal server error",
        False,
        id="400",
    ),
    pytest.param(lambda f: f.rate_limit(1, 3600), r"rate limited.*3600s", True, id="rate-limited"),
]


@pytest.mark.parametrize(("trouble", "message", "retryable"), FAILURES)
@pytest.mark.parametrize(("action", "inputs"), ACTIONS)
async def test_a_failure_says_whether_to_retry_and_the_next_attempt_succeeds(
    falcon: FalconTestServer,
    action: str,
    inputs: dict[str, object],
    trouble: Callable[[FalconTestServer], None],
    message: str,
    retryable: bool,
) -> None:
    trouble(falcon)
    with pytest.raises(ActionFailed, match=message) as failed:
        await call(falcon, action, **inputs)
    assert failed.value.retryable is retryable
    # a rate limit tells the engine when to come back; other failures leave it to the policy
    assert failed.value.retry_after == (3600 if "rate limited" in message else None)
    await call(falcon, action, **inputs)


@pytest.mark.parametrize(("action", "inputs"), ACTIONS)
async def test_a_short_rate_limit_is_waited_out(
    falcon: FalconTestServer, action: str, inputs: dict[str, object]
) -> None:
    falcon.rate_limit(times=1, retry_after=0.05)
    await call(falcon, action, **inputs)
    assert sum(1 for s in falcon.seen if s.path != "/oauth2/token") >= 2


@pytest.mark.parametrize(("action", "inputs"), ACTIONS)
async def test_a_slow_answer_times_out_as_retryable(
    falcon: FalconTestServer, action: str, inputs: dict[str, object]
) -> None:
    falcon.slow(seconds=0.5, times=1)
    with pytest.raises(ActionFailed, match="did not answer in time") as failed:
        await call(falcon, action, settings={"request_timeout": 0.1}, **inputs)
    assert failed.value.retryable is True


@pytest.mark.parametrize(("action", "inputs"), ACTIONS)
async def test_an_expired_token_is_fetched_again(
    falcon: FalconTestServer, action: str, inputs: dict[str, object]
) -> None:
    await call(falcon, "get_host", host="web-01")
    assert falcon.token_requests == 1
    falcon.expire_tokens()
    await call(falcon, action, **inputs)
    assert falcon.token_requests == 2


async def test_the_token_is_cached_across_calls(falcon: FalconTestServer) -> None:
    await call(falcon, "get_host", host="web-01")
    await call(falcon, "get_host", host="db-01")
    assert falcon.token_requests == 1


async def test_a_token_about_to_expire_is_not_used(falcon: FalconTestServer) -> None:
    falcon.expires_in = 1  # used for half its lifetime
    await call(falcon, "get_host", host="web-01")
    await call(falcon, "get_host", host="web-01")
    assert falcon.token_requests == 1
    await asyncio.sleep(0.6)
    await call(falcon, "get_host", host="web-01")
    assert falcon.token_requests == 2


async def test_wrong_credentials_are_final_and_name_no_secret(falcon: FalconTestServer) -> None:
    spec = edr.actions["get_host"]
    ctx = ActionContext(
        "k",
        settings=falcon.settings,
        secrets=Secrets({"client_id": "someone-else", "client_secret": "wrong-secret-9"}),
    )
    with pytest.raises(ActionFailed, match="403") as failed:
        await spec.fn(ctx, spec.input_model.model_validate({"host": "web-01"}))
    assert failed.value.retryable is False
    assert "wrong-secret-9" not in str(failed.value)


async def test_an_unreachable_edr_is_retryable() -> None:
    spec = edr.actions["get_host"]
    async with FalconTestServer() as server:
        settings, secrets = server.settings, server.secrets
    ctx = ActionContext("k", settings=settings, secrets=secrets)  # the server is gone
    with pytest.raises(ActionFailed, match="unreachable") as failed:
        await spec.fn(ctx, spec.input_model.model_validate({"host": "web-01"}))
    assert failed.value.retryable is True


async def test_a_missing_base_url_is_a_final_failure(falcon: FalconTestServer) -> None:
    spec = edr.actions["get_host"]
    ctx = ActionContext("k", settings={}, secrets=falcon.secrets)
    with pytest.raises(ActionFailed, match="base_url") as failed:
        await spec.fn(ctx, spec.input_model.model_validate({"host": "web-01"}))
    assert failed.value.retryable is False


async def test_the_client_secret_shows_nowhere(
    falcon: FalconTestServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = falcon.client_secret
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    outputs = [
        await call(falcon, "get_host", host="web-01"),
        await call(falcon, "isolate_host", host="web-01"),
        await call(falcon, "kill_process", host="web-01", pid=4242),
    ]
    texts += [o.model_dump_json() for o in outputs]
    for switch in (lambda: falcon.fail(1, 500), lambda: falcon.fail(1, 404), falcon.expire_tokens):
        switch()
        try:
            await call(falcon, "release_host", host="web-01")
        except ActionFailed as exc:
            texts += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
    spec = edr.actions["get_host"]
    ctx = ActionContext("k", settings=falcon.settings, secrets=falcon.secrets)
    falcon.client_secret = "rotated"  # noqa: S105 - the next token request is refused
    falcon.expire_tokens()
    with pytest.raises(ActionFailed) as refused:
        await spec.fn(ctx, spec.input_model.model_validate({"host": "web-01"}))
    texts += [str(refused.value), repr(refused.value)]
    await asyncio.sleep(0)
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    texts += [s.body + repr(s.query) for s in falcon.seen]
    assert not [t for t in texts if secret in t]
