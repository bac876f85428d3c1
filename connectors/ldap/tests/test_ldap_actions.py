"""Every ldap action against a real OpenLDAP slapd (ppolicy) and a real Samba AD DC: success,
idempotency (`changed`, the entry's modify time), failures and their retryability."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ldap_lab import USER_PASSWORD, Lab
from pydantic import BaseModel
from soar_ldap import ldap

from soar.connectors import ActionContext, ActionFailed


async def call(action: str, ctx: ActionContext, **inputs: Any) -> Any:
    spec = ldap.actions[action]
    return await spec.fn(ctx, spec.input_model.model_validate(inputs))


async def failure(action: str, ctx: ActionContext, **inputs: Any) -> ActionFailed:
    with pytest.raises(ActionFailed) as caught:
        await call(action, ctx, **inputs)
    return caught.value


def dump(output: BaseModel) -> dict[str, Any]:
    return output.model_dump()


# -- get_user ----------------------------------------------------------------------------------


async def test_get_user_finds_the_account_its_groups_and_state(lab: Lab) -> None:
    login = lab.unique()
    dn = lab.add_user(login)
    group = lab.add_group(members=[dn])
    user = await call("get_user", lab.context(), username=login)
    assert user.dn.lower() == dn.lower()
    assert user.name == login
    assert user.display_name == f"Test {login}"
    assert [g.lower() for g in user.groups] == [group.lower()]
    assert (user.disabled, user.locked, user.is_service_account) == (False, False, False)


async def test_an_account_under_a_service_base_is_a_service_account(lab: Lab) -> None:
    login = lab.unique("svc")
    lab.add_user(login, container=lab.services)
    user = await call("get_user", lab.context(), username=login)
    assert user.is_service_account


async def test_an_unknown_user_is_a_final_failure_that_says_so(lab: Lab) -> None:
    error = await failure("get_user", lab.context(), username="nobody-here")
    assert not error.retryable
    assert "no user named 'nobody-here'" in str(error)


async def test_an_active_directory_user_is_found_by_user_principal_name(ad_lab: Lab) -> None:
    login = ad_lab.unique()
    dn = ad_lab.add_user(login)
    user = await call("get_user", ad_lab.context(), username=f"{login}@example.test")
    assert (user.dn.lower(), user.name) == (dn.lower(), login)


# -- disable / enable --------------------------------------------------------------------------


async def test_disable_stops_binds_and_enable_lets_them_in_again(lab: Lab) -> None:
    dn = lab.add_user()
    assert lab.can_bind(dn)
    state = await call("disable_account", lab.context(), dn=dn)
    assert dump(state) == {"dn": state.dn, "disabled": True, "changed": True}
    assert not lab.can_bind(dn)
    assert (await call("get_user", lab.context(), username=lab.attributes_login(dn))).disabled
    state = await call("enable_account", lab.context(), dn=dn)
    assert dump(state) == {"dn": state.dn, "disabled": False, "changed": True}
    assert lab.can_bind(dn)


async def test_disabling_twice_with_one_key_changes_the_directory_once(lab: Lab) -> None:
    dn = lab.add_user()
    ctx = lab.context("run-1/suspend")
    first = await call("disable_account", ctx, dn=dn)
    stamp = lab.modified(dn)
    second = await call("disable_account", ctx, dn=dn)
    assert (first.changed, second.changed) == (True, False)
    assert lab.modified(dn) == stamp
    again = await call("enable_account", ctx, dn=dn)
    assert (await call("enable_account", ctx, dn=dn)).changed is False
    assert again.changed


async def test_the_directory_records_the_disable_as_each_dialect_does(lab: Lab) -> None:
    dn = lab.add_user()
    await call("disable_account", lab.context(), dn=dn)
    if lab.flavour == "ad":
        control = int(lab.attributes(dn, "userAccountControl")["userAccountControl"][0])
        assert control & 0x2
    else:
        locked = lab.attributes(dn, "pwdAccountLockedTime")["pwdAccountLockedTime"]
        assert locked == ["000001010000Z"]


async def test_the_verify_probes_see_the_state(lab: Lab) -> None:
    dn = lab.add_user()
    disable, enable = ldap.actions["disable_account"], ldap.actions["enable_account"]
    assert disable.verify is not None
    assert enable.verify is not None
    ref = disable.input_model.model_validate({"dn": dn})
    assert await disable.verify(lab.context(), ref) is None
    assert await enable.verify(lab.context(), ref) is not None
    await call("disable_account", lab.context(), dn=dn)
    assert await disable.verify(lab.context(), ref) is not None
    assert await enable.verify(lab.context(), ref) is None


async def test_enable_lifts_an_openldap_lockout_after_failed_binds(openldap_lab: Lab) -> None:
    dn = openldap_lab.add_user()
    openldap_lab.lock_by_failures(dn)
    assert not openldap_lab.can_bind(dn)
    login = openldap_lab.attributes_login(dn)
    user = await call("get_user", openldap_lab.context(), username=login)
    assert (user.locked, user.disabled) == (True, False)
    assert (await call("enable_account", openldap_lab.context(), dn=dn)).changed
    assert openldap_lab.can_bind(dn)


async def test_a_dn_that_is_no_account_or_outside_the_base_is_refused(lab: Lab) -> None:
    group = lab.add_group()
    error = await failure("disable_account", lab.context(), dn=group)
    assert not error.retryable
    assert "not a user account" in str(error)
    error = await failure("disable_account", lab.context(), dn="uid=x,dc=elsewhere,dc=net")
    assert not error.retryable
    assert "outside" in str(error)
    error = await failure("disable_account", lab.context(), dn="not a dn")
    assert not error.retryable
    gone = f"cn=nobody,{lab.people}"
    error = await failure("enable_account", lab.context(), dn=gone)
    assert not error.retryable
    assert "no account" in str(error)


# -- reset_password ----------------------------------------------------------------------------


async def test_reset_password_shuts_the_old_password_out(lab: Lab) -> None:
    dn = lab.add_user()
    result = await call("reset_password", lab.context(), dn=dn, must_change=False)
    assert dump(result) == {"dn": result.dn, "changed": True, "must_change": False}
    assert not lab.can_bind(dn, USER_PASSWORD)
    if lab.flavour == "openldap":
        assert lab.attributes(dn, "pwdChangedTime")["pwdChangedTime"]


async def test_reset_password_can_demand_a_change_at_next_logon(lab: Lab) -> None:
    dn = lab.add_user()
    await call("reset_password", lab.context(), dn=dn)
    if lab.flavour == "ad":
        assert lab.attributes(dn, "pwdLastSet")["pwdLastSet"] == ["0"]
    else:
        assert lab.attributes(dn, "pwdReset")["pwdReset"] == ["TRUE"]


# -- groups ------------------------------------------------------------------------------------


async def test_remove_from_groups_returns_what_restore_groups_puts_back(lab: Lab) -> None:
    dn = lab.add_user()
    kept_out = lab.add_group()
    first, second = lab.add_group(members=[dn]), lab.add_group(members=[dn])
    removal = await call("remove_from_groups", lab.context(), dn=dn)
    assert sorted(g.lower() for g in removal.removed) == sorted([first.lower(), second.lower()])
    assert removal.changed
    assert dn.lower() not in lab.members(first) | lab.members(second)
    again = await call("remove_from_groups", lab.context(), dn=dn)
    assert (again.removed, again.changed) == ([], False)
    restored = await call("restore_groups", lab.context(), dn=dn, groups=removal.removed)
    assert restored.changed
    assert len(restored.added) == 2
    assert dn.lower() in lab.members(first)
    assert dn.lower() in lab.members(second)
    assert dn.lower() not in lab.members(kept_out)
    repeat = await call("restore_groups", lab.context(), dn=dn, groups=removal.removed)
    assert (repeat.added, repeat.changed) == ([], False)


async def test_remove_from_named_groups_skips_those_it_is_not_in(lab: Lab) -> None:
    dn = lab.add_user()
    member, other, stays = lab.add_group(members=[dn]), lab.add_group(), lab.add_group(members=[dn])
    removal = await call("remove_from_groups", lab.context(), dn=dn, groups=[member, other])
    assert [g.lower() for g in removal.removed] == [member.lower()]
    assert dn.lower() in lab.members(stays)


async def test_a_retry_under_the_same_key_reports_every_group_the_step_removed(lab: Lab) -> None:
    dn = lab.add_user()
    first, second = lab.add_group(members=[dn]), lab.add_group(members=[dn])
    ctx = lab.context("run-7/strip")
    # The first attempt took the account out of one group, then (say) timed out.
    await call("remove_from_groups", ctx, dn=dn, groups=[first])
    retried = await call("remove_from_groups", ctx, dn=dn)
    assert sorted(g.lower() for g in retried.removed) == sorted([first.lower(), second.lower()])


async def test_restoring_into_a_missing_group_is_a_final_failure(lab: Lab) -> None:
    dn = lab.add_user()
    error = await failure("restore_groups", lab.context(), dn=dn, groups=[f"cn=none,{lab.base}"])
    assert not error.retryable
    assert "no group" in str(error)


# -- create_account ----------------------------------------------------------------------------


async def test_create_account_makes_a_usable_account_once(lab: Lab) -> None:
    login = lab.unique("new")
    group = lab.add_group()
    inputs = {"username": login, "given_name": "Ada", "surname": "Lovelace", "groups": [group]}
    ctx = lab.context("hr-42/create")
    made = await call("create_account", ctx, **inputs)
    assert (made.created, made.changed, made.disabled, made.name) == (True, True, False, login)
    assert made.dn.lower().endswith(lab.people.lower())
    assert made.dn.lower() in lab.members(group)
    user = await call("get_user", lab.context(), username=login)
    assert user.display_name == "Ada Lovelace"
    assert not user.disabled
    again = await call("create_account", ctx, **inputs)
    assert (again.created, again.changed, again.groups_added) == (False, False, [])
    # Its compensation: the account is disabled, not deleted.
    assert (await call("disable_account", ctx, dn=made.dn)).changed


async def test_create_account_can_leave_the_account_disabled(lab: Lab) -> None:
    login = lab.unique("off")
    made = await call(
        "create_account", lab.context(), username=login, given_name="A", surname="B", enabled=False
    )
    assert made.disabled
    assert (await call("get_user", lab.context(), username=login)).disabled


async def test_a_username_taken_elsewhere_is_not_created_again(lab: Lab) -> None:
    login = lab.unique("dup")
    lab.add_user(login, container=lab.services)
    error = await failure(
        "create_account", lab.context(), username=login, given_name="A", surname="B"
    )
    assert not error.retryable
    assert "is taken by" in str(error)


# -- the directory's failures ------------------------------------------------------------------


ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("get_user", {"username": "someone"}),
    ("disable_account", {"dn": "cn=someone"}),
    ("enable_account", {"dn": "cn=someone"}),
    ("reset_password", {"dn": "cn=someone"}),
    ("remove_from_groups", {"dn": "cn=someone"}),
    ("restore_groups", {"dn": "cn=someone", "groups": []}),
    ("create_account", {"username": "someone", "given_name": "A", "surname": "B"}),
]


@pytest.mark.parametrize(("action", "inputs"), ACTIONS, ids=[a for a, _ in ACTIONS])
async def test_a_wrong_bind_password_is_a_final_failure(
    lab: Lab, action: str, inputs: dict[str, Any]
) -> None:
    wrong = "not-the-password-9"
    error = await failure(action, lab.context(password=wrong), **inputs)
    assert not error.retryable
    assert "refused" in str(error)
    assert "invalidCredentials" in str(error)
    assert wrong not in str(error)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for sock in held:
        sock.close()
    listener.close()


@pytest.mark.parametrize(("action", "inputs"), ACTIONS, ids=[a for a, _ in ACTIONS])
async def test_an_unreachable_directory_is_a_retryable_failure(
    openldap_lab: Lab, closed_port: int, action: str, inputs: dict[str, Any]
) -> None:
    settings = dict(openldap_lab.settings, url=f"ldap://127.0.0.1:{closed_port}")
    error = await failure(action, Lab("openldap", settings).context(), **inputs)
    assert error.retryable
    assert "unreachable" in str(error)


@pytest.mark.parametrize("url", ["ldap://127.0.0.1:{port}", "ldaps://127.0.0.1:{port}"])
async def test_a_directory_that_does_not_answer_is_a_retryable_failure(
    openldap_lab: Lab, silent_port: int, url: str
) -> None:
    settings = dict(
        openldap_lab.settings,
        url=url.format(port=silent_port),
        operation_timeout=1,
        connect_timeout=0.5,
    )
    error = await failure("get_user", Lab("openldap", settings).context(), username="x")
    assert error.retryable


async def test_a_certificate_from_an_unknown_authority_or_for_another_name_is_refused(
    ad_lab: Lab,
) -> None:
    settings = dict(ad_lab.settings)
    settings.pop("tls_ca_file")
    error = await failure("get_user", Lab("ad", settings).context(), username="x")
    assert not error.retryable
    assert "TLS certificate" in str(error)
    settings = dict(ad_lab.settings, tls_server_name="evil.example.test")
    error = await failure("get_user", Lab("ad", settings).context(), username="x")
    assert not error.retryable
    assert "not issued to 'evil.example.test'" in str(error)


async def test_wrong_settings_are_a_final_failure_naming_them(openldap_lab: Lab) -> None:
    settings = dict(openldap_lab.settings, flavour="novell", urll="x")
    error = await failure("get_user", Lab("openldap", settings).context(), username="x")
    assert not error.retryable
    assert "flavour" in str(error)
    assert "urll" in str(error)


async def test_a_missing_bind_password_names_the_secret(openldap_lab: Lab) -> None:
    from soar.connectors import SecretMissing

    ctx = ActionContext("k", settings=openldap_lab.settings)
    with pytest.raises(SecretMissing, match="bind_password"):
        await call("get_user", ctx, username="x")


async def test_a_step_timeout_cancels_at_once_and_the_loop_never_waits(
    openldap_lab: Lab, silent_port: int
) -> None:
    settings = dict(openldap_lab.settings, url=f"ldap://127.0.0.1:{silent_port}")
    settings |= {"operation_timeout": 2, "connect_timeout": 2}
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            call("disable_account", Lab("openldap", settings).context(), dn="cn=x"), 0.3
        )
    elapsed = time.monotonic() - started
    ticker.cancel()
    assert elapsed < 1.0
    assert ticks >= 10  # the loop went on while the directory said nothing
