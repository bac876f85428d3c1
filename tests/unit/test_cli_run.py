"""`soar run`: live runs with a timeline on a SQLite store, and dry runs that call nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from soar.cli.main import cli
from tests.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[2]
SPEC = FIXTURES / "playbooks" / "spec-example.playbook.yaml"
CATALOG = FIXTURES / "playbooks" / "spec-catalog.json"
ALERT = FIXTURES / "playbooks" / "alerts" / "credential-access.json"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOAR_STORE", f"sqlite:///{tmp_path}/soar.db")
    monkeypatch.setenv("SOAR_PLAYBOOKS", str(tmp_path / "none"))
    monkeypatch.setenv("SOAR_DIRECTORY", json.dumps({"executives": ["ciso@example.org"]}))
    return CliRunner()


def test_a_dry_run_of_the_spec_example_lists_the_effects_in_order(runner: CliRunner) -> None:
    args = [
        "run",
        str(SPEC),
        "--alert",
        str(ALERT),
        "--dry-run",
        "--catalog",
        str(CATALOG),
        "--json",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "completed"
    planned = [(e["step"], e["action"]) for e in document["effects"]]
    assert planned == [
        ("user", "ldap.get_user"),
        ("suspend", "ldap.disable_account"),
        ("approve-isolation", "approval"),
        ("isolate", "edr.isolate_host"),
        ("forensics[0]", "forensics.collect"),
        ("forensics[1]", "forensics.collect"),
        ("tell-executives", "notify.email"),
    ]
    inputs = {e["step"]: e["inputs"] for e in document["effects"]}
    assert inputs["suspend"] == {"dn": "<steps.user.output.dn>"}
    assert inputs["isolate"] == {"host": "host-42"}
    assert inputs["tell-executives"]["to"] == ["ciso@example.org"]


def test_a_catalog_cannot_run_live(runner: CliRunner) -> None:
    result = runner.invoke(
        cli, ["run", str(SPEC), "--alert", str(ALERT), "--catalog", str(CATALOG)]
    )
    assert result.exit_code == 2
    assert "--dry-run only" in result.output


def test_a_live_run_prints_its_timeline_and_is_kept_in_the_store(
    runner: CliRunner, tmp_path: Path
) -> None:
    playbook = REPO / "playbooks" / "brute-force-watch" / "playbook.yaml"
    alert = REPO / "playbooks" / "brute-force-watch" / "alerts" / "generic-brute-force.json"
    result = runner.invoke(cli, ["run", str(playbook), "--alert", str(alert)])
    assert result.exit_code == 0, result.output
    assert "note-accounts[1]" in result.output
    assert "run finished: completed" in result.output
    listed = runner.invoke(cli, ["runs", "list", "--json"])
    (run,) = json.loads(listed.stdout)
    assert (run["playbook_id"], run["status"]) == ("brute-force-watch", "completed")
    shown = runner.invoke(cli, ["runs", "show", run["id"], "--json"])
    timeline = json.loads(shown.stdout)["timeline"]
    assert timeline[0]["kind"] == "run_started"
    assert timeline[-1]["kind"] == "run_finished"
    assert [t["seq"] for t in timeline] == list(range(1, len(timeline) + 1))


def test_a_failed_run_is_retried_from_its_failed_step(runner: CliRunner, tmp_path: Path) -> None:
    playbook = tmp_path / "flaky.playbook.yaml"
    playbook.write_text(
        "id: flaky\nname: Flaky\ntrigger: {manual: true}\n"
        "inputs:\n  fail: {type: boolean}\nsteps:\n"
        "  - id: first\n    action: core.set\n    with: {values: {n: 1}}\n"
        "  - id: second\n    action: core.fail\n    when: inputs.fail\n    with: {message: down}\n"
    )
    result = runner.invoke(cli, ["run", str(playbook), "--input", "fail=true", "--json"])
    assert result.exit_code == 1
    failed = json.loads(result.stdout)
    assert failed["status"] == "failed"
    monkeypatch_dir = tmp_path / "pbs"
    monkeypatch_dir.mkdir()
    (monkeypatch_dir / "flaky.playbook.yaml").write_text(playbook.read_text())
    retried = runner.invoke(
        cli, ["runs", "retry", failed["run_id"]], env={"SOAR_PLAYBOOKS": str(monkeypatch_dir)}
    )
    assert retried.exit_code == 0, retried.output
    assert "(retry of " in retried.output
    new_id = retried.output.split()[1]
    shown = runner.invoke(cli, ["runs", "show", new_id, "--json"])
    document = json.loads(shown.stdout)
    (carried,) = [t for t in document["timeline"] if t["kind"] == "run_retried"]
    assert carried["data"]["from_step"] == "second"
    assert carried["data"]["carried"] == ["first"]  # not run again
    started = [t["step"] for t in document["timeline"] if t["kind"] == "step_started"]
    assert started == ["second"]
    listed = json.loads(runner.invoke(cli, ["runs", "list", "--json"]).stdout)
    assert len(listed) == 2


def test_runs_left_unfinished_are_resumed_to_their_end(runner: CliRunner, tmp_path: Path) -> None:
    import asyncio

    from soar.connectors import Registry
    from soar.connectors.core import core
    from soar.engine import Engine
    from soar.playbook.validate import validate_text
    from soar.store import open_store

    library = tmp_path / "pbs"
    library.mkdir()
    text = (
        "id: slow\nname: Slow\ntrigger: {manual: true}\nsteps:\n"
        "  - id: nap\n    action: core.sleep\n    with: {seconds: 5}\n"
        "  - id: done\n    action: core.set\n    with: {values: {ok: true}}\n"
    )
    (library / "slow.playbook.yaml").write_text(text.replace("seconds: 5", "seconds: 0.05"))

    async def interrupted() -> str:
        registry = Registry.of([core])
        loaded = validate_text(
            text.replace("seconds: 5", "seconds: 0.05"),
            file=str(library / "slow.playbook.yaml"),
            registry=registry,
        ).loaded
        assert loaded is not None
        async with open_store(f"sqlite:///{tmp_path}/soar.db") as store:
            engine = Engine(store, registry, [loaded])
            run_id = await engine.start_run(loaded)
            await asyncio.sleep(0.01)
            await engine.stop()  # the worker goes away mid-run
        return run_id

    run_id = asyncio.run(interrupted())
    result = runner.invoke(
        cli, ["runs", "resume", "--no-cron"], env={"SOAR_PLAYBOOKS": str(library)}
    )
    assert result.exit_code == 0, result.output
    assert "1 run(s) resumed" in result.output
    shown = json.loads(runner.invoke(cli, ["runs", "show", run_id, "--json"]).stdout)
    assert shown["run"]["status"] == "completed"


def test_inputs_are_checked_before_a_run_starts(runner: CliRunner, tmp_path: Path) -> None:
    playbook = tmp_path / "typed.playbook.yaml"
    playbook.write_text(
        "id: typed\nname: Typed\ntrigger: {manual: true}\n"
        "inputs:\n  host: {required: true}\n  count: {type: integer, default: 1}\n"
        'steps:\n  - id: a\n    action: core.log\n    with: {message: "{{ inputs.host }}"}\n'
    )
    missing = runner.invoke(cli, ["run", str(playbook)])
    assert missing.exit_code == 1
    assert "missing required input 'host'" in missing.output
    typed = runner.invoke(
        cli, ["run", str(playbook), "--input", "host=web-1", "--input", "count=lots"]
    )
    assert "input 'count' must be of type integer" in typed.output
    unknown = runner.invoke(
        cli, ["run", str(playbook), "--input", "host=web-1", "--input", "hots=x"]
    )
    assert "unknown input 'hots'" in unknown.output
    ok = runner.invoke(cli, ["run", str(playbook), "--input", "host=web-1", "--json"])
    assert ok.exit_code == 0, ok.output
