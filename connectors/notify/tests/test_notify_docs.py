"""docs/connectors/notify.md names every action, field and secret, and its YAML validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from soar_notify import notify

from soar.connectors import Registry
from soar.connectors.core import core
from soar.connectors.testing import check_docs_page, steps_playbook, yaml_examples
from soar.playbook.validate import validate_text

PAGE = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "notify.md"


def test_every_action_field_and_secret_is_documented() -> None:
    check_docs_page(notify, PAGE)


@pytest.mark.parametrize("block", yaml_examples(PAGE))
def test_the_yaml_examples_validate(block: str) -> None:
    registry = Registry.of([core, notify])
    result = validate_text(steps_playbook(block), file=PAGE.name, registry=registry)
    assert [str(d) for d in result.diagnostics] == []


def test_the_documented_schedule_parses() -> None:
    from soar_notify._oncall import Schedule

    (block,) = re.findall(r"^```json\n(.*?)^```", PAGE.read_text(encoding="utf-8"), re.M | re.S)
    schedule = Schedule.model_validate_json(block)
    assert schedule.timezone == "Europe/Berlin"
    assert len(schedule.shifts) == 2
