"""`soar validate`: every problem at once, each at the right line and column."""

from __future__ import annotations

import textwrap

import pytest

from soar.connectors import Registry
from soar.playbook.validate import validate_text
from tests.conftest import FIXTURES

HEAD = """\
id: t
name: T
trigger:
  match: alert.severity >= "low"
steps:
"""


def problems(text: str, registry: Registry, **kwargs: object) -> list[str]:
    result = validate_text(textwrap.dedent(text), file="p.yaml", registry=registry, **kwargs)  # type: ignore[arg-type]
    return [f"{d.line}:{d.col}: {d.message}" for d in result.diagnostics]


def steps(body: str) -> str:
    return HEAD + textwrap.indent(textwrap.dedent(body), "  ")


def test_the_spec_example_validates_clean(registry: Registry) -> None:
    text = (FIXTURES / "playbooks" / "spec-example.playbook.yaml").read_text()
    result = validate_text(text, file="spec.yaml", registry=registry)
    assert result.diagnostics == []
    assert result.loaded is not None
    assert result.loaded.playbook.steps[2].approval is not None
    assert ("trigger", "match") in result.loaded.expressions
    assert ("steps", 1, "with", "dn") in result.loaded.templates


def test_a_broken_copy_of_the_spec_example_reports_all_six_problems_in_place(
    registry: Registry,
) -> None:
    text = (FIXTURES / "playbooks" / "spec-example-broken.playbook.yaml").read_text()
    found = problems(text, registry)
    expected = [
        "12:13: unknown action 'ldap.disable_acount' (did you mean 'ldap.disable_account'?)",
        "15:36: steps.1.retry.backoff: bad duration '2x'",
        "17:64: unknown step 'usr' in steps.usr.output.dn (did you mean 'user'?)",
        "20:13: needs cycle: approve-isolation → isolate → approve-isolation",
        "23:5: edr.isolate_host: missing required input 'host'",
        "28:40: expression: invalid syntax",
    ]
    for want in expected:
        assert any(f.startswith(want) for f in found), f"missing {want!r} in {found}"


def test_the_validator_reports_problems_in_file_order(registry: Registry) -> None:
    text = (FIXTURES / "playbooks" / "spec-example-broken.playbook.yaml").read_text()
    result = validate_text(text, file="b.yaml", registry=registry)
    positions = [(d.line, d.col) for d in result.diagnostics]
    assert positions == sorted(positions)
    assert all(d.file == "b.yaml" for d in result.diagnostics)


