"""`soar keys` and `soar audit` end to end: runs leave records, checkpoints are signed, an export
verifies with nothing but the file and the public key, and every kind of tampering is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from soar.cli.main import cli

PLAYBOOK = """\
id: note-it
name: Note an alert
trigger: {manual: true}
steps:
  - id: note
    action: core.log
    with: {message: "alert {{ alert.id }} on {{ alert.hosts | join(',') }}"}
  - id: mark
    action: core.set
    with: {values: {seen: true}}
"""
ALERT = {
    "id": "a-1",
    "title": "Shell spawned",
    "severity": "high",
    "time": "2026-11-28T10:00:00Z",
    "hosts": ["web-1"],
}


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOAR_STORE", f"sqlite:///{tmp_path}/soar.db")
    monkeypatch.setenv("SOAR_PLAYBOOKS", str(tmp_path / "none"))
    monkeypatch.setenv("SOAR_AUDIT__KEYS", str(tmp_path / "keys"))
    monkeypatch.setenv("SOAR_AUDIT__PUBLISH_FILE", str(tmp_path / "published.jsonl"))
    return CliRunner()


def ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def run_shipped_playbook(runner: CliRunner) -> None:
    playbook, alert = Path("note-it.playbook.yaml"), Path("alert.json")
    playbook.write_text(PLAYBOOK)
    alert.write_text(json.dumps(ALERT))
    ok(runner, "run", str(playbook), "--alert", str(alert), "--json")


@pytest.fixture
def exported(runner: CliRunner, tmp_path: Path) -> tuple[list[str], Path]:
    """Keys, two runs (a checkpoint after each), the public key, and the export's lines."""
    ok(runner, "keys", "create")
    run_shipped_playbook(runner)
    run_shipped_playbook(runner)
    (tmp_path / "pub.pem").write_text(ok(runner, "keys", "export"))
    ok(runner, "audit", "export", "--out", str(tmp_path / "audit.jsonl"))
    return (tmp_path / "audit.jsonl").read_text().splitlines(), tmp_path / "pub.pem"


def verify(runner: CliRunner, lines: list[str], key: Path, tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "candidate.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    result = runner.invoke(cli, ["audit", "verify", str(path), "--key", str(key), "--json"])
    report: dict[str, object] = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1)
    return report


def records(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if json.loads(line)["type"] == "record"]


def problem(report: dict[str, object]) -> tuple[object, object]:
    found = report["problem"]
    assert isinstance(found, dict)
    return found["kind"], found["seq"]


def test_the_untouched_export_verifies(
    runner: CliRunner, exported: tuple[list[str], Path], tmp_path: Path
) -> None:
    lines, key = exported
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds.count("checkpoint") >= 2
    report = verify(runner, lines, key, tmp_path)
    assert report["ok"] is True
    assert report["records"] == kinds.count("record")
    text = ok(runner, "audit", "verify", str(tmp_path / "audit.jsonl"), "--key", str(key))
    assert text.startswith("ok: ")


def test_an_edited_field_is_named(
    runner: CliRunner, exported: tuple[list[str], Path], tmp_path: Path
) -> None:
    lines, key = exported
    index = records(lines)[3]
    lines[index] = lines[index].replace('"actor":"engine"', '"actor":"mallory"', 1)
    assert problem(verify(runner, lines, key, tmp_path)) == ("edited", 4)


def test_a_deleted_record_is_named(
    runner: CliRunner, exported: tuple[list[str], Path], tmp_path: Path
) -> None:
    lines, key = exported
    del lines[records(lines)[2]]
    kind, seq = problem(verify(runner, lines, key, tmp_path))
    assert kind == "deleted"
    assert seq == 3


def test_two_swapped_records_are_named(
    runner: CliRunner, exported: tuple[list[str], Path], tmp_path: Path
) -> None:
    lines, key = exported
    first, second = records(lines)[4], records(lines)[5]
    lines[first], lines[second] = lines[second], lines[first]
    kind, seq = problem(verify(runner, lines, key, tmp_path))
    assert kind == "reordered"
    assert seq in (5, 6)


