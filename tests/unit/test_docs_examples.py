"""Every YAML example in docs/ validates: what an analyst copies from the docs works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from soar.connectors import Registry
from soar.playbook.validate import validate_text

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_WRAPPER = (
    'id: docs-example\nname: docs example\ntrigger:\n  match: alert.severity >= "low"\nsteps:\n'
)


def _examples() -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 2
            found.append((f"{page.name}:{line}", match.group(1)))
    return found


EXAMPLES = _examples()


def test_the_docs_have_playbook_examples() -> None:
    assert len([e for e in EXAMPLES if e[0].startswith("playbooks.md")]) >= 15


@pytest.mark.parametrize(("where", "block"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_a_docs_example_validates(registry: Registry, where: str, block: str) -> None:
    data = YAML(typ="safe", pure=True).load(block)
    if isinstance(data, list):  # a fragment: a list of steps
        text = _WRAPPER + "".join("  " + line + "\n" for line in block.splitlines())
    elif isinstance(data, dict) and "trigger" in data:
        text = block
    else:
        pytest.fail(f"{where}: a YAML example must be a playbook or a list of steps")
    result = validate_text(text, file=where, registry=registry)
    assert [str(d) for d in result.diagnostics] == []
