"""The canary: every path of ssh.run (success, refusals, a changed host key, a wrong key, a
wrong passphrase, a server that is down, a non-zero exit, a timeout, a command that prints
the secret) runs with the private key's passphrase "canary-ssh-passphrase-1234", and the
canary shows up in no output, no log record (asyncssh's own logging at its most detailed level
included) and no exception text, chained causes and tracebacks included."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from conftest import CANARY, context
from pydantic import JsonValue
from soar_ssh import scrub, ssh
from soar_ssh.testing import Sshd, free_port

from soar.connectors import ActionFailed, Secrets


@pytest.fixture
def asyncssh_logging_on() -> Iterator[None]:
    asyncssh.set_debug_level(3)
    logger = logging.getLogger("asyncssh")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        asyncssh.set_debug_level(1)
        logger.setLevel(previous)


def texts_of(exc: BaseException) -> list[str]:
    seen = ["".join(traceback.format_exception(exc))]
    current: BaseException | None = exc
    while current is not None:
        seen += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return seen


async def test_the_canary_shows_nowhere(
    settings, secrets: Secrets, sshd: Sshd, workdir: Path, caplog, asyncssh_logging_on
) -> None:
    caplog.set_level(logging.DEBUG)
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    wrong_passphrase = Secrets({"private_key": secrets["private_key"], "passphrase": "x" * 20})
    leaked = workdir / "leaked-note"  # a remote file that holds the secret: its output is scrubbed
    leaked.write_text(f"the passphrase is {CANARY}\n")
    echo: dict[str, JsonValue] = {"host": "127.0.0.1", "command": "listing", "args": {"path": "/"}}
    cat: dict[str, JsonValue] = {**echo, "command": "cat", "args": {"path": str(leaked)}}
    cases: list[tuple[dict[str, JsonValue], Secrets, dict[str, JsonValue], float | None]] = [
        (settings, secrets, cat, None),
        (settings, secrets, {**echo, "host": "10.1.1.1"}, None),
        (settings, secrets, {**echo, "command": "nope"}, None),
        ({**settings, "known_hosts": [f"[127.0.0.1]:{sshd.port} {other}"]}, secrets, echo, None),
        (settings, wrong_passphrase, echo, None),
        ({**settings, "port": free_port()}, secrets, echo, None),
        (settings, secrets, {**echo, "command": "fail", "args": {}}, None),
        (
            settings,
            secrets,
            {**echo, "command": "hang", "args": {"pidfile": str(workdir / "p")}},
            4.0,
        ),
    ]
    outputs: list[str] = []
    errors: list[str] = []
    for cfg, given, inputs, budget in cases:
        spec = ssh.actions["run"]
        try:
            output = await spec.fn(
                context(cfg, given, budget=budget), spec.input_model.model_validate(inputs)
            )
            outputs.append(output.model_dump_json())
        except ActionFailed as exc:
            errors += texts_of(exc)
    assert len(outputs) == 1
    assert "the passphrase is [redacted]" in outputs[0]
    assert len(errors) > 7
    logs = [r.getMessage() for r in caplog.records] + [caplog.text]
    assert any("asyncssh" in r.name for r in caplog.records), "asyncssh's log was not captured"
    for text in outputs + errors + logs:
        assert CANARY not in text


def test_a_secret_cut_short_by_the_output_limit_is_hidden_too() -> None:
    assert scrub(b"before " + CANARY[:12].encode(), [CANARY]) == "before [redacted]"
    assert scrub(b"a " + CANARY.encode() + b" b", [CANARY]) == "a [redacted] b"
