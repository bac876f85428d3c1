"""`soar test`: cases pass, or fail with readable differences and a non-zero exit status."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from soar.cli.test import cases_command
from tests.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[2]
CATALOG = FIXTURES / "playbooks" / "spec-catalog.json"
SPEC = FIXTURES / "playbooks" / "spec-example.playbook.yaml"


def test_the_shipped_playbooks_pass_their_cases() -> None:
    result = CliRunner().invoke(cases_command, [str(REPO / "playbooks")])
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") >= 3
    assert "FAIL" not in result.output


def test_the_spec_example_passes_with_recorded_responses_from_a_catalog() -> None:
    result = CliRunner().invoke(cases_command, ["--catalog", str(CATALOG), str(SPEC)])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output


def test_a_failing_case_prints_the_differences_and_exits_1(tmp_path: Path) -> None:
    shutil.copytree(
        FIXTURES / "playbooks", tmp_path / "pb", ignore=shutil.ignore_patterns("*broken*")
    )
    case = tmp_path / "pb" / "tests" / "spec-example-contained.yaml"
    case.write_text(
        case.read_text().replace(
            "edr.isolate_host:\n    - output: {host: host-42, isolated: true}",
            "edr.isolate_host:\n    - error: EDR API down",
        )
    )
    result = CliRunner().invoke(
        cases_command,
        ["--catalog", str(CATALOG), str(tmp_path / "pb" / "spec-example.playbook.yaml")],
    )
    assert result.exit_code == 1
    assert "FAIL" in result.output
    # the fallback told the chat (no recording: the call fails), so the run fails and compensates
    assert "step isolate: expected succeeded, got failed (EDR API down)" in result.output
    assert "ldap.enable_account" in result.output


def test_a_stale_recording_is_reported(tmp_path: Path) -> None:
    shutil.copytree(
        FIXTURES / "playbooks", tmp_path / "pb", ignore=shutil.ignore_patterns("*broken*")
    )
    case = tmp_path / "pb" / "tests" / "spec-example-contained.yaml"
    case.write_text(case.read_text().replace("is_service_account: false", "service: false"))
    result = CliRunner().invoke(
        cases_command,
        ["--catalog", str(CATALOG), str(tmp_path / "pb" / "spec-example.playbook.yaml")],
    )
    assert result.exit_code == 1
    assert "recorded output of ldap.get_user does not fit" in result.output
    assert "service: no such field" in result.output


def test_a_bad_case_file_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    shutil.copytree(REPO / "playbooks" / "brute-force-watch", tmp_path / "bf")
    (tmp_path / "bf" / "tests" / "broken.yaml").write_text("name: x\nexpect: {status: exploded}\n")
    result = CliRunner().invoke(cases_command, [str(tmp_path / "bf")])
    assert result.exit_code == 1
    assert "(case file)" in result.output
    assert "expect.status" in result.output


def test_no_cases_at_all_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "playbook.yaml").write_text(
        "id: p\nname: P\ntrigger: {manual: true}\n"
        "steps:\n  - id: a\n    action: core.log\n    with: {message: x}\n"
    )
    result = CliRunner().invoke(cases_command, [str(tmp_path / "p")])
    assert result.exit_code == 1


SCENARIOS = [
    "security-incident-response",
    "compromised-account",
    "p1-incident",
    "change-management",
    "employee-onboarding",
    "monthly-server-check",
    "after-hours-routing",
    "cpu-ladder",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_shipped_scenario_has_its_paths_tested_and_a_page(scenario: str) -> None:
    """SPEC §11: a main path, a failure path and an escalation at least, and a page of its own."""
    cases = sorted((REPO / "playbooks" / scenario / "tests").glob("*.yaml"))
    assert len(cases) >= 3, cases
    assert (REPO / "docs" / "playbooks" / f"{scenario}.md").is_file()
