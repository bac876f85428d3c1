"""docs/connectors/ssh.md names every action, field and secret, and its YAML validates."""

from __future__ import annotations

from pathlib import Path

import pytest
from soar_ssh import ssh

from soar.connectors import Registry
from soar.connectors.core import core
from soar.connectors.testing import check_docs_page, steps_playbook, yaml_examples
from soar.playbook.validate import validate_text

PAGE = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "ssh.md"


def test_every_action_and_field_is_documented() -> None:
    check_docs_page(ssh, PAGE)


@pytest.mark.parametrize("block", yaml_examples(PAGE))
def test_the_yaml_examples_validate(block: str) -> None:
    registry = Registry.of([core, ssh])
    result = validate_text(steps_playbook(block), file=PAGE.name, registry=registry)
    assert [str(d) for d in result.diagnostics] == []


def test_the_settings_example_parses() -> None:
    import tomllib

    from soar_ssh._settings import parse_settings

    text = PAGE.read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    settings = parse_settings(tomllib.loads(block)["connectors"]["ssh"])
    assert set(settings.commands) >= {"backup", "apply", "check", "rollback"}
    assert settings.commands["apply"].undo == "rollback"