CASES = [
    pytest.param(
        "- id: a\n  action: core.log\n  wiht: {message: x}\n",
        "8:5: unknown key 'wiht' (did you mean 'with'?)",
        id="unknown-key",
    ),
    pytest.param(
        "- id: a\n  action: core.log\n  with: {message: x}\n  wait: {duration: 1m}\n",
        "9:5: a step does one thing: 'action' and 'wait' cannot be combined",
        id="two-kinds",
    ),
    pytest.param("- id: a\n  name: nothing\n", "6:5: step 'a' does nothing", id="no-kind"),
    pytest.param(
        "- action: core.log\n  with: {message: x}\n",
        "6:5: every step of the main flow needs an id",
        id="no-id",
    ),
    pytest.param(
        "- id: a\n  action: core.log\n  with: {message: x}\n"
        "- id: a\n  action: core.log\n  with: {message: y}\n",
        "9:9: step id 'a' is used more than once",
        id="duplicate-id",
    ),
    pytest.param(
        "- id: a\n  action: core.log\n  with: {message: x, levle: info}\n",
        "8:24: core.log has no input 'levle' (did you mean 'level'?)",
        id="unknown-input",
    ),
    pytest.param(
        "- id: a\n  action: core.log\n  with: {message: x, level: loud}\n",
        "8:31: core.log: input 'level': String should match pattern",
        id="constant-input-wrong-value",
    ),
    pytest.param(
        "- id: a\n  action: core.sleep\n  with: {seconds: soon}\n",
        "8:21: core.sleep: input 'seconds': Input should be a valid number",
        id="constant-input-wrong-type",
    ),
    pytest.param(
        "- id: a\n  action: core.log\n",
        "7:5: core.log: missing required input 'message'",
        id="missing-input-no-with",
    ),
    pytest.param(
        "- id: a\n  action: nosuch.thing\n",
        "7:13: unknown action 'nosuch.thing': no connector 'nosuch' is installed",
        id="unknown-connector",
    ),
    pytest.param(
        '- id: a\n  action: core.log\n  with: {message: "{{ item }}"}\n',
        "8:25: 'item' is only defined in a step with for_each",
        id="item-outside-loop",
    ),
    pytest.param(
        '- id: a\n  action: core.log\n  with: {message: "{{ steps.b.status }}"}\n'
        "- id: b\n  action: core.log\n  with: {message: x}\n",
        "8:25: step 'b' does not run before this step",
        id="later-step",
    ),
    pytest.param(
        "- id: a\n  action: core.set\n  with: {values: {}}\n"
        '- id: b\n  action: core.log\n  with: {message: "{{ steps.a.output.valeus }}"}\n',
        "11:25: core.set output has no field 'valeus' (did you mean 'values'?)",
        id="unknown-output-field",
    ),
    pytest.param(
        "- id: a\n  action: core.set\n  with: {values: {}}\n"
        '- id: b\n  action: core.log\n  with: {message: "{{ steps.a.outptu }}"}\n',
        "11:25: steps.a has no field 'outptu' (did you mean 'output'?)",
        id="unknown-step-field",
    ),
    pytest.param(
        '- id: a\n  action: core.log\n  with: {message: "{{ alert.usres[0].name }}"}\n',
        "8:25: alert has no field 'usres' (did you mean 'users'?)",
        id="unknown-alert-field",
    ),
    pytest.param(
        '- id: a\n  action: core.log\n  with: {message: "{{ inputs.host }}"}\n',
        "8:25: unknown input 'host'",
        id="undeclared-input",
    ),
    pytest.param(
        '- id: a\n  action: core.log\n  with: {message: x}\n  when: alert.severity >= "hgih"\n',
        "9:29: expression: 'hgih' is not a severity",
        id="severity-typo",
    ),
    pytest.param(
        '- id: a\n  action: core.log\n  with: {message: x}\n  when: lowr(alert.title) == "x"\n',
        "9:11: expression: unknown function 'lowr'",
        id="unknown-function",
    ),
    pytest.param(
        "- id: a\n  approval: {timeout: 5m}\n",
        "7:15: an approval needs a group or a list of approvers",
        id="approval-without-approvers",
    ),
    pytest.param(
        '- id: a\n  wait: {match: event.status == "resolved"}\n',
        "7:11: a wait for an alert or event needs a timeout",
        id="wait-without-deadline",
    ),
    pytest.param(
        "- id: a\n  wait: {duration: 30}\n",
        "7:22: steps.0.wait.duration: a duration is text such as 30s",
        id="duration-without-unit",
    ),
    pytest.param(
        "- id: a\n  end: completed\n- id: b\n  action: core.log\n  with: {message: x}\n",
        "8:5: step 'b' can never run: a step before it always ends the run",
        id="after-end",
    ),
    pytest.param(
        "- id: a\n  action: core.log\n  with: {message: x}\n  when: 1 > 2\n",
        "9:11: step 'a' can never run: its when is always false",
        id="when-always-false",
    ),
    pytest.param(
        "- id: a\n  action: core.log\n  with: {message: x}\n  needs: [b]\n",
        "9:13: needs an unknown step 'b'",
        id="needs-unknown",
    ),
    pytest.param(
        "- id: a\n  action: core.log\n  with: {message: x}\n  needs: [a]\n",
        "9:13: needs cycle: a → a",
        id="needs-self",
    ),
    pytest.param(
        "- id: a\n  playbook: other\n  retry: {attempts: 2}\n  timeout: 5m\n",
        "8:5: retry applies to an action",
        id="retry-on-sub-playbook",
    ),
    pytest.param(
        "- id: a\n  action: core.log\n  with: {message: x}\n  concurrency: 3\n",
        "9:5: concurrency limits a for_each; this step has none",
        id="concurrency-without-loop",
    ),
    pytest.param(
        '- id: a\n  for_each: "hosts: {{ alert.hosts }}"\n'
        "  action: core.log\n  with: {message: x}\n",
        "7:15: for_each takes one expression giving a list",
        id="for-each-not-one-expression",
    ),
    pytest.param(
        "- id: a\n  branch:\n    - else: []\n    - when: true\n      steps: []\n",
        "8:9: else must be the last case of a branch",
        id="else-not-last",
    ),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_each_problem_is_reported_at_its_position(
    registry: Registry, body: str, expected: str
) -> None:
    found = problems(HEAD + textwrap.indent(body, "  "), registry)
    assert any(f.startswith(expected) for f in found), f"{expected!r} not in {found}"


TRIGGER_CASES = [
    pytest.param('trigger:\n  cron: "61 * * * *"\n', "4:9: bad cron schedule", id="bad-cron"),
    pytest.param(
        'trigger:\n  cron: "0 6 1 * *"\n  timezone: Mars/Olympus\n',
        "5:13: unknown time zone 'Mars/Olympus'",
        id="bad-timezone",
    ),
    pytest.param(
        "trigger:\n  manual: true\n  dedup: {window: 5m}\n",
        "5:3: dedup needs an alert trigger",
        id="dedup-without-match",
    ),
    pytest.param("trigger: {}\n", "3:10: the trigger needs at least one of", id="empty-trigger"),
    pytest.param(
        "trigger:\n  match: alert.severity >= && 2\n",
        "4:28: expression: use 'and' instead of '&&'",
        id="unparsable-match",
    ),
]


@pytest.mark.parametrize(("trigger", "expected"), TRIGGER_CASES)
def test_trigger_problems_are_reported(registry: Registry, trigger: str, expected: str) -> None:
    text = (
        "id: t\nname: T\n"
        + trigger
        + "steps:\n  - id: a\n    action: core.log\n    with: {message: x}\n"
    )
    found = problems(text, registry)
    assert any(f.startswith(expected) for f in found), f"{expected!r} not in {found}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("id: [unclosed\n", "2:1: yaml: expected ',' or ']'", id="syntax"),
        pytest.param("id: a\nid: b\n", "2:1: duplicate key 'id'", id="duplicate-key"),
        pytest.param("", "1:1: the file is empty", id="empty"),
        pytest.param(
            "id: a\n---\nid: b\n", "1:1: the file holds more than one document", id="two-documents"
        ),
        pytest.param("- a\n- b\n", "1:1: a playbook is a mapping", id="not-a-mapping"),
        pytest.param(
            "id: Bad Id\nname: x\ntrigger: {manual: true}\nsteps: []\n",
            "1:5: id: String should match",
            id="bad-id",
        ),
    ],
)
def test_files_that_are_not_playbooks_are_reported(
    registry: Registry, text: str, expected: str
) -> None:
    found = problems(text, registry)
    assert any(f.startswith(expected) for f in found), f"{expected!r} not in {found}"


