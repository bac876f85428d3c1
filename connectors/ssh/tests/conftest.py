"""The ssh tests: one real OpenSSH sshd for the session (soar_ssh.testing), a client key whose
passphrase is the canary, and the allow-list of commands the tests run on it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import JsonValue
from soar_ssh.testing import ClientKey, ServerMissing, Sshd, new_client_key, running_sshd

from soar.connectors import ActionContext, Secrets
from tests.servers import unavailable

CANARY = "canary-ssh-passphrase-1234"
ANYTHING = r"^[^\x00]{1,256}$"  # lets the injection corpus through, to show quoting alone holds


def commands(tmp: Path) -> dict[str, JsonValue]:
    return {
        "echo": ["/bin/echo", "{word}"],
        "record": {
            "argv": ["/bin/sh", "-c", 'printf %s "$1" > "$2"', "record", "{value}", "{out}"],
            "params": {
                "value": {"pattern": ANYTHING, "allow_dash_prefix": True},
                "out": {"pattern": f"^{tmp}/[a-z0-9-]+$"},
            },
        },
        "listing": ["/bin/ls", "{path}"],
        "cat": ["/bin/cat", "{path}"],
        "fail": ["/bin/sh", "-c", "echo oops >&2; exit 3"],
        "grep_none": {"argv": ["/bin/sh", "-c", "echo none; exit 1"], "ok_exit_codes": [0, 1]},
        "key": {"argv": ["/bin/sh", "-c", 'printf %s "$SOAR_IDEMPOTENCY_KEY"'], "idempotent": True},
        "hang": ["/bin/sh", "-c", 'echo $$ > "$1"; sleep 600; echo never', "hang", "{pidfile}"],
        "chatty": ["/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"],
        "backup": {
            "argv": ["/bin/sh", "-c", 'echo "backup of $1"', "backup", "{target}"],
            "params": {"target": {"pattern": "^[a-z0-9-]{1,64}$"}},
            "idempotent": True,
        },
        "apply": {
            "argv": ["/bin/sh", "-c", 'echo "applied $2 to $1"', "apply", "{target}", "{change}"],
            "params": {"change": {"pattern": "^CHG[0-9]{4,10}$"}},
            "undo": "rollback",
        },
        "rollback": ["/bin/sh", "-c", 'echo "rolled back $1"', "rollback", "{target}"],
    }


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    try:
        with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
            yield server
    except ServerMissing as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def client_key(sshd: Sshd) -> ClientKey:
    key = new_client_key(passphrase=CANARY)
    sshd.authorize(key.public_line)
    return key


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remote")


@pytest.fixture
def settings(sshd: Sshd, workdir: Path) -> dict[str, JsonValue]:
    return sshd.settings(commands=commands(workdir), connect_timeout_seconds=5)


@pytest.fixture
def secrets(client_key: ClientKey) -> Secrets:
    return Secrets({"private_key": client_key.private_pem, "passphrase": CANARY})


def context(
    settings: dict[str, JsonValue],
    secrets: Secrets,
    *,
    key: str = "run-1/step",
    budget: float | None = None,
) -> ActionContext:
    deadline = None if budget is None else time.monotonic() + budget
    return ActionContext(key, settings=settings, secrets=secrets, deadline=deadline)
