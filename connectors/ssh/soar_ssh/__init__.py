"""Allow-listed commands on hosts over SSH (asyncssh): host keys checked against known_hosts,
every argument validated against its parameter and shell-quoted, so alert data never becomes
shell syntax. The change-management playbook's backup, apply, check and roll back."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field, JsonValue

from soar.connectors import ActionContext, ActionFailed, Connector, TargetKind
from soar_ssh._session import (
    BadCredentials,
    Credentials,
    Finished,
    HostKeyRejected,
    LoginRefused,
    TimedOut,
    TrustMissing,
    Unreachable,
    connect,
    run,
)
from soar_ssh._settings import Command, InputRefused, SettingsError, SshSettings, parse_settings

__all__ = ["CommandRun", "RunCommand", "ssh"]

ssh = Connector("ssh", doc="Allow-listed commands on hosts over SSH, host keys checked.")

SECRETS = ["private_key", "passphrase", "password"]
IDEMPOTENCY_ENV = "SOAR_IDEMPOTENCY_KEY"
REDACTED = "[redacted]"
# Kept back from the step's budget to kill a command past it and say so before the engine
# cancels the attempt.
CLEANUP_S = 3.0


class RunCommand(BaseModel):
    """Run the allow-listed command `command` on `host` with `args` for its parameters."""

    host: str = Field(description="a host name or address that matches the `hosts` allow-list")
    command: str = Field(description="the name of a command in the `commands` allow-list")
    args: dict[str, JsonValue] = Field(
        default_factory=dict, description="a value for each parameter of the command"
    )


class CommandRun(BaseModel):
    host: str
    command: str
    exit_status: int | None = Field(description="None when the command was ended by a signal")
    signal: str | None = None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_seconds: float
    undo: str | None = Field(description="the command that undoes this one, from the settings")


@ssh.action(
    name="run",
    secrets=SECRETS,
    idempotent=False,
    timeout=timedelta(minutes=5),
    target=TargetKind.HOST,
    target_field="host",
)
async def run_command(ctx: ActionContext, params: RunCommand) -> CommandRun:
    """Run one allow-listed command on one allow-listed host. Not idempotent: a retry runs the
    command again (it gets the same SOAR_IDEMPOTENCY_KEY in its environment to notice)."""
    return await _run(ctx, params, require_idempotent=False)


@ssh.action(
    name="run_idempotent",
    secrets=SECRETS,
    idempotent=True,
    timeout=timedelta(minutes=5),
    target=TargetKind.HOST,
    target_field="host",
)
async def run_idempotent_command(ctx: ActionContext, params: RunCommand) -> CommandRun:
    """Like `ssh.run`, for commands declared `idempotent = true` only (others are refused):
    running one twice with the same idempotency key has the effect of running it once."""
    return await _run(ctx, params, require_idempotent=True)


async def _run(ctx: ActionContext, params: RunCommand, *, require_idempotent: bool) -> CommandRun:
    settings, command, argv = _checked(ctx, params, require_idempotent=require_idempotent)
    budget = ctx.time_left(command.timeout_seconds)
    credentials = _credentials(ctx)
    where = f"{params.command} on {params.host}"
    ctx.logger.info("running %s", where)
    try:
        conn = await connect(settings, params.host, credentials, budget=budget)
    except HostKeyRejected as exc:
        raise ActionFailed(
            f"host key of {exc.host} is unknown or changed ({exc.fingerprint}): refused; "
            "add the right key to known_hosts if the change is expected"
        ) from None
    except LoginRefused as exc:
        raise ActionFailed(f"authentication failed: {exc}") from None
    except (BadCredentials, TrustMissing) as exc:
        raise ActionFailed(str(exc)) from None
    except Unreachable as exc:
        raise ActionFailed(f"{where}: unreachable: {exc}", retryable=True) from None
    secrets = [s for s in ctx.secrets.values() if s]
    env = {IDEMPOTENCY_ENV: ctx.idempotency_key}
    try:
        async with conn:
            left = ctx.time_left(command.timeout_seconds) - CLEANUP_S
            finished = await run(
                conn, argv, env=env, budget=max(left, 0.1), limit=settings.max_output_bytes
            )
    except TimedOut as exc:
        how = "killed" if exc.killed else "its channel closed"
        raise ActionFailed(f"{where} timed out ({how})", retryable=True) from None
    except Unreachable as exc:
        raise ActionFailed(f"{where}: {exc}", retryable=True) from None
    output = _output(params, command, finished, secrets)
    ctx.logger.info("%s exited %s in %.2f s", where, output.exit_status, output.duration_seconds)
    if output.exit_status is None or output.exit_status not in command.ok_exit_codes:
        status = f"signal {output.signal}" if output.exit_status is None else output.exit_status
        last = output.stderr.strip().splitlines()[-1:] or [""]
        detail = f": {last[0][:200]}" if last[0] else ""
        raise ActionFailed(f"{where} exited with status {status}{detail}")
    return output


def _checked(
    ctx: ActionContext, params: RunCommand, *, require_idempotent: bool
) -> tuple[SshSettings, Command, list[str]]:
    """Settings, command and argv, or a final failure, before any connection is made."""
    try:
        settings = parse_settings(ctx.settings)
        settings.check_host(params.host)
        command = settings.command(params.command)
        if require_idempotent and not command.idempotent:
            raise InputRefused(
                f"command {params.command!r} is not declared idempotent: use ssh.run"
            )
        argv = command.render(params.args)
    except (SettingsError, InputRefused) as exc:
        raise ActionFailed(f"refused: {exc}") from None
    return settings, command, argv


def _credentials(ctx: ActionContext) -> Credentials:
    given = {name: ctx.secrets[name] for name in SECRETS if name in ctx.secrets}
    credentials = Credentials(
        given.get("private_key"), given.get("passphrase"), given.get("password")
    )
    if credentials.private_key is None and credentials.password is None:
        raise ActionFailed("no credentials: set the ssh.private_key or ssh.password secret")
    return credentials


def _output(
    params: RunCommand, command: Command, finished: Finished, secrets: list[str]
) -> CommandRun:
    return CommandRun(
        host=params.host,
        command=params.command,
        exit_status=finished.exit_status,
        signal=finished.signal,
        stdout=scrub(finished.stdout, secrets),
        stderr=scrub(finished.stderr, secrets),
        stdout_truncated=finished.stdout_truncated,
        stderr_truncated=finished.stderr_truncated,
        duration_seconds=round(finished.duration_seconds, 3),
        undo=command.undo,
    )


def scrub(data: bytes, secrets: list[str]) -> str:
    """Remote output as text with every secret value hidden, including one a size limit cut
    short at the end."""
    text = data.decode("utf-8", errors="replace")
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
        for line in secret.splitlines():  # a PEM key may come back line by line
            if len(line) >= 16:
                text = text.replace(line, REDACTED)
    for secret in secrets:
        for cut in range(min(len(secret) - 1, len(text)), 3, -1):
            if text.endswith(secret[:cut]):
                return text[:-cut] + REDACTED
    return text
