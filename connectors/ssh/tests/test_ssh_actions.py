"""ssh.run and ssh.run_idempotent against a real OpenSSH sshd on loopback (conftest)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest
from conftest import context
from pydantic import JsonValue
from soar_ssh import CommandRun, ssh
from soar_ssh.testing import ClientKey, Sshd, free_port, new_client_key

from soar.connectors import ActionContext, ActionFailed, Secrets


async def call(ctx: ActionContext, inputs: dict[str, JsonValue], action: str = "run") -> CommandRun:
    spec = ssh.actions[action]
    output = await spec.fn(ctx, spec.input_model.model_validate(inputs))
    assert isinstance(output, CommandRun)
    return output


def run_of(command: str, **args: JsonValue) -> dict[str, JsonValue]:
    return {"host": "127.0.0.1", "command": command, "args": dict(args)}


async def test_a_command_runs_and_its_output_comes_back(settings, secrets) -> None:
    output = await call(context(settings, secrets), run_of("echo", word="hello"))
    assert (output.exit_status, output.stdout, output.stderr) == (0, "hello\n", "")
    assert output.host == "127.0.0.1"
    assert output.command == "echo"
    assert not output.stdout_truncated
    assert 0 < output.duration_seconds < 10


def test_the_actions_are_declared_for_hosts_and_idempotent_only_when_asked() -> None:
    run, idempotent = ssh.actions["run"], ssh.actions["run_idempotent"]
    assert (run.idempotent, idempotent.idempotent) == (False, True)
    assert run.target_field == idempotent.target_field == "host"
    assert set(run.secrets) == {"private_key", "passphrase", "password"}


async def test_a_non_zero_exit_is_a_final_failure(settings, secrets) -> None:
    with pytest.raises(ActionFailed) as failed:
        await call(context(settings, secrets), run_of("fail"))
    assert not failed.value.retryable
    assert "status 3" in str(failed.value)
    assert "oops" in str(failed.value)


async def test_a_declared_exit_status_is_returned_as_output(settings, secrets) -> None:
    output = await call(context(settings, secrets), run_of("grep_none"))
    assert (output.exit_status, output.stdout) == (1, "none\n")


async def test_output_is_cut_at_the_limit(settings, secrets) -> None:
    settings = {**settings, "max_output_bytes": 1000}
    output = await call(context(settings, secrets), run_of("chatty"))
    assert output.stdout == "x" * 1000
    assert output.stdout_truncated


INJECTIONS = [
    pytest.param("; touch {marker}", id="semicolon"),
    pytest.param("$(touch {marker})", id="command-substitution"),
    pytest.param("`touch {marker}`", id="backticks"),
    pytest.param("| touch {marker}", id="pipe"),
    pytest.param("&& touch {marker}", id="and"),
    pytest.param("'; touch {marker}; '", id="single-quote-break-out"),
    pytest.param('"; touch {marker}; "', id="double-quote-break-out"),
    pytest.param("> {marker}", id="redirect"),
    pytest.param("$HOME ${{IFS}} * ~ \\", id="expansions"),
    pytest.param("--output={marker}", id="option"),
    pytest.param("; rm -rf / #", id="rm-rf"),
]


@pytest.mark.parametrize("template", INJECTIONS)
async def test_injected_shell_syntax_arrives_as_a_literal_string(
    settings, secrets, workdir: Path, template: str, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.id
    marker = workdir / f"pwned-{name}"
    value = template.format(marker=marker)
    out = workdir / f"argv-{name}"
    await call(context(settings, secrets), run_of("record", value=value, out=str(out)))
    assert out.read_text() == value
    assert not marker.exists()


REFUSED = [
    pytest.param("a; rm -rf /", id="semicolon"),
    pytest.param("$(id)", id="command-substitution"),
    pytest.param("`id`", id="backticks"),
    pytest.param("a\nid", id="newline"),
    pytest.param("a\rid", id="carriage-return"),
    pytest.param("a b", id="space"),
    pytest.param("--help", id="option"),
    pytest.param("-rf", id="short-option"),
    pytest.param("", id="empty"),
    pytest.param("x" * 257, id="too-long"),
]


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP port that counts the connections made to it."""
    accepted: list[int] = []

    def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, accepted


@pytest.mark.parametrize("value", REFUSED)
async def test_an_argument_outside_its_pattern_is_refused_before_connecting(
    settings, secrets, listener, value: str
) -> None:
    port, accepted = listener
    with pytest.raises(ActionFailed) as failed:
        await call(context({**settings, "port": port}, secrets), run_of("listing", path=value))
    assert not failed.value.retryable
    assert "refused" in str(failed.value)
    assert accepted == []


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        pytest.param(run_of("echo", word="x") | {"host": "10.0.0.1"}, "allow-list", id="host"),
        pytest.param(run_of("echo", word="x") | {"host": "127.0.0.1;id"}, "host", id="host-syntax"),
        pytest.param(
            run_of("echo", word="x") | {"host": "-oProxyCommand=id"}, "host", id="host-opt"
        ),
        pytest.param(run_of("reboot"), "allow-list", id="command"),
        pytest.param(run_of("echo", word="x", extra="y"), "unknown", id="unknown-argument"),
        pytest.param(run_of("echo"), "required", id="missing-argument"),
        pytest.param(run_of("echo", word=["x"]), "string", id="not-a-string"),
    ],
)
async def test_what_is_not_allow_listed_is_refused_before_connecting(
    settings, secrets, listener, inputs: dict[str, JsonValue], reason: str
) -> None:
    port, accepted = listener
    with pytest.raises(ActionFailed) as failed:
        await call(context({**settings, "port": port}, secrets), inputs)
    assert not failed.value.retryable
    assert reason in str(failed.value)
    assert accepted == []


