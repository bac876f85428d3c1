"""Hostile names against real directories: a name is matched as itself in filters (no
wildcards, no injected clauses) and stays one RDN value in DNs (no injected components)."""

from __future__ import annotations

from typing import Any

import pytest
from ldap3.utils.dn import parse_dn
from ldap_lab import Lab
from soar_ldap import ldap
from soar_ldap._dn import same_dn

from soar.connectors import ActionContext, ActionFailed

FILTER_INJECTIONS = ["*", "*)(uid=*))(|(uid=*", "*)(sAMAccountName=*", "a*", "\\2a", "(|(uid=*))"]
HOSTILE_RDNS = [
    pytest.param("x,ou=admins", id="dn-injection"),
    pytest.param("*)(uid=*))(|(uid=*", id="filter-injection"),
    pytest.param("a+cn=b", id="multi-valued-rdn"),
    pytest.param('say "hi"', id="quotes"),
    pytest.param("back\\slash", id="backslash"),
    pytest.param("#hash", id="leading-hash"),
    pytest.param(" lead", id="leading-space"),
    pytest.param("semi;colon<>", id="semicolon-angles"),
    pytest.param("Müller-Łukasz", id="non-ascii"),
]


async def call(action: str, ctx: ActionContext, **inputs: Any) -> Any:
    spec = ldap.actions[action]
    return await spec.fn(ctx, spec.input_model.model_validate(inputs))


def parent_of(dn: str) -> str:
    """Everything after the first RDN, split where a DN parser splits it."""
    parts = parse_dn(dn, escape=False)
    return ",".join(f"{attr}={value}" for attr, value, _ in parts[1:])


@pytest.mark.parametrize("name", FILTER_INJECTIONS)
async def test_a_filter_injection_matches_no_one(lab: Lab, name: str) -> None:
    lab.add_user()
    lab.add_user()
    with pytest.raises(ActionFailed) as caught:
        await call("get_user", lab.context(), username=name)
    assert not caught.value.retryable
    assert f"no user named {name!r}" in str(caught.value)  # not "more than one"


@pytest.mark.parametrize("name", HOSTILE_RDNS)
async def test_openldap_accounts_with_hostile_names_are_found_and_changed_as_themselves(
    openldap_lab: Lab, name: str
) -> None:
    lab = openldap_lab
    bystander = lab.add_user()
    made = await call("create_account", lab.context(), username=name, given_name="H", surname="N")
    assert made.created
    assert made.name == name
    assert lab.exists(made.dn)
    assert lab.attributes_login(made.dn) == name
    assert same_dn(parent_of(made.dn), lab.people)
    found = await call("get_user", lab.context(), username=name)
    assert found.dn == made.dn
    assert (await call("disable_account", lab.context(), dn=found.dn)).changed
    assert (await call("get_user", lab.context(), username=name)).disabled
    assert not (
        await call("get_user", lab.context(), username=lab.attributes_login(bystander))
    ).disabled
    again = await call("create_account", lab.context(), username=name, given_name="H", surname="N")
    assert (again.created, again.dn) == (False, made.dn)


async def test_a_dn_injection_does_not_reach_the_other_subtree(openldap_lab: Lab) -> None:
    lab = openldap_lab
    admin = lab.add_user("x", container=f"ou=admins,{lab.base}")
    made = await call(
        "create_account", lab.context(), username="x,ou=admins", given_name="X", surname="Y"
    )
    assert same_dn(made.dn, rf"uid=x\,ou\=admins,{lab.people}")
    assert same_dn(parent_of(made.dn), lab.people)
    assert made.dn.lower() != admin.lower()
    assert (await call("get_user", lab.context(), username="x,ou=admins")).dn == made.dn
    assert (await call("get_user", lab.context(), username="x")).dn.lower() == admin.lower()
    await call("disable_account", lab.context(), dn=made.dn)
    assert lab.can_bind(admin)


@pytest.mark.parametrize("name", HOSTILE_RDNS)
async def test_active_directory_accounts_with_hostile_cns_are_changed_by_their_dn(
    ad_lab: Lab, name: str
) -> None:
    lab = ad_lab
    login = lab.unique()
    dn = lab.add_user(login, rdn=name)
    found = await call("get_user", lab.context(), username=login)
    assert found.dn.lower() == dn.lower() or lab.exists(found.dn)
    assert (await call("disable_account", lab.context(), dn=found.dn)).changed
    assert not lab.can_bind(found.dn)
    assert (await call("enable_account", lab.context(), dn=found.dn)).changed
    assert lab.can_bind(found.dn)


@pytest.mark.parametrize("name", ["x,ou=admins", "*)(uid=*", "a+b", 'q"'])
async def test_active_directory_refuses_such_login_names_and_says_why(
    ad_lab: Lab, name: str
) -> None:
    with pytest.raises(ActionFailed) as caught:
        await call("create_account", ad_lab.context(), username=name, given_name="A", surname="B")
    assert not caught.value.retryable
    assert "sAMAccountName contains invalid" in str(caught.value)
    with pytest.raises(ActionFailed, match="no user named"):
        await call("get_user", ad_lab.context(), username=name)
