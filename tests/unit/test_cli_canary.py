"""The canary secret through the command line: a connector that needs a secret logs it, returns
it and fails with it in the message; nothing any command prints shows it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from soar.cli.main import cli
from soar.connectors import ActionContext, ActionFailed, Connector, Registry
from soar.connectors.core import core

CANARY = "canary-5d1c7e-keep-me-out-of-cli-output"

PLAYBOOK = """\
id: leaky
name: A connector that mishandles its secret
trigger: {manual: true}
steps:
  - {id: fetch, action: vault.fetch, with: {user: jdoe}}
  - {id: refuse, action: vault.refuse, with: {user: jdoe}}
"""


class Who(BaseModel):
    user: str


class Echo(BaseModel):
    user: str
    seen: str


def vault() -> Connector:
    connector = Connector("vault", doc="mishandles its API key on purpose")

    @connector.action(secrets=["api_key"], idempotent=True)
    async def fetch(ctx: ActionContext, params: Who) -> Echo:
        key = ctx.secrets["api_key"]
        ctx.logger.warning("calling the vault with key %s for %s", key, params.user)
        return Echo(user=params.user, seen=f"key={key}")

    @connector.action(secrets=["api_key"])
    async def refuse(ctx: ActionContext, params: Who) -> Echo:
        raise ActionFailed(f"the vault refused key {ctx.secrets['api_key']}", retryable=False)

    return connector


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOAR_STORE", f"sqlite:///{tmp_path}/soar.db")
    monkeypatch.setenv("SOAR_PLAYBOOKS", str(tmp_path / "none"))
    monkeypatch.setenv("SOAR_SECRET_VAULT_API_KEY", CANARY)
    registry = Registry.of([core, vault()])
    for module in ("soar.cli.run", "soar.cli.runs"):
        monkeypatch.setattr(f"{module}.load_registry", lambda: registry)
    return CliRunner()


def test_no_command_prints_the_secret(
    runner: CliRunner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    playbook = tmp_path / "leaky.playbook.yaml"
    playbook.write_text(PLAYBOOK)
    outputs: list[str] = []

    def invoke(*args: str) -> str:
        result = runner.invoke(cli, list(args))
        outputs.append(result.output)
        outputs.append(result.stderr)
        return result.stdout

    invoke("keys", "create")
    assert (tmp_path / "keys").is_dir()
    invoke("run", str(playbook))
    printed = invoke("run", str(playbook), "--json")
    finished = json.loads(printed)
    run_id = finished["run_id"]
    assert finished["status"] == "failed"
    invoke("runs", "list")
    invoke("runs", "list", "--json")
    shown = invoke("runs", "show", run_id, "--json")
    invoke("runs", "show", run_id)
    exported = invoke("audit", "export")
    invoke("audit", "query", "--run", run_id)
    invoke("audit", "query", "--run", run_id, "--json")
    outputs.extend(record.getMessage() for record in caplog.records)

    # the secret reached the connector, and every place it leaked to shows the redaction
    assert "[redacted]" in shown
    assert "the vault refused key [redacted]" in shown
    assert "calling the vault with key [redacted] for jdoe" in caplog.text
    assert exported.count("\n") > 5
    assert all(CANARY not in text for text in outputs)


def test_a_secret_from_the_encrypted_store_reaches_the_action_and_no_output(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOAR_SECRET_VAULT_API_KEY")
    monkeypatch.setenv("SOAR_SECRETS__KEY_FILE", str(tmp_path / "secrets.key"))
    playbook = tmp_path / "leaky.playbook.yaml"
    playbook.write_text(PLAYBOOK)
    outputs: list[str] = []

    def invoke(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(cli, list(args), input=stdin)
        outputs.extend([result.output, result.stderr])
        failed_run = args[0] == "run" and result.exit_code == 1  # the playbook fails on purpose
        assert result.exit_code == 0 or failed_run, result.output
        return result.stdout

    invoke("secrets", "keygen", str(tmp_path / "secrets.key"))
    invoke("secrets", "set", "vault.api_key", stdin=CANARY + "\n")
    listed = invoke("secrets", "list")
    assert listed.startswith("vault.api_key\t")
    shown = invoke("runs", "show", json.loads(invoke("run", str(playbook), "--json"))["run_id"])
    assert "the vault refused key [redacted]" in shown  # the store's value reached the action
    invoke("secrets", "keygen", str(tmp_path / "next.key"))
    invoke("secrets", "rotate", "--to", str(tmp_path / "next.key"))
    monkeypatch.setenv("SOAR_SECRETS__KEY_FILE", str(tmp_path / "next.key"))
    again = invoke("runs", "show", json.loads(invoke("run", str(playbook), "--json"))["run_id"])
    assert "the vault refused key [redacted]" in again
    invoke("secrets", "delete", "vault.api_key")
    assert "no secrets" in invoke("secrets", "list")
    assert CANARY not in (tmp_path / "secrets.json").read_text()
    assert all(CANARY not in text for text in outputs)
