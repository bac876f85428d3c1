"""The `ticket` connector run by soar's engine on a memory store: open a ticket, assign it, fail
later, and see both compensated (ticket closed, previous agent back)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator

import pytest
from soar_ticket import ticket
from soar_ticket.testing import FreshserviceTestServer

from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine, FakeClock
from soar.models.run import RunStatus, StepStatus
from soar.playbook.validate import validate_text
from soar.store.memory import MemoryStore

PLAYBOOK = """\
id: p1-and-fail
name: Open a P1 ticket, assign it, then fail
trigger: {manual: true}
steps:
  - id: open
    action: ticket.create_ticket
    with:
      subject: "P1: payment API down"
      description: "<p>5xx rate above 50 %</p>"
      email: soc@example.com
      priority: 4
    compensate: {action: ticket.close_ticket, with: {ticket_id: "{{ steps.open.output.id }}"}}
  - id: handover
    action: ticket.assign_ticket
    with: {ticket_id: "{{ steps.open.output.id }}", responder_id: 42, group_id: 12}
    compensate:
      action: ticket.assign_ticket
      with:
        ticket_id: "{{ steps.handover.output.id }}"
        responder_id: "{{ steps.handover.output.previous_responder_id }}"
        group_id: "{{ steps.handover.output.previous_group_id }}"
  - id: diagnose
    action: ticket.comment_ticket
    with: {ticket_id: "{{ steps.open.output.id }}", body: "first diagnosis: DB pool exhausted"}
  - id: boom
    action: core.fail
    with: {message: "monitoring is down", retryable: false}
"""


@pytest.fixture
async def engine(
    helpdesk: FreshserviceTestServer,
) -> AsyncIterator[tuple[Engine, MemoryStore]]:
    store = MemoryStore()
    engine = Engine(
        store,
        Registry.of([core, ticket]),
        [],
        clock=FakeClock(),
        connector_settings={"ticket": helpdesk.settings},
        secrets={"ticket.api_key": helpdesk.api_key},
    )
    yield engine, store
    await engine.stop()


async def test_a_failed_run_closes_its_ticket_and_restores_the_assignee(
    helpdesk: FreshserviceTestServer, engine: tuple[Engine, MemoryStore]
) -> None:
    runner, store = engine
    result = validate_text(textwrap.dedent(PLAYBOOK), file="p.yaml", registry=runner.registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    runner.add_playbook(result.loaded)
    run_id = await runner.start_run(result.loaded)
    run = await runner.wait_run(run_id)

    assert run.status is RunStatus.FAILED
    [record] = helpdesk.tickets.values()
    assert helpdesk.effects["create"] == 1
    assert record["status"] == 5  # closed by the compensation
    assert (record["responder_id"], record["group_id"]) == (None, None)  # as before
    assert len(helpdesk.notes[int(str(record["id"]))]) == 1
    snapshot = await store.load_run(run_id)
    assert snapshot is not None
    assert snapshot.steps["open"].status is StepStatus.COMPENSATED
    assert snapshot.steps["handover"].status is StepStatus.COMPENSATED

    # the canary: the API key is in no stored step, transition or audit record
    stored = repr(snapshot) + repr(await store.transitions(run_id))
    stored += repr(await store.audit_records(0, 10_000))
    assert helpdesk.api_key not in stored
