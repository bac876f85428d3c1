"""The ldap connector's pieces that need no server: DN comparison and escaping, settings,
random passwords, the refusal to send an AD password in the clear, the declared metadata."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
from soar_ldap import ldap
from soar_ldap._directory import Directory, new_password
from soar_ldap._dn import is_within, same_dn
from soar_ldap._settings import OperationRefused, SettingsInvalid, settings_from

from soar.connectors import Registry, TargetKind
from soar.connectors.core import core
from soar.connectors.testing import yaml_examples
from soar.playbook.validate import validate_text

AD: dict[str, Any] = {
    "url": "ldap://dc1.example.test",
    "bind_dn": "CN=soar,CN=Users,DC=example,DC=test",
    "base_dn": "DC=example,DC=test",
    "flavour": "ad",
}
OPENLDAP: dict[str, Any] = {
    "url": "ldap://127.0.0.1:389",
    "bind_dn": "cn=admin,dc=example,dc=org",
    "base_dn": "dc=example,dc=org",
    "flavour": "openldap",
    "users_dn": "ou=people,dc=example,dc=org",
}


@pytest.mark.parametrize(
    ("dn", "base", "inside"),
    [
        ("uid=a,ou=people,dc=example,dc=org", "dc=example,dc=org", True),
        ("UID=a,OU=People,DC=Example,DC=org", "dc=example,dc=org", True),
        ("dc=example,dc=org", "dc=example,dc=org", True),
        ("uid=a,dc=example,dc=net", "dc=example,dc=org", False),
        ("uid=a,dc=org", "dc=example,dc=org", False),
        (r"uid=x\,dc\=example\,dc\=org,dc=evil,dc=net", "dc=example,dc=org", False),
        (r"uid=a\2cb,dc=example,dc=org", "dc=example,dc=org", True),
    ],
    ids=["under", "case", "itself", "other-tree", "shorter", "escaped-suffix", "hex-escape"],
)
def test_a_dn_is_within_a_base_component_by_component(dn: str, base: str, inside: bool) -> None:
    assert is_within(dn, base) is inside


def test_dns_compare_ignoring_case_and_escaping_style() -> None:
    assert same_dn(r"CN=a\2cb,DC=x", r"cn=A\,B,dc=X")
    assert not same_dn("cn=a,dc=x", "cn=a,dc=y")


@pytest.mark.parametrize(
    ("username", "rdn"),
    [
        ("x,ou=admins", r"uid=x\,ou\=admins"),
        ("*)(uid=*))(|(uid=*", r"uid=*)(uid\=*))(|(uid\=*"),
        ("a+b", r"uid=a\+b"),
        ('say "hi"', r"uid=say \"hi\""),
        ("back\\slash", r"uid=back\\slash"),
        ("#hash", r"uid=\#hash"),
        (" lead", r"uid=\ lead"),
        ("trail ", r"uid=trail\ "),
    ],
    ids=["dn-injection", "filter-injection", "plus", "quote", "backslash", "hash", "lead", "trail"],
)
def test_a_new_accounts_rdn_is_escaped(username: str, rdn: str) -> None:
    directory = Directory(settings_from(OPENLDAP), connection=None)
    dn = directory.new_dn(username)
    assert dn == f"{rdn},ou=people,dc=example,dc=org"
    assert is_within(dn, "ou=people,dc=example,dc=org")
    assert len(_rdns(dn)) == 4  # one RDN, then the container's three


def _rdns(dn: str) -> list[str]:
    from ldap3.utils.dn import parse_dn

    return [attr for attr, _, _ in parse_dn(dn)]


def test_settings_errors_name_every_wrong_setting() -> None:
    with pytest.raises(SettingsInvalid) as caught:
        settings_from({"url": "http://x", "flavour": "novell", "base_dn": "not a dn"})
    text = str(caught.value)
    for name in ("url", "flavour", "base_dn", "bind_dn"):
        assert name in text


def test_an_unreadable_ca_file_is_a_settings_error() -> None:
    from soar_ldap._wire import tls_of

    settings = settings_from(dict(AD, url="ldaps://dc1", tls_ca_file="/nonexistent/ca.pem"))
    with pytest.raises(SettingsInvalid, match="tls_ca_file"):
        tls_of(settings)


async def test_active_directory_passwords_are_never_sent_in_the_clear() -> None:
    directory = Directory(settings_from(AD), connection=None)
    with pytest.raises(OperationRefused, match="TLS"):
        await directory.set_password("CN=a,DC=example,DC=test", "x", must_change=False)


def test_random_passwords_meet_active_directory_complexity() -> None:
    seen = {new_password() for _ in range(50)}
    assert len(seen) == 50
    for password in seen:
        assert len(password) == 24
        assert any(c in string.ascii_lowercase for c in password)
        assert any(c in string.ascii_uppercase for c in password)
        assert any(c in string.digits for c in password)
        assert any(c in "-_.!#%+=" for c in password)


def test_every_write_declares_idempotency_compensation_and_its_target() -> None:
    specs = ldap.actions
    assert specs["get_user"].cache_ttl is not None
    undo = {name: spec.compensate for name, spec in specs.items()}
    assert undo == {
        "get_user": None,
        "disable_account": "ldap.enable_account",
        "enable_account": "ldap.disable_account",
        "reset_password": None,
        "remove_from_groups": "ldap.restore_groups",
        "restore_groups": "ldap.remove_from_groups",
        "create_account": "ldap.disable_account",
    }
    for spec in specs.values():
        assert spec.idempotent
        assert spec.secrets == ("bind_password",)
        assert spec.target is TargetKind.USER
        if spec.name != "get_user":
            assert spec.cache_ttl is None


@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "tab\there"])
def test_names_with_control_characters_are_refused_before_any_call(bad: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        ldap.actions["get_user"].input_model.model_validate({"username": bad})


DOC = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "ldap.md"


@pytest.mark.parametrize("block", yaml_examples(DOC))
def test_the_guides_playbooks_validate_against_the_real_actions(block: str) -> None:
    registry = Registry.of([core, ldap])
    result = validate_text(block, file="docs/connectors/ldap.md", registry=registry)
    assert [str(d) for d in result.diagnostics] == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"users_dn": "ou=people,dc=elsewhere,dc=net"}, "users_dn"),
        ({"service_account_bases": ["not a dn"]}, "service_account_bases"),
        ({"url": "ldaps://host/dc=example"}, "url"),
        ({"operation_timeout": 0.5}, "operation_timeout"),
    ],
    ids=["users-outside-base", "bad-service-base", "url-with-path", "fractional-timeout"],
)
def test_inconsistent_settings_are_refused(change: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsInvalid, match=named):
        settings_from(OPENLDAP | change)


def test_active_directory_may_bind_as_a_principal_name() -> None:
    assert settings_from(AD | {"bind_dn": "soar@example.test"}).bind_dn == "soar@example.test"