def test_an_inserted_record_is_named(
    runner: CliRunner, exported: tuple[list[str], Path], tmp_path: Path
) -> None:
    lines, key = exported
    index = records(lines)[2]
    forged = json.loads(lines[index])
    forged["body"]["actor"] = "mallory"
    lines.insert(index + 1, json.dumps(forged, separators=(",", ":")))
    kind, _ = problem(verify(runner, lines, key, tmp_path))
    assert kind in ("inserted", "edited")


def test_a_tail_cut_behind_a_signed_checkpoint_is_named(
    runner: CliRunner, exported: tuple[list[str], Path], tmp_path: Path
) -> None:
    lines, key = exported
    published = (tmp_path / "published.jsonl").read_text().splitlines()
    kept = records(lines)[:5]
    cut = [line for i, line in enumerate(lines) if i in kept]
    path = tmp_path / "cut.jsonl"
    path.write_text("".join(line + "\n" for line in cut))
    (tmp_path / "outside.jsonl").write_text("".join(line + "\n" for line in published))
    result = runner.invoke(
        cli,
        [
            "audit",
            "verify",
            str(path),
            "--key",
            str(key),
            "--checkpoints",
            str(tmp_path / "outside.jsonl"),
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["problem"]["kind"] == "truncated"


def test_a_checkpoint_re_signed_with_an_unknown_key_is_named(
    runner: CliRunner, exported: tuple[list[str], Path], tmp_path: Path
) -> None:
    lines, key = exported
    other = CliRunner()
    other_env = {"SOAR_AUDIT__KEYS": str(tmp_path / "other-keys")}
    assert other.invoke(cli, ["keys", "create"], env=other_env).exit_code == 0
    from soar.audit.keys import Keyring, checkpoint_line

    rogue = Keyring.open(tmp_path / "other-keys")
    index = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "checkpoint")
    body = json.loads(lines[index])["checkpoint"]
    lines[index] = checkpoint_line({k: v for k, v in body.items() if k != "key_id"}, rogue)
    kind, _ = problem(verify(runner, lines, key, tmp_path))
    assert kind == "unknown_key"


def test_query_finds_a_run_by_id_and_names_the_actor(
    runner: CliRunner, exported: tuple[list[str], Path]
) -> None:
    lines, _ = exported
    run_id = next(
        json.loads(line)["body"]["run_id"]
        for line in lines
        if json.loads(line)["type"] == "record" and "run_id" in json.loads(line)["body"]
    )
    found = ok(runner, "audit", "query", "--run", run_id, "--json").splitlines()
    bodies = [json.loads(line)["body"] for line in found]
    assert bodies[0]["kind"] == "run.started"
    assert bodies[-1]["kind"] == "run.finished"
    assert {b["run_id"] for b in bodies} == {run_id}
    table = ok(runner, "audit", "query", "--run", run_id)
    assert "run.finished" in table


def test_a_proof_from_prove_checks_out(
    runner: CliRunner, exported: tuple[list[str], Path], tmp_path: Path
) -> None:
    _, key = exported
    proof = ok(runner, "audit", "prove", str(tmp_path / "audit.jsonl"), "--seq", "3")
    (tmp_path / "proof.json").write_text(proof)
    checked = ok(runner, "audit", "check-proof", str(tmp_path / "proof.json"), "--key", str(key))
    assert checked.startswith("ok")


def test_rotation_is_recorded_and_old_checkpoints_still_verify(
    runner: CliRunner, exported: tuple[list[str], Path], tmp_path: Path
) -> None:
    ok(runner, "keys", "rotate")
    run_shipped_playbook(runner)
    listed = ok(runner, "keys", "list").splitlines()
    assert len(listed) == 2
    (tmp_path / "all.pem").write_text(ok(runner, "keys", "export"))
    ok(runner, "audit", "export", "--out", str(tmp_path / "after.jsonl"))
    lines = (tmp_path / "after.jsonl").read_text().splitlines()
    kinds = [json.loads(line)["body"]["kind"] for line in lines if '"type":"record"' in line]
    assert "key.rotated" in kinds
    key_ids = {
        json.loads(line)["checkpoint"]["key_id"] for line in lines if '"type":"checkpoint"' in line
    }
    assert len(key_ids) == 2
    assert verify(runner, lines, tmp_path / "all.pem", tmp_path)["ok"] is True
