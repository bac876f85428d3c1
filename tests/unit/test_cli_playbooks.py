"""`soar playbooks`: versions listed with their shares; rollout, promote and rollback on the
configured store, audited with the CLI's actor; refusals are one line and exit status 1."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from soar.cli.auditing import cli_actor
from soar.cli.main import cli
from soar.engine.evidence import Evidence
from soar.engine.versions import save_version
from soar.models.audit import AuditFilter
from soar.models.run import RunStatus
from soar.store import Change, PlaybookVersion, open_store
from tests.contract.runs import a_run

AT = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/soar.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOAR_STORE", url)
    monkeypatch.setenv("SOAR_PLAYBOOKS", str(tmp_path / "none"))

    async def seed() -> None:
        async with open_store(url) as store:
            for version in (1, 2, 3):
                source = f"id: contain\nversion: {version}\n"
                await save_version(
                    store,
                    Evidence(),
                    PlaybookVersion(
                        "contain",
                        version,
                        "sha256:" + hashlib.sha256(source.encode()).hexdigest(),
                        source,
                        "user:ana",
                        AT,
                    ),
                )

    asyncio.run(seed())
    return url


def rolled_out(url: str) -> list[tuple[int, int, str, str]]:
    async def read() -> list[tuple[int, int, str, str]]:
        async with open_store(url) as store:
            records = await store.query_audit(AuditFilter(kind="playbook.rolled_out"))
        bodies = [(json.loads(r.event.body), r.event.actor) for r in records]
        return [(b["version"], b["share"], b["mode"], actor) for b, actor in bodies]

    return asyncio.run(read())


def test_versions_rollout_promote_and_rollback(url: str) -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["playbooks", "versions", "contain", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(v["version"], v["share"], v["stable"]) for v in json.loads(listed.output)] == [
        (1, 100, True),
        (2, 0, False),
        (3, 0, False),
    ]
    canary = runner.invoke(
        cli, ["playbooks", "rollout", "contain", "--version", "2", "--share", "10"]
    )
    assert canary.exit_code == 0, canary.output
    assert canary.output == "contain v2: 10% live\n"
    shadow = [
        "playbooks",
        "rollout",
        "contain",
        "--version",
        "3",
        "--share",
        "50",
        "--mode",
        "dry_run",
    ]
    assert runner.invoke(cli, shadow).exit_code == 0
    table = runner.invoke(cli, ["playbooks", "versions", "contain"])
    assert table.exit_code == 0
    assert [line.split()[:3] for line in table.output.splitlines()] == [
        ["v1", "stable", "user:ana"],
        ["v2", "10%", "live"],
        ["v3", "50%", "dry_run"],
    ]
    promoted = runner.invoke(cli, ["playbooks", "promote", "contain", "--version", "2"])
    assert promoted.output == "contain v2: 100% live\ncontain v1: 0% live\n"
    back = runner.invoke(cli, ["playbooks", "rollback", "contain"])
    assert back.exit_code == 0, back.output
    assert back.output == "contain v1: 100% live\ncontain v2: 0% live\n"
    actor = cli_actor()
    assert rolled_out(url) == [
        (1, 100, "live", "user:ana"),
        (2, 10, "live", actor),
        (3, 50, "dry_run", actor),
        (2, 100, "live", actor),
        (1, 0, "live", actor),
        (1, 100, "live", actor),
        (2, 0, "live", actor),
    ]


def test_refusals_are_one_line(url: str) -> None:
    runner = CliRunner()
    unknown = runner.invoke(cli, ["playbooks", "promote", "contain", "--version", "9"])
    assert unknown.exit_code == 1
    assert "no saved version 9" in unknown.output
    too_much = runner.invoke(
        cli, ["playbooks", "rollout", "contain", "--version", "2", "--share", "101"]
    )
    assert too_much.exit_code == 2  # click refuses it before the store is opened
    nothing = runner.invoke(cli, ["playbooks", "rollback", "contain"])
    assert nothing.exit_code == 1
    assert "no canary" in nothing.output
    missing = runner.invoke(cli, ["playbooks", "versions", "other"])
    assert (missing.exit_code, missing.output) == (1, "Error: no saved version of other\n")


def test_compare_prints_each_version_s_figures(url: str) -> None:
    async def runs() -> None:
        async with open_store(url) as store:
            done = a_run("r1", playbook_id="contain", status=RunStatus.COMPLETED)
            await store.apply(Change(runs=[replace(done, playbook_version=2)]))

    asyncio.run(runs())
    result = CliRunner().invoke(cli, ["playbooks", "compare", "contain", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [(v["version"], v["runs"], v["success_rate"]) for v in found["versions"]] == [
        (2, 1, 1.0)
    ]
    text = CliRunner().invoke(cli, ["playbooks", "compare", "contain"]).stdout
    assert "v2: 1 run(s) (0 dry), 1 completed" in text
