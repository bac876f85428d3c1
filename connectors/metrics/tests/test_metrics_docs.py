"""docs/connectors/metrics.md names every action and field of the models, and its YAML
validates."""

from __future__ import annotations

from pathlib import Path

import pytest
from soar_metrics import metrics

from soar.connectors import Registry
from soar.connectors.core import core
from soar.connectors.testing import check_docs_page, steps_playbook, yaml_examples
from soar.playbook.validate import validate_text

PAGE = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "metrics.md"


def test_every_action_and_field_is_documented() -> None:
    check_docs_page(metrics, PAGE)


@pytest.mark.parametrize("block", yaml_examples(PAGE))
def test_the_yaml_examples_validate(block: str) -> None:
    registry = Registry.of([core, metrics])
    result = validate_text(steps_playbook(block), file=PAGE.name, registry=registry)
    assert [str(d) for d in result.diagnostics] == []
