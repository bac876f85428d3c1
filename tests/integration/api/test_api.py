"""The API on a real engine: alerts in, approvals decided, runs aborted and compensated, the
audit log queried and verified, drafts validated; refusals are JSON and audited; the canary
secret appears in no answer."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from soar.api.auth import CSRF_HEADER, SESSION_COOKIE, Role
from soar.api.testing import ApiUnderTest
from soar.api.tokens import revoke_token
from soar.models.audit import AuditFilter
from tests.integration.api.conftest import CANARY
from tests.integration.api.http import Client

ALERT = {
    "id": "a-1",
    "source": "edr",
    "title": "Beacon from web-1",
    "severity": "high",
    "time": 1748848132979,
    "hosts": [{"name": "web-1"}],
}


async def until_status(
    client: Client, run_id: str, status: str, step: str | None = None
) -> dict[str, object]:
    """The run once it (or its `step`) has `status`."""
    for _ in range(250):
        code, body = await client.call("GET", f"/api/v1/runs/{run_id}")
        assert code == 200
        steps = {s["key"]: s["status"] for s in body["steps"]}
        if (steps.get(step) if step else body["run"]["status"]) == status:
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} never reached {status}: {body}")


async def start_gated(api: ApiUnderTest, alert_id: str = "a-1") -> str:
    """A run of `gated` posted by the ingest role, once it waits at its approval."""
    async with Client(api, Role.INGEST) as ingest:
        status, body = await ingest.call("POST", "/api/v1/alerts", {**ALERT, "id": alert_id})
    assert status == 202, body
    (accepted,) = body["accepted"]
    assert accepted["id"] == alert_id
    (run_id,) = accepted["runs"]
    async with Client(api, Role.ADMIN) as admin:
        await until_status(admin, run_id, "waiting", step="ask")
    return str(run_id)


async def test_health_and_the_openapi_document(api: ApiUnderTest) -> None:
    async with Client(api, None) as client:
        assert await client.call("GET", "/api/v1/health") == (200, {"status": "ok"})
        status, ready = await client.call("GET", "/api/v1/ready")
        assert (status, ready["ready"], ready["checks"]["store"]) == (200, True, "ok")
        status, document = await client.call("GET", "/api/v1/openapi.json")
    assert status == 200
    assert document["openapi"] == "3.1.0"
    decide = document["paths"]["/api/v1/approvals/{run_id}/{step}"]["post"]
    assert decide["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Decision"
    }
    assert "Decision" in document["components"]["schemas"]


async def test_an_approval_is_decided_and_the_run_goes_on(
    api: ApiUnderTest, effects: list[str]
) -> None:
    async with Client(api, Role.RESPONDER) as client:
        run_id = await start_gated(api)
        status, body = await client.call("GET", "/api/v1/approvals")
        assert status == 200
        (pending,) = body["approvals"]
        assert (pending["run_id"], pending["step"], pending["message"]) == (
            run_id,
            "ask",
            "Isolate web-1?",
        )
        status, decided = await client.call(
            "POST",
            f"/api/v1/approvals/{run_id}/ask",
            {"decision": "approve", "digest": pending["digest"], "comment": "go"},
        )
        assert (status, decided["applied"]) == (200, True), decided
        detail = await until_status(client, run_id, "completed")
    assert effects == ["isolate web-1"]
    steps = {s["key"]: s for s in detail["steps"]}  # type: ignore[union-attr]
    assert steps["ask"]["output"]["approved"] is True
    assert steps["isolate"]["output"]["host"] == "web-1"
    assert CANARY not in json.dumps(detail)  # the action's output held the secret
    records = await api.services.store.query_audit(AuditFilter(run_id=run_id, limit=100))
    decisions = [r for r in records if r.event.kind == "approval.decided"]
    assert [d.event.actor for d in decisions] == ["responder"]  # the token's name: the person
    changes = await api.services.store.query_audit(AuditFilter(kind="api.request", limit=100))
    assert any(f"/approvals/{run_id}/ask" in r.event.body.decode() for r in changes)


async def test_a_decision_on_what_was_not_asked_is_refused(api: ApiUnderTest) -> None:
    async with Client(api, Role.ADMIN) as client:
        run_id = await start_gated(api)
        status, body = await client.call(
            "POST",
            f"/api/v1/approvals/{run_id}/ask",
            {"decision": "approve", "digest": "sha256:" + "0" * 64},
        )
        assert (status, body["error"]["code"]) == (409, "approval_changed")
        status, body = await client.call(
            "POST", f"/api/v1/approvals/{run_id}/nope", {"decision": "deny"}
        )
        assert (status, body["error"]["code"]) == (409, "not_pending")


async def test_an_abort_compensates_what_was_done(api: ApiUnderTest, effects: list[str]) -> None:
    async with Client(api, Role.ADMIN) as client:
        run_id = await start_gated(api)
        status, _ = await client.call(
            "POST", f"/api/v1/approvals/{run_id}/ask", {"decision": "approve"}
        )
        assert status == 200
        await until_status(client, run_id, "completed")
        status, body = await client.call("POST", f"/api/v1/runs/{run_id}/abort", {"reason": "x"})
        assert (status, body["error"]["code"]) == (409, "finished")
        waiting = await start_gated(api, "a-2")
        status, body = await client.call(
            "POST", f"/api/v1/runs/{waiting}/abort", {"reason": "false positive"}
        )
        assert status == 202, body
        await until_status(client, waiting, "aborted")
        status, listed = await client.call("GET", "/api/v1/runs?status=aborted")
    assert [r["id"] for r in listed["runs"]] == [waiting]
    assert effects == ["isolate web-1"]  # the aborted run had done nothing to undo


async def test_a_malformed_alert_is_refused_with_its_reason_and_audited(
    api: ApiUnderTest,
) -> None:
    async with Client(api, Role.INGEST) as client:
        status, body = await client.call(
            "POST",
            "/api/v1/alerts",
            data=b'{"title": "no severity"',
            **{"Content-Type": "application/json"},
        )
        assert status == 422
        (detail,) = body["error"]["details"]
        assert detail["code"] == "not_json"
        status, body = await client.call(
            "POST", "/api/v1/alerts", [ALERT, {**ALERT, "severity": "apocalyptic"}]
        )
        assert status == 422
        (detail,) = body["error"]["details"]
        assert (detail["index"], detail["field"]) == (1, "severity")
    rejected = await api.services.store.query_audit(AuditFilter(kind="alert.rejected", limit=10))
    assert len(rejected) == 2
    assert all(r.event.actor == "api:ingest" for r in rejected)


async def test_a_body_over_the_limit_gets_413_before_it_is_read(api: ApiUnderTest) -> None:
    """A 2 MiB body is refused on its Content-Length: the server answers while the client has
    sent only the first kilobyte."""
    host, port = api.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST /api/v1/alerts HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {api.tokens[Role.INGEST]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n"
    )
    writer.write(head.encode() + b"[" + b" " * 1023)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    status_line, _, rest = answer.decode().partition("\r\n")
    assert status_line.split(" ")[1] == "413"
    assert '"body_too_large"' in rest


async def test_a_chunked_body_over_the_limit_is_cut_off(api: ApiUnderTest) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b" " * 65536

    async with Client(api, Role.INGEST) as client:
        status, body = await client.call(
            "POST",
            "/api/v1/alerts",
            data=chunks(),
            **{"Content-Type": "application/json"},  # type: ignore[arg-type]
        )
    assert (status, body["error"]["code"]) == (413, "body_too_large")


async def test_the_console_session_needs_its_csrf_token_and_ends_with_the_token(
    api: ApiUnderTest,
) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        url = api.url + "/api/v1"
        async with http.post(url + "/session", json={"token": "soar_nope_nope_nope_nope"}) as r:
            assert r.status == 401
        async with http.post(url + "/session", json={"token": api.tokens[Role.AUTHOR]}) as r:
            assert r.status == 200
            session = await r.json()
            cookie = r.cookies[SESSION_COOKIE]
            assert cookie["httponly"]
            assert cookie["samesite"] == "Strict"
        assert session["role"] == "author"
        draft = {"source": "id: x\n"}
        async with http.post(url + "/playbooks/validate", json=draft) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (403, "csrf")
        headers = {CSRF_HEADER: session["csrf_token"]}
        async with http.post(url + "/playbooks/validate", json=draft, headers=headers) as r:
            assert r.status == 200
        tokens = await api.services.store.api_tokens()
        author = next(t for t in tokens if t.name == "author")
        await revoke_token(api.services.store, author.id, by="test")
        async with http.get(url + "/session") as r:
            assert (r.status, (await r.json())["error"]["code"]) == (401, "session_expired")


async def test_a_draft_is_validated_with_positions_and_dry_run(api: ApiUnderTest) -> None:
    broken = (
        "id: draft\nname: D\ntrigger: {manual: true}\nsteps:\n  - id: a\n    action: lab.nope\n"
    )
    async with Client(api, Role.AUTHOR) as client:
        status, body = await client.call("POST", "/api/v1/playbooks/validate", {"source": broken})
        assert status == 200
        assert body["valid"] is False
        (problem,) = body["diagnostics"]
        assert (problem["line"], problem["column"]) == (6, 13)
        assert "lab.nope" in problem["message"]
        source = await asyncio.to_thread(
            (api.services.playbooks_dir / "gated/playbook.yaml").read_text
        )
        status, body = await client.call(
            "POST", "/api/v1/playbooks/dry-run", {"source": source, "alert": ALERT}
        )
        assert status == 200, body
        run = body["run"]
        assert run["run"]["dry_run"] is True
        assert run["run"]["status"] == "completed"
        assert {s["key"] for s in run["steps"]} == {"ask", "isolate"}


async def test_a_new_version_is_saved_and_audited_but_not_rolled_out(api: ApiUnderTest) -> None:
    path = api.services.playbooks_dir / "quick" / "playbook.yaml"
    older = path.read_text()
    newer = older.replace("version: 1", "version: 2")
    async with Client(api, Role.AUTHOR) as client:
        status, body = await client.call(
            "POST", "/api/v1/playbooks/quick/versions", {"source": older}
        )
        assert (status, body["error"]["code"]) == (409, "version_exists")
        status, body = await client.call(
            "POST", "/api/v1/playbooks/gated/versions", {"source": newer}
        )
        assert (status, body["error"]["code"]) == (422, "id_mismatch")
        status, saved = await client.call(
            "POST", "/api/v1/playbooks/quick/versions", {"source": newer}
        )
        assert (status, saved["version"], saved["live"]) == (201, 2, False)
        status, listed = await client.call("GET", "/api/v1/playbooks/quick")
        assert (listed["version"], listed["source"]) == (1, older)  # still the stable one
        status, versions = await client.call("GET", "/api/v1/playbooks/quick/versions")
    assert status == 200
    assert [
        (v["version"], v["share"], v["mode"], v["stable"], v["author"])
        for v in versions["versions"]
    ] == [(1, 100, "live", True, f"file:{path}"), (2, 0, "live", False, "api:author")]
    assert versions["versions"][1]["digest"] == saved["digest"]
    assert path.read_text() == newer  # the file is written too
    changed = await api.services.store.query_audit(AuditFilter(kind="playbook.changed", limit=5))
    assert [json.loads(r.event.body)["previous_version"] for r in changed] == [1]
    assert changed[0].event.actor == "api:author"


async def test_a_new_playbook_is_live_at_once(api: ApiUnderTest) -> None:
    source = (api.services.playbooks_dir / "quick" / "playbook.yaml").read_text()
    fresh = source.replace("id: quick", "id: fresh")
    async with Client(api, Role.AUTHOR) as client:
        status, saved = await client.call(
            "POST", "/api/v1/playbooks/fresh/versions", {"source": fresh}
        )
        assert (status, saved["live"]) == (201, True)
        status, listed = await client.call("GET", "/api/v1/playbooks/fresh")
    assert (status, listed["version"], listed["source"]) == (200, 1, fresh)
    created = await api.services.store.query_audit(AuditFilter(kind="playbook.created"))
    assert [r.event.actor for r in created] == ["api:author"]


async def test_a_version_is_rolled_out_promoted_and_refused_beyond_the_rules(
    api: ApiUnderTest,
) -> None:
    source = (api.services.playbooks_dir / "quick" / "playbook.yaml").read_text()
    async with Client(api, Role.AUTHOR) as client:
        for version in (2, 3):
            text = source.replace("version: 1", f"version: {version}")
            status, _ = await client.call(
                "POST", "/api/v1/playbooks/quick/versions", {"source": text}
            )
            assert status == 201
        rollout = "/api/v1/playbooks/quick/rollout"
        status, body = await client.call("POST", rollout, {"version": 2, "share": 60})
        assert status == 200, body
        assert [(r["version"], r["share"], r["mode"]) for r in body["records"]] == [(2, 60, "live")]
        status, body = await client.call("POST", rollout, {"version": 3, "share": 50})
        assert (status, body["error"]["code"]) == (409, "rollout_refused")
        status, body = await client.call("POST", rollout, {"version": 9, "share": 5})
        assert (status, body["error"]["code"]) == (409, "rollout_refused")
        status, body = await client.call(
            "POST", rollout, {"version": 3, "share": 100, "mode": "dry_run"}
        )
        assert status == 200, body
        status, body = await client.call("POST", rollout, {"version": 2, "share": 100})
        assert status == 200, body
        assert [(r["version"], r["share"]) for r in body["records"]] == [(2, 100), (1, 0)]
        assert [(v["version"], v["share"], v["mode"]) for v in body["versions"]] == [
            (1, 0, "live"),
            (2, 100, "live"),
            (3, 100, "dry_run"),
        ]
        status, body = await client.call("POST", rollout, {"version": 2, "share": 101})
        assert (status, body["error"]["code"]) == (422, "invalid_body")
        status, listed = await client.call("GET", "/api/v1/playbooks/quick")
        assert listed["version"] == 2
        status, _ = await client.call(
            "POST", "/api/v1/playbooks/nothing/rollout", {"version": 1, "share": 5}
        )
        assert status == 404
    async with Client(api, Role.INGEST) as ingest:
        status, body = await ingest.call(
            "POST", "/api/v1/alerts", {**ALERT, "id": "low-1", "severity": "low"}
        )
    assert status == 202, body
    (accepted,) = body["accepted"]
    runs = [await api.services.store.load_run(r) for r in accepted["runs"]]
    assert sorted((r.run.playbook_version, r.run.dry_run) for r in runs if r) == [
        (2, False),
        (3, True),
    ]
    rolled = await api.services.store.query_audit(AuditFilter(kind="playbook.rolled_out"))
    assert [
        (json.loads(r.event.body)["version"], json.loads(r.event.body)["share"], r.event.actor)
        for r in rolled
    ] == [
        (1, 100, "file:" + str(api.services.playbooks_dir / "quick" / "playbook.yaml")),
        (2, 60, "api:author"),
        (3, 100, "api:author"),
        (2, 100, "api:author"),
        (1, 0, "api:author"),
    ]


async def test_versions_of_an_unknown_playbook_are_not_found(api: ApiUnderTest) -> None:
    async with Client(api, Role.AUDITOR) as client:
        status, body = await client.call("GET", "/api/v1/playbooks/nothing/versions")
        assert (status, body["error"]["code"]) == (404, "not_found")
        status, body = await client.call("GET", "/api/v1/playbooks/gated/versions")
        assert (status, body["versions"]) == (200, [])


async def test_the_audit_log_is_queried_verified_and_exported(api: ApiUnderTest) -> None:
    await start_gated(api)
    async with Client(api, Role.AUDITOR) as client:
        status, page = await client.call("GET", "/api/v1/audit?kind=alert.accepted&limit=1")
        assert status == 200
        (record,) = page["records"]
        assert record["alert_id"] == "a-1"
        status, verified = await client.call("GET", "/api/v1/audit/verify")
        assert (status, verified["verified"]) == (200, True), verified
        assert verified["size"] >= 3
        status, text = await client.call("GET", "/api/v1/audit/export")
    assert status == 200
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == verified["size"]
    assert CANARY not in text


async def test_unknown_routes_and_methods_answer_json(api: ApiUnderTest) -> None:
    async with Client(api, Role.ADMIN) as client:
        status, body = await client.call("GET", "/api/v1/nothing-here")
        assert (status, body["error"]["code"]) == (404, "not_found")
        status, body = await client.call("PUT", "/api/v1/runs")
        assert (status, body["error"]["code"]) == (405, "method_not_allowed")
        status, body = await client.call("POST", "/api/v1/playbooks/validate", {"sauce": "x"})
        assert (status, body["error"]["code"]) == (422, "invalid_body")
        async with client.session.get(api.url + "/api/v1/health") as response:
            assert response.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.RESPONDER, Role.AUTHOR, Role.ADMIN])
async def test_no_answer_holds_the_canary(api: ApiUnderTest, role: Role) -> None:
    async with Client(api, Role.ADMIN) as admin:
        run_id = await start_gated(api)
        await admin.call("POST", f"/api/v1/approvals/{run_id}/ask", {"decision": "approve"})
        await until_status(admin, run_id, "completed")
    async with Client(api, role) as client:
        for path in (
            "/runs",
            f"/runs/{run_id}",
            "/audit?limit=1000",
            "/audit/export",
            "/connectors",
        ):
            _, body = await client.call("GET", "/api/v1" + path)
            assert CANARY not in json.dumps(body), path


async def test_versions_are_compared_over_their_runs(api: ApiUnderTest) -> None:
    low = {**ALERT, "severity": "low", "title": "compare me"}
    async with Client(api, Role.INGEST) as ingest:
        for n in range(3):
            status, _ = await ingest.call("POST", "/api/v1/alerts", {**low, "id": f"c-{n}"})
            assert status == 202
    async with Client(api, Role.AUDITOR) as client:
        for _ in range(100):
            status, found = await client.call("GET", "/api/v1/playbooks/quick/compare?limit=50")
            assert status == 200, found
            if found["versions"] and found["versions"][0]["completed"] == 3:
                break
            await asyncio.sleep(0.02)
        (v1,) = found["versions"]
        assert (v1["version"], v1["runs"], v1["success_rate"], v1["effects"]) == (1, 3, 1.0, 3)
        assert [s["step"] for s in v1["steps"]] == ["note"]
        status, body = await client.call("GET", "/api/v1/playbooks/nope/compare")
        assert (status, body["error"]["code"]) == (404, "not_found")
