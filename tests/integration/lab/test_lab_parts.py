"""The lab's parts that need no server: fresh copies of the samples, and which playbooks it
dry-runs. Fast; here beside the lab's end-to-end tests because they share the shipped files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from soar.connectors.registry import load_registry
from soar.lab.producer import fresh_copy
from soar.lab.shipped import Sample, check_shipped
from soar.playbook.validate import connectors_of, validate_text

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = check_shipped(ROOT / "playbooks", load_registry(), lambda _: None).samples


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.path.name)
def test_each_round_sends_every_sample_with_new_alert_ids(sample: Sample) -> None:
    first, first_alerts = fresh_copy(sample, 1)
    second, second_alerts = fresh_copy(sample, 2)
    ids = [{a.id for a in alerts} for alerts in (sample.alerts, first_alerts, second_alerts)]
    assert len(ids[0] | ids[1] | ids[2]) == 3 * len(sample.alerts)
    assert [a.title for a in first_alerts] == [a.title for a in sample.alerts]
    assert first != sample.data != second


def test_the_connectors_a_playbook_calls_include_its_compensations() -> None:
    text = textwrap.dedent(
        """\
        id: p
        name: p
        trigger: {match: 'true'}
        steps:
          - id: look
            action: ldap.get_user
            with: {username: x}
          - id: page
            action: notify.page
            with: {service: soc, summary: s}
            compensate:
              action: ticket.close_ticket
              with: {ticket_id: 1}
        """
    )
    result = validate_text(text, file="p.yaml", registry=load_registry())
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    assert connectors_of(result.loaded) == {"ldap", "notify", "ticket"}
