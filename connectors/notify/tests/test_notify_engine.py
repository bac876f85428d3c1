"""notify run by the engine on a memory store: settings and secrets handed in by the engine,
`directory.executives` from the playbook's directory, a rate-limited page retried with one
dedup_key, and a failed run resolving the page it raised (the compensation)."""

from __future__ import annotations

import textwrap

from notify_support import CANARY, ROUTING_KEY, SMTP_PASSWORD
from soar_notify import notify
from soar_notify.testing import SmtpServer, Vendor

from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.models.run import RunStatus
from soar.playbook.validate import validate_text
from soar.store.memory import MemoryStore

PLAYBOOK = """\
id: page-then-roll-back
name: Page, tell the executives, then fail and roll back
trigger: {manual: true}
steps:
  - id: page
    action: notify.page
    with: {service: soc-oncall, summary: "P1: payments down"}
    retry: {attempts: 3, backoff: 10ms}
    compensate:
      action: notify.resolve_page
      with: {dedup_key: "{{ steps.page.output.dedup_key }}"}
  - id: tell-executives
    action: notify.email
    with:
      to: "{{ directory.executives }}"
      subject: "Paged on-call: {{ steps.page.output.dedup_key }}"
  - id: chat
    action: notify.chat
    with: {text: "paged {{ steps.page.output.dedup_key }}"}
  - id: boom
    action: core.fail
    with: {message: "the fix did not hold"}
"""


async def test_a_failed_run_resolves_its_page(smtp_server: SmtpServer, vendor: Vendor) -> None:
    vendor.script["pagerduty"] = [429]
    registry = Registry.of([core, notify])
    result = validate_text(textwrap.dedent(PLAYBOOK), file="p.yaml", registry=registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    store = MemoryStore()
    settings = {**vendor.settings(), **smtp_server.settings()}
    engine = Engine(
        store,
        registry,
        [result.loaded],
        directory={"executives": ["ciso@example.org", "ceo@example.org"]},
        connector_settings={"notify": settings},
        secrets={
            "notify.pagerduty_routing_key": ROUTING_KEY,
            "notify.smtp_password": SMTP_PASSWORD,
            "notify.slack_webhook_url": vendor.webhook("slack"),
        },
    )
    try:
        run_id = await engine.start_run(result.loaded)
        run = await engine.wait_run(run_id)
        transitions = await store.transitions(run_id)
        snapshot = await store.load_run(run_id)
    finally:
        await engine.stop()
    assert run.status is RunStatus.FAILED
    events = [(r.json["event_action"], r.json["dedup_key"]) for r in vendor.of("pagerduty")]  # type: ignore[index,call-overload]
    dedup = events[0][1]
    assert events == [("trigger", dedup), ("trigger", dedup), ("resolve", dedup)]
    (envelope,) = smtp_server.mailbox.envelopes
    assert envelope.rcpt_tos == ["ciso@example.org", "ceo@example.org"]
    assert len(vendor.of("slack")) == 1
    assert snapshot is not None
    assert CANARY not in repr(snapshot)
    assert CANARY not in repr(transitions)