def test_hyphenated_step_ids_are_referenced_naturally(registry: Registry) -> None:
    text = steps(
        """\
        - id: approve-isolation
          approval: {group: soc-leads, timeout: 15m}
        - id: go
          when: >-
            steps.approve-isolation.output.approved
            and steps["approve-isolation"].status == "succeeded"
          action: core.log
          with:
            message: "by {{ steps.approve-isolation.output.decided_by | join(', ') }}"
        """
    )
    assert problems(text, registry) == []


def test_a_misspelt_hyphenated_reference_gets_a_suggestion(registry: Registry) -> None:
    text = steps(
        """\
        - id: approve-isolation
          approval: {group: soc-leads, timeout: 15m}
        - id: go
          when: steps.approve-isolaton.output.approved
          action: core.log
          with: {message: x}
        """
    )
    assert problems(text, registry) == [
        "9:11: unknown step 'approve-isolaton' in steps.approve-isolaton.output.approved"
        " (did you mean 'approve-isolation'?)"
    ]


def test_fallbacks_and_compensations_may_read_their_own_step(registry: Registry) -> None:
    text = steps(
        """\
        - id: a
          action: core.set
          with: {values: {x: 1}}
          compensate: {action: core.log, with: {message: "undo {{ steps.a.output.values }}"}}
          on_error:
            - action: core.log
              with: {message: "failed: {{ steps.a.error }}"}
        """
    )
    assert problems(text, registry) == []


def test_escalation_steps_may_read_any_step_and_the_run(registry: Registry) -> None:
    text = steps(
        """\
        - id: a
          action: core.log
          with: {message: x}
        - id: b
          action: core.log
          with: {message: y}
        """
    ) + (
        "escalate:\n"
        "  - after: 30m\n"
        '    unless: run.status == "completed" or steps.b.status == "succeeded"\n'
        '    steps: [{action: core.log, with: {message: "{{ steps.a.status }}"}}]\n'
    )
    assert problems(text, registry) == []


