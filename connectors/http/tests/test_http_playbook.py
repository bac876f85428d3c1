"""The `http` connector run by soar's engine on a memory store: a request with a secret header,
then a redirect to the metadata address, refused; the secret is in nothing stored."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator

import pytest
from http_test_servers import CANARY, Origin
from soar_http import http

from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine, FakeClock
from soar.models.run import RunStatus, StepStatus
from soar.playbook.validate import validate_text
from soar.store.memory import MemoryStore

PLAYBOOK = """\
id: call-and-refuse
name: Call an allowed API, then be redirected to the metadata service
trigger: {{manual: true}}
steps:
  - id: call
    action: http.request
    with:
      url: "{url}/echo"
      method: POST
      json: {{note: hello}}
      secret_headers: {{Authorization: {{secret: secret_1, prefix: "Bearer "}}}}
  - id: sneak
    action: http.get
    with: {{url: "{url}/redirect?to=http://169.254.169.254/latest/meta-data/"}}
"""


@pytest.fixture
async def engine(origin: Origin) -> AsyncIterator[tuple[Engine, MemoryStore]]:
    store = MemoryStore()
    settings = origin.settings(secret_hosts={"secret_1": ["127.0.0.1"]})
    engine = Engine(
        store,
        Registry.of([core, http]),
        [],
        clock=FakeClock(),
        connector_settings={"http": settings},
        secrets={"http.secret_1": CANARY},
    )
    yield engine, store
    await engine.stop()


async def test_a_run_sends_the_secret_stores_none_and_stops_at_the_metadata_redirect(
    origin: Origin, engine: tuple[Engine, MemoryStore]
) -> None:
    runner, store = engine
    text = PLAYBOOK.format(url=origin.url)
    result = validate_text(textwrap.dedent(text), file="p.yaml", registry=runner.registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    runner.add_playbook(result.loaded)
    run_id = await runner.start_run(result.loaded)
    run = await runner.wait_run(run_id)

    assert run.status is RunStatus.FAILED
    snapshot = await store.load_run(run_id)
    assert snapshot is not None
    call = snapshot.steps["call"]
    assert call.status is StepStatus.SUCCEEDED
    assert call.output["data"]["headers"]["Authorization"] == "Bearer ***"  # type: ignore[index,call-overload]
    sneak = snapshot.steps["sneak"]
    assert sneak.status is StepStatus.FAILED
    assert "169.254.169.254" in str(sneak.error)
    assert origin.hits == ["/echo", "/redirect"]

    stored = repr(snapshot) + repr(await store.transitions(run_id))
    stored += repr(await store.audit_records(0, 10_000))
    assert CANARY not in stored
