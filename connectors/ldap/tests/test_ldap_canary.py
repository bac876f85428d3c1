"""The canary: every action, on success and on each kind of failure, runs with the bind
password "canary-ldap-secret-1234" (both test servers take it), and the canary shows up in no
output, no log record (ldap3's own logging turned up to its most detailed level included) and
no exception text, chained causes and tracebacks included."""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from ldap_lab import Lab
from ldap_test_servers import BIND_PASSWORD
from soar_ldap import ldap
from soar_ldap._directory import Directory
from soar_ldap._ldap3 import ldap3

from soar.connectors import ActionFailed

CANARY = "canary-ldap-secret-1234"


def test_the_servers_really_take_the_canary() -> None:
    assert BIND_PASSWORD == CANARY


@pytest.fixture
def ldap3_logging_on() -> Iterator[None]:
    """ldap3 logs nothing unless asked; ask for everything, as an operator debugging might."""
    from ldap3.utils import log as ldap3_log

    ldap3_log.set_library_log_detail_level(ldap3_log.EXTENDED)
    logger = logging.getLogger("ldap3")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        ldap3_log.set_library_log_detail_level(ldap3_log.OFF)
        logger.setLevel(previous)


def texts_of(exc: BaseException) -> list[str]:
    seen: list[str] = ["".join(traceback.format_exception(exc))]
    current: BaseException | None = exc
    while current is not None:
        seen += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return seen


async def run_everything(lab: Lab, port_closed: int) -> tuple[list[str], list[str]]:
    """Every action: its successes and its failures. Returns (outputs, exception texts)."""
    outputs: list[str] = []
    errors: list[str] = []
    ctx = lab.context()
    login = lab.unique("can")
    dn = lab.add_user(login)
    group = lab.add_group(members=[dn])
    created = lab.unique("cnew")
    good: list[tuple[str, dict[str, Any]]] = [
        ("get_user", {"username": login}),
        ("disable_account", {"dn": dn}),
        ("disable_account", {"dn": dn}),
        ("enable_account", {"dn": dn}),
        ("reset_password", {"dn": dn}),
        ("remove_from_groups", {"dn": dn}),
        ("restore_groups", {"dn": dn, "groups": [group]}),
        ("create_account", {"username": created, "given_name": "C", "surname": "D"}),
        ("create_account", {"username": created, "given_name": "C", "surname": "D"}),
    ]
    missing = f"cn=missing,{lab.people}"
    bad: list[tuple[str, dict[str, Any]]] = [
        ("get_user", {"username": "no-such-user"}),
        ("disable_account", {"dn": missing}),
        ("enable_account", {"dn": "not a dn"}),
        ("reset_password", {"dn": missing}),
        ("remove_from_groups", {"dn": dn, "groups": ["cn=x,dc=elsewhere"]}),
        ("restore_groups", {"dn": dn, "groups": [f"cn=missing,{lab.base}"]}),
        ("create_account", {"username": login, "given_name": "C", "surname": "D", "groups": []}),
    ]
    for action, inputs in good:
        spec = ldap.actions[action]
        output = await spec.fn(ctx, spec.input_model.model_validate(inputs))
        outputs.append(output.model_dump_json())
    unreachable = Lab(lab.flavour, dict(lab.settings, url=f"ldap://127.0.0.1:{port_closed}"))
    for action, inputs in bad + good:
        spec = ldap.actions[action]
        params = spec.input_model.model_validate(inputs)
        for context in (ctx, unreachable.context()):
            if (action, inputs) in good and context is ctx:
                continue
            try:
                outputs.append((await spec.fn(context, params)).model_dump_json())
            except ActionFailed as exc:
                errors += texts_of(exc)
    return outputs, errors


@pytest.mark.usefixtures("ldap3_logging_on")
async def test_the_bind_password_appears_in_no_output_log_or_error(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outputs, errors = await run_everything(lab, port)
    assert outputs
    assert errors
    assert any("no user named" in e for e in errors)
    assert any("unreachable" in e for e in errors)
    logged = [r.getMessage() for r in caplog.records] + [caplog.text]
    assert any(r.name.startswith("ldap3") for r in caplog.records), "ldap3 logged nothing"
    for text in outputs + errors + logged:
        assert CANARY not in text
        assert CANARY.encode("utf-16-le").decode("latin-1") not in text


async def test_the_bound_connection_keeps_no_password(lab: Lab) -> None:
    """ldap3's Connection repr prints its password: the wire client drops it after the bind."""
    naive = ldap3.Connection(ldap3.Server("ldap://127.0.0.1:1"), "cn=x", CANARY)
    assert CANARY in repr(naive)
    async with Directory.open(lab.settings, CANARY) as directory:
        assert CANARY not in repr(directory._conn)
        assert CANARY not in str(directory._conn)
        assert CANARY not in repr(directory)
