"""Every route, every role, with and without a token, from one table (docs/api.md has the
same matrix): a role outside a route's row gets 403, no token gets 401, and each refusal is
in the audit log."""

from __future__ import annotations

import aiohttp
import pytest

from soar.api.auth import Role
from soar.api.routes import ROUTES
from soar.api.testing import ApiUnderTest
from soar.models.audit import AuditFilter

A, W, R, U, N = Role.ADMIN, Role.AUTHOR, Role.RESPONDER, Role.AUDITOR, Role.INGEST
PUBLIC = None
READERS = {A, W, R, U}

# route -> the roles allowed (PUBLIC: no token needed); written out, not derived from the code
MATRIX: dict[str, set[Role] | None] = {
    "GET /api/v1/health": PUBLIC,
    "GET /api/v1/ready": PUBLIC,
    "GET /api/v1/openapi.json": PUBLIC,
    "GET /metrics": PUBLIC,
    "GET /api/v1/events": READERS,
    "POST /api/v1/session": PUBLIC,
    "GET /api/v1/session": {A, W, R, U, N},
    "DELETE /api/v1/session": {A, W, R, U, N},
    "GET /api/v1/playbooks": READERS,
    "GET /api/v1/playbooks/{playbook_id}": READERS,
    "POST /api/v1/playbooks/validate": {A, W},
    "POST /api/v1/playbooks/dry-run": {A, W},
    "POST /api/v1/playbooks/{playbook_id}/versions": {A, W},
    "GET /api/v1/playbooks/{playbook_id}/versions": READERS,
    "GET /api/v1/playbooks/{playbook_id}/compare": READERS,
    "POST /api/v1/playbooks/{playbook_id}/rollout": {A, W},
    "GET /api/v1/runs": READERS,
    "GET /api/v1/runs/{run_id}": READERS,
    "POST /api/v1/runs/{run_id}/abort": {A, R},
    "GET /api/v1/approvals": {A, R},
    "POST /api/v1/approvals/{run_id}/{step}": {A, R},
    "POST /api/v1/alerts": {A, N},
    "GET /api/v1/audit": {A, U},
    "GET /api/v1/audit/verify": {A, U},
    "GET /api/v1/audit/export": {A, U},
    "GET /api/v1/connectors": READERS,
}

CASES = [
    pytest.param(key, role, id=f"{key} as {role.value if role else 'nobody'}")
    for key in MATRIX
    for role in [None, *Role]
]


def test_the_matrix_names_every_route_once() -> None:
    served = sorted(f"{r.method} {r.full_path}" for r in ROUTES)
    assert served == sorted(MATRIX)


def _path(key: str) -> tuple[str, str]:
    method, path = key.split(" ", 1)
    path = path.replace("{playbook_id}", "gated").replace("{run_id}", "no-such-run")
    return method, path.replace("{step}", "ask")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("key", "role"), CASES)
async def test_each_role_reaches_only_its_routes(
    shared_api: ApiUnderTest, key: str, role: Role | None
) -> None:
    api = shared_api
    method, path = _path(key)
    allowed = MATRIX[key]
    headers = api.headers(role) if role is not None else {}
    if path.endswith("/events"):
        headers["Accept"] = "text/event-stream"
    timeout = aiohttp.ClientTimeout(total=10, sock_read=2)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.request(method, api.url + path, headers=headers, json={}) as response,
    ):
        status = response.status
        kind = response.content_type
        body = await response.json() if kind == "application/json" else None
    if allowed is PUBLIC or (role is not None and role in allowed | {A}):
        assert status not in (401, 403), (key, role, status, body)
        return
    expected = 401 if role is None else 403
    assert status == expected, (key, role, status, body)
    assert body is not None
    assert body["error"]["code"] in {"no_token", "forbidden"}
    denials = await api.services.store.query_audit(AuditFilter(kind="api.denied", limit=1000))
    actor = "anonymous" if role is None else f"api:{role.value}"
    assert any(d.event.actor == actor and path in d.event.body.decode() for d in denials)