def test_loop_items_are_available_in_inputs_but_not_in_when(registry: Registry) -> None:
    text = steps(
        """\
        - id: a
          for_each: "{{ alert.hosts }}"
          when: item.name == "x"
          action: core.log
          with: {message: "{{ item.name }} #{{ index }}"}
        """
    )
    assert problems(text, registry) == ["8:11: 'item' is only defined in a step with for_each"]


def test_steps_inside_branches_are_checked_like_any_other(registry: Registry) -> None:
    text = steps(
        """\
        - id: route
          branch:
            - when: alert.severity == "critical"
              steps:
                - id: page
                  action: core.lgo
            - else:
                - id: quiet
                  action: core.log
                  with: {message: "{{ steps.page.status }}"}
        """
    )
    found = problems(text, registry)
    assert found[0].startswith("11:21: unknown action 'core.lgo' (did you mean 'core.log'?)")
    assert any("step 'page' does not run before this step" in f for f in found)


def test_sub_playbooks_are_checked_against_the_playbooks_validated_with_them(
    registry: Registry,
) -> None:
    callee = validate_text(
        "id: callee\nname: C\ntrigger: {manual: true}\ninputs:\n  host: {required: true}\n"
        "steps:\n  - id: a\n    playbook: caller\n",
        file="callee.yaml",
        registry=registry,
    ).playbook
    caller_text = steps("- id: call\n  playbook: callee\n  with: {hots: x}\n").replace(
        "id: t", "id: caller"
    )
    caller = validate_text(caller_text, file="caller.yaml", registry=registry).playbook
    assert callee is not None
    assert caller is not None
    known = {"callee": callee, "caller": caller}
    found = problems(caller_text, registry, known_playbooks=known)
    assert "8:12: playbook 'callee' has no input 'hots' (did you mean 'host'?)" in found
    assert "7:15: playbook 'callee': missing required input 'host'" in found
    assert "7:15: sub-playbook cycle: caller → callee → caller" in found
    unknown = problems(steps("- id: call\n  playbook: calee\n"), registry, known_playbooks=known)
    assert unknown == ["7:15: unknown playbook 'calee' (did you mean 'callee'?)"]


def test_a_clean_playbook_keeps_its_compiled_expressions_and_digest(registry: Registry) -> None:
    text = steps('- id: a\n  action: core.log\n  with: {message: "{{ alert.title }}"}\n')
    result = validate_text(text, file="p.yaml", registry=registry)
    assert result.loaded is not None
    assert result.loaded.digest.startswith("sha256:")
    assert len(result.loaded.digest) == 71
    template = result.loaded.templates[("steps", 0, "with", "message")]
    assert template.evaluate({"alert": {"title": "{{ 7*7 }}"}}) == "{{ 7*7 }}"


def test_alias_expansion_is_bounded(registry: Registry) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    found = problems("\n".join(lines) + "\n", registry)
    assert any("more than 50000 values" in f for f in found), found


def test_nesting_deeper_than_the_limit_is_reported(registry: Registry) -> None:
    found = problems("a: " + "[" * 80 + "]" * 80 + "\n", registry)
    assert any("nested deeper than 64 levels" in f for f in found), found


def test_nesting_that_exhausts_the_yaml_parser_is_a_diagnostic(registry: Registry) -> None:
    assert problems("a: " + "[" * 5000 + "\n", registry) == [
        "1:1: yaml: nested deeper than 64 levels"
    ]


def _chain(main_steps: int) -> str:
    main = [
        f"  - id: s{i}\n    action: core.log\n    with: {{message: x}}\n" for i in range(main_steps)
    ]
    inner = [
        f"          - id: b{i}\n            action: core.log\n"
        f'            with: {{message: "{{{{ steps.s0.status }}}}"}}\n'
        for i in range(450)
    ]
    branch = "  - id: route\n    branch:\n      - when: true\n        steps:\n" + "".join(inner)
    last = '  - id: last\n    action: core.log\n    with: {message: "{{ steps.b449.status }}"}\n'
    return HEAD + "".join(main) + branch + last


def test_long_chains_of_steps_are_checked_without_deep_recursion(registry: Registry) -> None:
    assert problems(_chain(498), registry) == []  # 500 main steps, 950 steps in all


def test_a_main_flow_over_500_steps_is_refused(registry: Registry) -> None:
    assert problems(_chain(499), registry) == [
        "6:3: steps: List should have at most 500 items after validation, not 501"
    ]
