"""Hostile playbooks: whatever the text, validation answers with diagnostics, never a crash."""

from __future__ import annotations

import json
import os
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soar.connectors import Registry
from soar.playbook.validate import validate_text

BOUNDED = settings(
    max_examples=int(os.environ.get("SOAR_FUZZ_EXAMPLES", "80")),
    deadline=timedelta(milliseconds=800),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

#: The playbook vocabulary, so random documents reach deep into the schema and the checker.
KEYS = [
    "id",
    "name",
    "version",
    "trigger",
    "match",
    "cron",
    "timezone",
    "manual",
    "event",
    "dedup",
    "key",
    "window",
    "steps",
    "action",
    "with",
    "when",
    "needs",
    "for_each",
    "concurrency",
    "timeout",
    "retry",
    "attempts",
    "backoff",
    "on_error",
    "compensate",
    "approval",
    "group",
    "on_timeout",
    "wait",
    "duration",
    "until",
    "branch",
    "else",
    "parallel",
    "end",
    "playbook",
    "inputs",
    "escalate",
    "after",
    "unless",
    "message",
    "values",
]
TEXTS = st.sampled_from(
    [
        "core.log",
        "core.set",
        "a",
        "b",
        "30s",
        "1h",
        "x",
        "{{ alert.id }}",
        "{{ steps.a.output }}",
        'alert.severity >= "high"',
        "steps.a.status == 'failed'",
        "{{",
        "}}",
        "not",
        "item.id",
        "0 6 1 * *",
        "Europe/Paris",
        "completed",
        "__import__('os')",
        "{{ 7*7 }}",
        "é",
    ]
) | st.text(max_size=20)
SCALARS = st.none() | st.booleans() | st.integers(-3, 200) | TEXTS
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)
    ),
    max_leaves=40,
)


@BOUNDED
@given(text=st.text(max_size=300))
def test_random_text_gets_diagnostics_not_exceptions(registry: Registry, text: str) -> None:
    result = validate_text(text, file="fuzz.yaml", registry=registry)
    assert result.ok == (result.loaded is not None)
    assert all(d.line >= 1 and d.col >= 1 for d in result.diagnostics)


@BOUNDED
@given(document=DOCUMENTS)
def test_random_playbook_shaped_documents_get_diagnostics_not_exceptions(
    registry: Registry, document: object
) -> None:
    text = json.dumps(document)  # JSON is YAML, and keeps every shape representable
    result = validate_text(text, file="fuzz.yaml", registry=registry)
    assert result.ok == (result.loaded is not None)
    lines = text.count("\n") + 1
    assert all(1 <= d.line <= lines for d in result.diagnostics)


@BOUNDED
@given(
    steps=st.lists(
        st.fixed_dictionaries(
            {"id": st.sampled_from(["a", "b", "c", "d-e", "f"])},
            optional={
                "action": st.sampled_from(["core.log", "core.set", "core.fail", "nope.x"]),
                "needs": st.lists(st.sampled_from(["a", "b", "c", "d-e", "zz"]), max_size=3),
                "when": TEXTS,
                "with": st.dictionaries(
                    st.sampled_from(["message", "values", "level"]), SCALARS, max_size=3
                ),
                "end": st.sampled_from(["completed", "failed"]),
            },
        ),
        min_size=1,
        max_size=6,
    )
)
def test_random_step_graphs_terminate_with_diagnostics(
    registry: Registry, steps: list[object]
) -> None:
    document = {"id": "g", "name": "G", "trigger": {"manual": True}, "steps": steps}
    result = validate_text(json.dumps(document, indent=1), file="graph.yaml", registry=registry)
    assert result.ok == (result.loaded is not None)
