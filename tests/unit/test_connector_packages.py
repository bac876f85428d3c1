"""The shipped connector packages: each installed under the `soar.connectors` entry point group,
documented action by action, and checked with a canary secret by its own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from soar.connectors.registry import load_registry

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["edr", "forensics", "http", "ldap", "metrics", "notify", "ssh", "ticket"]


def test_every_package_under_connectors_is_installed_and_registered() -> None:
    packages = sorted(p.parent.name for p in (ROOT / "connectors").glob("*/pyproject.toml"))
    assert packages == SHIPPED
    installed = load_registry().connectors
    assert set(SHIPPED) <= set(installed)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_connector_page_names_every_action_and_secret(name: str) -> None:
    page = (ROOT / "docs" / "connectors" / f"{name}.md").read_text()
    connector = load_registry().connectors[name]
    for spec in connector.actions.values():
        assert spec.qualified_name in page or f"`{spec.name}`" in page, spec.qualified_name
        for secret in spec.secrets:
            assert secret in page, f"{spec.qualified_name}: secret {secret}"


@pytest.mark.parametrize("name", SHIPPED)
def test_each_connector_is_tested_with_a_canary_secret(name: str) -> None:
    """A test of the package's own looks for a canary secret in what its actions leave."""
    tests = (ROOT / "connectors" / name / "tests").glob("test_*.py")
    texts = [t.read_text().lower() for t in tests]
    assert any("canary" in t or "shows_nowhere" in t for t in texts), name
