"""The issue's acceptance checks, through soar's engine: a playbook run against a real slapd and
a real Samba AD DC disables an account (it can no longer bind) and strips its groups; aborting
the run compensates (it binds again, with exactly its groups back); and the disable, run again
under the step's idempotency key, changes nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from ldap_lab import Lab
from ldap_test_servers import BIND_PASSWORD
from soar_ldap import ldap

from soar.connectors import ActionContext, Registry, Secrets
from soar.connectors.core import core
from soar.engine import Engine
from soar.models.run import RunStatus, StepStatus
from soar.playbook.validate import LoadedPlaybook, validate_text
from soar.store.memory import MemoryStore

PLAYBOOK = """\
id: contain-account
name: Contain a compromised account
trigger:
  manual: true
inputs:
  username: { type: string, required: true }
steps:
  - id: user
    action: ldap.get_user
    with: { username: "{{ inputs.username }}" }
  - id: suspend
    action: ldap.disable_account
    with: { dn: "{{ steps.user.output.dn }}" }
    when: not steps.user.output.is_service_account
    retry: { attempts: 3, backoff: 1s }
    compensate: { action: ldap.enable_account, with: { dn: "{{ steps.user.output.dn }}" } }
  - id: strip
    action: ldap.remove_from_groups
    with: { dn: "{{ steps.user.output.dn }}" }
    when: not steps.user.output.is_service_account
    compensate:
      action: ldap.restore_groups
      with: { dn: "{{ steps.strip.output.dn }}", groups: "{{ steps.strip.output.removed }}" }
  - id: confirm
    approval: { group: soc-leads, timeout: 15m, on_timeout: deny }
"""


def load(registry: Registry) -> LoadedPlaybook:
    result = validate_text(PLAYBOOK, file="contain-account.yaml", registry=registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    return result.loaded


async def until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)


def containment_engine(lab: Lab, store: MemoryStore) -> Engine:
    """An engine running the containment playbook against the lab's directory."""
    registry = Registry.of([core, ldap])
    return Engine(
        store,
        registry,
        [load(registry)],
        connector_settings={"ldap": lab.settings},
        secrets={"ldap.bind_password": BIND_PASSWORD},
    )


async def test_a_playbook_disables_and_its_compensation_enables_again(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    login = lab.unique("pb")
    dn = lab.add_user(login)
    groups = [lab.add_group(members=[dn]), lab.add_group(members=[dn])]
    bystander_group = lab.add_group()
    store = MemoryStore()
    engine = containment_engine(lab, store)
    try:
        run_id = await engine.start_run("contain-account", inputs={"username": login})
        await until(lambda: "confirm" in engine.executors[run_id].states)

        # Contained: no bind, no groups.
        assert not lab.can_bind(dn)
        assert all(dn.lower() not in lab.members(g) for g in groups)
        snapshot = await store.load_run(run_id)
        assert snapshot is not None
        suspend = snapshot.steps["suspend"]
        assert suspend.status is StepStatus.SUCCEEDED
        assert suspend.output == {"dn": suspend.output["dn"], "disabled": True, "changed": True}  # type: ignore[index]
        assert sorted(g.lower() for g in snapshot.steps["strip"].output["removed"]) == sorted(  # type: ignore[index]
            g.lower() for g in groups
        )

        # The same disable under the step's own idempotency key: the directory is not touched.
        stamp = lab.modified(dn)
        spec = ldap.actions["disable_account"]
        again = await spec.fn(
            ActionContext(
                suspend.idempotency_key,
                settings=lab.settings,
                secrets=Secrets({"bind_password": BIND_PASSWORD}),
            ),
            spec.input_model.model_validate({"dn": dn}),
        )
        assert again.model_dump() == {"dn": again.dn, "disabled": True, "changed": False}
        assert lab.modified(dn) == stamp

        # Abort: the compensations run newest first and put everything back.
        await engine.abort(run_id, "false positive")
        run = await engine.wait_run(run_id)
    finally:
        await engine.stop()
    assert run.status is RunStatus.ABORTED
    assert lab.can_bind(dn)
    assert all(dn.lower() in lab.members(g) for g in groups)
    assert dn.lower() not in lab.members(bystander_group)
    final = await store.load_run(run_id)
    assert final is not None
    assert final.steps["suspend"].status is StepStatus.COMPENSATED
    assert final.steps["strip"].status is StepStatus.COMPENSATED

    # The bind password shows up nowhere the run left a trace.
    every_trace: list[Any] = [final.run.inputs, final.run.error]
    every_trace += [(s.inputs, s.output, s.error) for s in final.steps.values()]
    every_trace += [t.data for t in await store.transitions(run_id)]
    every_trace += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert BIND_PASSWORD not in json.dumps(every_trace, default=str)


async def test_a_service_account_is_looked_up_but_left_alone(lab: Lab) -> None:
    login = lab.unique("svc")
    dn = lab.add_user(login, container=lab.services)
    engine = containment_engine(lab, MemoryStore())
    try:
        run_id = await engine.start_run("contain-account", inputs={"username": login})
        await until(lambda: "confirm" in engine.executors[run_id].states)
        await engine.abort(run_id, "done looking")
        await engine.wait_run(run_id)
    finally:
        await engine.stop()
    assert lab.can_bind(dn)
