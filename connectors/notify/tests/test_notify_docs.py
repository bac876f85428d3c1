"""docs/connectors/notify.md names every action, field and secret, and its YAML validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from soar_notify import notify

from soar.connectors import Registry
from soar.connectors.core import core
from soar.playbook.validate import validate_text

PAGE = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "notify.md"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_WRAPPER = 'id: docs\nname: docs\ntrigger:\n  match: alert.severity >= "low"\nsteps:\n'


def test_every_action_field_and_secret_is_documented() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for spec in notify.actions.values():
        assert f"### `{spec.qualified_name}`" in text
        for secret in spec.secrets:
            assert f"`{notify.name}.{secret}`" in text
        for model in (spec.input_model, spec.output_model):
            for name, info in model.model_fields.items():
                assert f"`{info.alias or name}`" in text, f"{spec.qualified_name}: {name}"


@pytest.mark.parametrize("block", _BLOCK.findall(PAGE.read_text(encoding="utf-8")))
def test_the_yaml_examples_validate(block: str) -> None:
    assert isinstance(YAML(typ="safe", pure=True).load(block), list)
    text = _WRAPPER + "".join("  " + line + "\n" for line in block.splitlines())
    result = validate_text(text, file=PAGE.name, registry=Registry.of([core, notify]))
    assert [str(d) for d in result.diagnostics] == []


def test_the_documented_schedule_parses() -> None:
    from soar_notify._oncall import Schedule

    (block,) = re.findall(r"^```json\n(.*?)^```", PAGE.read_text(encoding="utf-8"), re.M | re.S)
    schedule = Schedule.model_validate_json(block)
    assert schedule.timezone == "Europe/Berlin"
    assert len(schedule.shifts) == 2
