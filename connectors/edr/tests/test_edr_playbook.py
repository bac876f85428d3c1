"""The `edr` connector run by soar's engine on a memory store: isolate, fail later, compensate."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator

import pytest
from soar_edr import edr
from soar_edr.testing import FalconTestServer

from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine, FakeClock
from soar.models.run import RunStatus, StepStatus
from soar.playbook.validate import validate_text
from soar.store.memory import MemoryStore

PLAYBOOK = """\
id: contain-and-fail
name: Contain a host, then fail
trigger: {manual: true}
steps:
  - id: isolate
    action: edr.isolate_host
    with: {host: web-01}
    compensate: {action: edr.release_host, with: {host: web-01}}
  - id: look
    action: edr.get_host
    with: {host: "{{ steps.isolate.output.host }}"}
  - id: boom
    action: core.fail
    with: {message: "the ticket system is down", retryable: false}
"""


@pytest.fixture
async def engine(falcon: FalconTestServer) -> AsyncIterator[tuple[Engine, MemoryStore]]:
    store = MemoryStore()
    engine = Engine(
        store,
        Registry.of([core, edr]),
        [],
        clock=FakeClock(),
        connector_settings={"edr": falcon.settings},
        secrets={"edr.client_id": falcon.client_id, "edr.client_secret": falcon.client_secret},
    )
    yield engine, store
    await engine.stop()


async def test_a_failed_run_releases_the_host_it_isolated(
    falcon: FalconTestServer, engine: tuple[Engine, MemoryStore]
) -> None:
    runner, store = engine
    result = validate_text(textwrap.dedent(PLAYBOOK), file="p.yaml", registry=runner.registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    runner.add_playbook(result.loaded)
    run_id = await runner.start_run(result.loaded)
    run = await runner.wait_run(run_id)

    assert run.status is RunStatus.FAILED
    device = falcon.host("web-01")
    assert device.status == "normal"
    assert falcon.effects[f"contain:{device.device_id}"] == 1
    assert falcon.effects[f"lift_containment:{device.device_id}"] == 1
    snapshot = await store.load_run(run_id)
    assert snapshot is not None
    assert snapshot.steps["isolate"].status is StepStatus.COMPENSATED
    assert snapshot.steps["look"].output["isolated"] is True  # type: ignore[index,call-overload]
    keys = {s.idempotency_key for s in falcon.seen if s.idempotency_key}
    assert keys == {f"{run_id}:isolate", f"{run_id}:isolate~compensate"}

    # the canary: the client secret is in no stored step, transition or audit record
    stored = repr(snapshot) + repr(await store.transitions(run_id))
    stored += repr(await store.audit_records(0, 10_000))
    assert falcon.client_secret not in stored
