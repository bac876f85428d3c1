"""Validating against an action catalog: playbooks checked where connectors are not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from soar.cli.main import cli
from soar.connectors import Registry
from soar.connectors.catalog import load_catalog
from soar.connectors.core import core
from soar.errors import ConfigError
from soar.playbook.validate import validate_text
from tests.conftest import FIXTURES, spec_connectors

CATALOG = FIXTURES / "playbooks" / "spec-catalog.json"


def _catalog_of(registry: Registry) -> dict[str, object]:
    """What `soar connectors --json` prints for these connectors."""
    return {
        "connectors": [
            {"name": c.name, "doc": c.doc, "actions": [a.describe() for a in c.actions.values()]}
            for c in registry.connectors.values()
        ]
    }


def test_the_catalog_fixture_matches_the_declared_connectors() -> None:
    assert json.loads(CATALOG.read_text()) == _catalog_of(Registry.of(spec_connectors()))


def test_the_spec_example_validates_clean_from_the_cli_with_a_catalog() -> None:
    example = FIXTURES / "playbooks" / "spec-example.playbook.yaml"
    result = CliRunner().invoke(cli, ["validate", "--catalog", str(CATALOG), str(example)])
    assert result.exit_code == 0, result.output
    assert "0 problem(s)" in result.output


def test_the_broken_example_reports_its_six_problems_from_the_cli_with_a_catalog() -> None:
    broken = FIXTURES / "playbooks" / "spec-example-broken.playbook.yaml"
    result = CliRunner().invoke(cli, ["validate", "--catalog", str(CATALOG), str(broken)])
    assert result.exit_code == 1
    positions = [
        line.split(": ")[0].removeprefix(f"{broken}:")
        for line in result.output.splitlines()
        if line.startswith(str(broken))
    ]
    assert positions == ["12:13", "15:36", "17:64", "20:13", "23:5", "23:13", "28:40"]


def test_catalog_actions_check_inputs_outputs_and_constant_types() -> None:
    registry = Registry.of([core])
    registry.add_catalog(load_catalog(CATALOG))
    text = (
        "id: t\nname: T\ntrigger: {manual: true}\nsteps:\n"
        "  - id: user\n    action: ldap.get_user\n    with: {username: 42, usrname: x}\n"
        "  - id: say\n    action: core.log\n"
        '    with: {message: "{{ steps.user.output.is_service_acount }}"}\n'
    )
    found = [str(d) for d in validate_text(text, file="p.yaml", registry=registry).diagnostics]
    assert found == [
        "p.yaml:7:22: ldap.get_user: input 'username': expected string, got integer",
        "p.yaml:7:26: ldap.get_user has no input 'usrname' (did you mean 'username'?)",
        "p.yaml:10:25: ldap.get_user output has no field 'is_service_acount'"
        " (did you mean 'is_service_account'?)",
    ]


def test_installed_connectors_take_precedence_over_a_catalog(tmp_path: Path) -> None:
    fake = tmp_path / "catalog.json"
    fake.write_text(
        json.dumps(
            {
                "connectors": [
                    {
                        "name": "core",
                        "actions": [
                            {
                                "name": "core.log",
                                "input_schema": {"properties": {}},
                                "output_schema": {},
                            }
                        ],
                    }
                ]
            }
        )
    )
    registry = Registry.of([core])
    registry.add_catalog(load_catalog(fake))
    signature = registry.signature("core.log")
    assert signature is not None
    assert signature.required_inputs() == ["message"]


@pytest.mark.parametrize("content", ["not json", '{"connectors": [{"name": 1}]}', "[]"])
def test_a_file_that_is_not_a_catalog_is_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="not an action catalog"):
        load_catalog(path)
    result = CliRunner().invoke(cli, ["validate", "--catalog", str(path), str(tmp_path)])
    assert result.exit_code != 0
