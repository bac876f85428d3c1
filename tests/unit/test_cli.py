"""The `soar` command as people and CI call it: exit statuses, text and JSON output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from soar.cli.main import cli
from tests.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_validate_exits_0_on_the_shipped_playbooks(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["validate", str(REPO / "playbooks")])
    assert result.exit_code == 0, result.output
    shipped = len(list((REPO / "playbooks").glob("*/playbook.yaml")))
    assert shipped >= 3
    assert f"{shipped} playbook file(s) checked, 0 with problems, 0 problem(s)" in result.output


def test_validate_exits_1_and_prints_positions(runner: CliRunner) -> None:
    broken = FIXTURES / "playbooks" / "spec-example-broken.playbook.yaml"
    result = runner.invoke(cli, ["validate", str(broken)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith(str(broken))]
    assert (
        f"{broken}:17:64: unknown step 'usr' in steps.usr.output.dn (did you mean 'user'?)" in lines
    )


def test_validate_json_is_one_document_for_editors(runner: CliRunner, tmp_path: Path) -> None:
    good = tmp_path / "good.playbook.yaml"
    good.write_text(
        "id: good\nname: G\ntrigger: {manual: true}\n"
        "steps:\n  - id: a\n    action: core.log\n    with: {message: hi}\n"
    )
    bad = tmp_path / "bad.playbook.yaml"
    bad.write_text(
        "id: bad\nname: B\ntrigger: {manual: true}\nsteps:\n  - id: a\n    action: core.lgo\n"
    )
    result = runner.invoke(cli, ["validate", "--format", "json", str(tmp_path)])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert document["problems"] == 1
    by_file = {Path(f["file"]).name: f for f in document["files"]}
    assert by_file["good.playbook.yaml"]["ok"] is True
    assert by_file["good.playbook.yaml"]["playbook"] == {"id": "good", "version": 1}
    (problem,) = by_file["bad.playbook.yaml"]["diagnostics"]
    assert (problem["line"], problem["col"]) == (6, 13)
    assert problem["message"].startswith("unknown action 'core.lgo' (did you mean 'core.log'?)")


def test_validate_reports_a_missing_path(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml:1:1: no such file or directory" in result.output


def test_validate_reports_a_file_that_is_not_utf8(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "latin1.playbook.yaml"
    path.write_bytes(b"id: x\nname: caf\xe9\n")
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert "latin1.playbook.yaml:2:10: not UTF-8 text" in result.output


def test_connectors_json_lists_the_core_actions_with_schemas(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["connectors", "--json"])
    assert result.exit_code == 0
    document = json.loads(result.output)
    core = next(c for c in document["connectors"] if c["name"] == "core")
    actions = {a["name"]: a for a in core["actions"]}
    assert set(actions) >= {"core.log", "core.set", "core.sleep", "core.fail"}
    assert actions["core.log"]["input_schema"]["required"] == ["message"]
    assert actions["core.log"]["idempotent"] is True


def test_lab_validates_playbooks_and_matches_sample_alerts(
    runner: CliRunner, tmp_path: Path
) -> None:
    root = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", root)
    result = runner.invoke(cli, ["lab", "--check", "--playbooks", str(root)])
    assert result.exit_code == 0, result.output
    assert "ok   alert-triage v1" in result.output
    starts = [line.strip() for line in result.output.splitlines() if "starts:" in line]
    assert "starts: alert-triage, brute-force-watch" in starts  # the generic brute-force sample
    assert "starts: no playbook" in starts  # the informational Splunk notable
    assert "0 with problems" in result.output
    assert "0 rejected" in result.output


def test_lab_fails_when_a_shipped_playbook_is_broken(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", root)
    playbook = root / "alert-triage" / "playbook.yaml"
    playbook.write_text(playbook.read_text().replace("core.set", "core.sett"))
    result = runner.invoke(cli, ["lab", "--check", "--playbooks", str(root)])
    assert result.exit_code == 1
    assert "unknown action 'core.sett' (did you mean 'core.set'?)" in result.output
