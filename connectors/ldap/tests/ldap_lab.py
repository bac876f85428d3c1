"""What the ldap tests do to a directory behind the connector's back: seed users and groups as
the administrator, try binds as a user, read raw attributes. Same surface for both servers."""

from __future__ import annotations

import itertools
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from ldap_test_servers import BIND_PASSWORD
from soar_ldap._settings import settings_from
from soar_ldap._wire import tls_of

from soar.connectors import ActionContext, Secrets

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # pyasn1's, at ldap3's import
    import ldap3
    from ldap3.utils.dn import escape_rdn

USER_PASSWORD = "Us3r-Passw0rd!x"  # noqa: S105 - a test user's password
_serial = itertools.count(1)


@dataclass
class Lab:
    """One directory under test, with the connector settings that reach it."""

    flavour: str
    settings: dict[str, Any]
    ca_file: str | None = None
    server_name: str | None = None
    created: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return str(self.settings["base_dn"])

    @property
    def people(self) -> str:
        return str(self.settings["users_dn"])

    @property
    def services(self) -> str:
        return str(self.settings["service_account_bases"][0])

    def context(self, key: str | None = None, password: str = BIND_PASSWORD) -> ActionContext:
        return ActionContext(
            key or f"test/{uuid.uuid4().hex}",
            settings=self.settings,
            secrets=Secrets({"bind_password": password}),
        )

    def unique(self, stem: str = "u") -> str:
        """A fresh login name (AD's sAMAccountName holds 20 characters at most)."""
        return f"{stem}{next(_serial)}{uuid.uuid4().hex[:6]}"

    # -- raw access ----------------------------------------------------------------------------

    def server(self) -> ldap3.Server:
        # The connector's TLS set-up: ldap3's own host name check is deprecated (a warning).
        tls = tls_of(settings_from(self.settings))
        return ldap3.Server(self.settings["url"], tls=tls, connect_timeout=5)

    def admin(self) -> ldap3.Connection:
        return ldap3.Connection(
            self.server(),
            self.settings["bind_dn"],
            BIND_PASSWORD,
            auto_bind=True,
            receive_timeout=10,
            raise_exceptions=True,
        )

    def can_bind(self, dn: str, password: str = USER_PASSWORD) -> bool:
        conn = ldap3.Connection(self.server(), dn, password, receive_timeout=10)
        try:
            return bool(conn.bind())
        finally:
            conn.unbind()

    def attributes(self, dn: str, *names: str) -> dict[str, list[str]]:
        conn = self.admin()
        try:
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(names))
            raw = conn.response[0]["raw_attributes"]
            return {k: [v.decode() for v in vs] for k, vs in raw.items()}
        finally:
            conn.unbind()

    def attributes_login(self, dn: str) -> str:
        name = "sAMAccountName" if self.flavour == "ad" else "uid"
        return self.attributes(dn, name)[name][0]

    def modified(self, dn: str) -> str:
        name = "whenChanged" if self.flavour == "ad" else "modifyTimestamp"
        return self.attributes(dn, name)[name][0]

    def members(self, group: str) -> set[str]:
        return {m.lower() for m in self.attributes(group, "member").get("member", [])}

    def exists(self, dn: str) -> bool:
        conn = self.admin()
        try:
            return bool(conn.search(dn, "(objectClass=*)", ldap3.BASE))
        finally:
            conn.unbind()

    # -- seeding -------------------------------------------------------------------------------

    def add_user(
        self, login: str | None = None, *, container: str | None = None, rdn: str | None = None
    ) -> str:
        """A user that can bind with USER_PASSWORD; returns its DN. `rdn` is the value of its
        RDN (CN on AD, uid on OpenLDAP) when it is not the login name."""
        login = login or self.unique()
        container = container or self.people
        rdn = rdn or login
        conn = self.admin()
        try:
            if self.flavour == "ad":
                dn = f"CN={escape_rdn(rdn)},{container}"
                conn.add(
                    dn,
                    ["top", "person", "organizationalPerson", "user"],
                    {
                        "sAMAccountName": login,
                        "userPrincipalName": f"{login}@example.test",
                        "givenName": "Test",
                        "sn": login,
                        "displayName": f"Test {login}",
                    },
                )
                conn.extend.microsoft.modify_password(dn, USER_PASSWORD)
                conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, ["512"])]})
            else:
                # A distinct RDN value goes in cn (the RDN value must be one of the entry's).
                name = rdn if rdn != login else f"Test {login}"
                attribute = "uid" if rdn == login else "cn"
                dn = f"{attribute}={escape_rdn(rdn)},{container}"
                conn.add(
                    dn,
                    ["inetOrgPerson"],
                    {"uid": login, "cn": name, "sn": login, "mail": f"{login}@x.org"},
                )
                conn.extend.standard.modify_password(dn, new_password=USER_PASSWORD)
        finally:
            conn.unbind()
        self.created.append(dn)
        return dn

    def add_group(self, name: str | None = None, members: list[str] = ()) -> str:  # type: ignore[assignment]
        name = name or self.unique("g")
        conn = self.admin()
        try:
            if self.flavour == "ad":
                dn = f"CN={escape_rdn(name)},{self.people}"
                attributes: dict[str, Any] = {"sAMAccountName": name, "groupType": -2147483646}
                if members:
                    attributes["member"] = list(members)
                conn.add(dn, ["top", "group"], attributes)
            else:
                dn = f"cn={escape_rdn(name)},ou=groups,{self.base}"
                # groupOfNames needs a member: the administrator keeps each group non-empty.
                placeholder = self.settings["bind_dn"]
                conn.add(dn, ["groupOfNames"], {"cn": name, "member": [placeholder, *members]})
        finally:
            conn.unbind()
        return dn

    def lock_by_failures(self, dn: str) -> None:
        for _ in range(3):
            self.can_bind(dn, "wrong-password")