async def test_run_idempotent_refuses_a_command_not_declared_idempotent(settings, secrets) -> None:
    with pytest.raises(ActionFailed, match="not declared idempotent"):
        await call(context(settings, secrets), run_of("echo", word="x"), "run_idempotent")
    output = await call(
        context(settings, secrets), run_of("backup", target="db1"), "run_idempotent"
    )
    assert output.stdout == "backup of db1\n"


async def test_a_changed_host_key_is_refused_naming_host_and_fingerprint(
    settings, secrets, sshd: Sshd
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    changed = {**settings, "known_hosts": [f"[127.0.0.1]:{sshd.port} {other}"]}
    with pytest.raises(ActionFailed) as failed:
        await call(context(changed, secrets), run_of("echo", word="x"))
    assert not failed.value.retryable
    assert "127.0.0.1" in str(failed.value)
    assert sshd.fingerprint in str(failed.value)


async def test_an_unknown_host_key_is_refused_never_accepted(settings, secrets, sshd: Sshd) -> None:
    with pytest.raises(ActionFailed) as failed:
        await call(context({**settings, "known_hosts": []}, secrets), run_of("echo", word="x"))
    assert not failed.value.retryable
    assert sshd.fingerprint in str(failed.value)


async def test_known_hosts_may_be_a_file(settings, secrets, sshd: Sshd, tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line + "\n")
    output = await call(
        context({**settings, "known_hosts": str(path)}, secrets), run_of("echo", word="f")
    )
    assert output.stdout == "f\n"
    with pytest.raises(ActionFailed, match="known_hosts cannot be read") as failed:
        await call(
            context({**settings, "known_hosts": str(tmp_path / "none")}, secrets),
            run_of("echo", word="f"),
        )
    assert not failed.value.retryable


async def test_a_key_the_server_does_not_know_is_a_final_failure(settings) -> None:
    stranger = new_client_key()
    with pytest.raises(ActionFailed, match="authentication failed") as failed:
        await call(
            context(settings, Secrets({"private_key": stranger.private_pem})),
            run_of("echo", word="x"),
        )
    assert not failed.value.retryable


async def test_a_wrong_passphrase_is_a_final_failure(settings, client_key: ClientKey) -> None:
    secrets = Secrets({"private_key": client_key.private_pem, "passphrase": "not-it"})
    with pytest.raises(ActionFailed, match="private key cannot be read") as failed:
        await call(context(settings, secrets), run_of("echo", word="x"))
    assert not failed.value.retryable


async def test_a_server_that_is_down_is_retryable(settings, secrets) -> None:
    with pytest.raises(ActionFailed, match="unreachable") as failed:
        await call(context({**settings, "port": free_port()}, secrets), run_of("echo", word="x"))
    assert failed.value.retryable


async def test_a_hanging_command_times_out_retryably_and_is_killed(
    settings, secrets, workdir: Path
) -> None:
    pidfile = workdir / "hang-pid"
    with pytest.raises(ActionFailed, match="timed out") as failed:
        await call(context(settings, secrets, budget=5.0), run_of("hang", pidfile=str(pidfile)))
    assert failed.value.retryable
    assert "(killed)" in str(failed.value)
    pid = int(pidfile.read_text())
    for _ in range(100):
        if not _alive(pid):
            break
        await asyncio.sleep(0.05)
    assert not _alive(pid), "the remote process outlived its timeout"
    assert not any(_is_sleep_600(p) for p in os.listdir("/proc") if p.isdigit())


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _is_sleep_600(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00600\x00"
    except OSError:
        return False


async def test_the_idempotency_key_reaches_the_remote_environment(settings, secrets) -> None:
    ctx = context(settings, secrets, key="run-42/apply")
    output = await call(ctx, run_of("key"))
    assert output.stdout == "run-42/apply"


async def test_a_command_names_its_undo_for_compensation(settings, secrets) -> None:
    applied = await call(
        context(settings, secrets), run_of("apply", target="web1", change="CHG0042")
    )
    assert (applied.stdout, applied.undo) == ("applied CHG0042 to web1\n", "rollback")
    undone = await call(context(settings, secrets), run_of(applied.undo, target="web1"))
    assert undone.stdout == "rolled back web1\n"
    assert undone.undo is None


async def test_settings_problems_are_final_and_listed(settings, secrets) -> None:
    broken = {**settings, "commands": {"a": {"argv": ["/bin/x", "{p}"], "undo": "b"}}, "port": "x"}
    with pytest.raises(ActionFailed) as failed:
        await call(context(broken, secrets), run_of("a", p="1"))
    assert not failed.value.retryable
    assert "port" in str(failed.value)
