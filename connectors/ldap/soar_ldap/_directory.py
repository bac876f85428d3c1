"""The directory as the actions see it: one bound ldap3 connection per action call, its
blocking calls run in a worker thread, and the two dialects (Active Directory, OpenLDAP with
ppolicy) behind one small interface. Filters and DNs built from names are always escaped here.

The bind password is handed to ldap3 for the bind only and dropped from the connection right
after it (ldap3's `Connection.__repr__` prints it), and no message built here contains it.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue

from soar_ldap._dn import domain_of, is_within, normal
from soar_ldap._ldap3 import escape_filter_chars, escape_rdn
from soar_ldap._settings import (
    DirectorySettings,
    NoSuchEntry,
    OperationRefused,
    settings_from,
)
from soar_ldap._wire import (
    ATTRIBUTE_OR_VALUE_EXISTS,
    ENTRY_ALREADY_EXISTS,
    NO_SUCH_ATTRIBUTE,
    UNWILLING_TO_PERFORM,
    add,
    close,
    close_opened,
    connect,
    guarded,
    modify,
    password_modify,
    read_entry,
    search,
)

# Active Directory userAccountControl bits (MS-ADTS 2.2.16).
ACCOUNTDISABLE = 0x2
PASSWD_NOTREQD = 0x20
NORMAL_ACCOUNT = 0x200
# OpenLDAP ppolicy: this pwdAccountLockedTime locks an account until an administrator unlocks it.
LOCKED_FOR_GOOD = "000001010000Z"

_ACCOUNT_ATTRIBUTES = {
    "ad": [
        "objectClass",
        "cn",
        "displayName",
        "mail",
        "sAMAccountName",
        "userPrincipalName",
        "userAccountControl",
        "lockoutTime",
        "servicePrincipalName",
        "pwdLastSet",
        "modifyTimestamp",
        "whenChanged",
    ],
    "openldap": [
        "objectClass",
        "cn",
        "displayName",
        "mail",
        "uid",
        "pwdAccountLockedTime",
        "pwdChangedTime",
        "modifyTimestamp",
    ],
}


@dataclass(frozen=True, slots=True)
class Account:
    """One user entry as read: the DN exactly as the directory spells it."""

    dn: str
    login: str
    name: str
    email: str | None
    disabled: bool
    locked: bool
    control: int | None
    """AD userAccountControl; None on OpenLDAP."""
    has_password: bool
    service_principal: bool
    modified: str | None
    """modifyTimestamp (whenChanged on AD) as the directory wrote it."""


@dataclass(frozen=True, slots=True)
class NewAccount:
    """What create_account asks for; `username` is the login name and the RDN value."""

    username: str
    given_name: str
    surname: str
    display_name: str
    email: str | None
    enabled: bool


def new_password(length: int = 24) -> str:
    """A random password that meets Active Directory's complexity rules."""
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_.!#%+=")
    chars = [secrets.choice(group) for group in classes]
    alphabet = "".join(classes)
    chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


class Directory:
    """A bound connection. Open with `async with Directory.open(settings, password)`."""

    def __init__(self, settings: DirectorySettings, connection: Any) -> None:
        self.settings = settings
        self._conn = connection
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Directory({self.settings.url!r}, {self.settings.flavour})"

    @classmethod
    @asynccontextmanager
    async def open(
        cls, raw_settings: Mapping[str, JsonValue], password: str
    ) -> AsyncIterator[Directory]:
        """Connect and bind, yield the directory, unbind at the end.

        Raises:
            SettingsInvalid, DirectoryUnavailable, BindRefused
        """
        settings = settings_from(raw_settings)
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, connect, settings, password)
        try:
            connection = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The thread goes on until its own timeouts: close what it opens, if anything.
            opening.add_done_callback(close_opened)
            raise
        directory = cls(settings, connection)
        try:
            yield directory
        except BaseException:
            # Cancelled (the step's timeout) or failed: a worker thread may still be using the
            # connection, so it is closed in the background instead of being waited for.
            loop.run_in_executor(None, close, connection)
            raise
        await asyncio.to_thread(close, connection)

    async def _run(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(guarded, fn, self._conn, *args)

    # -- reading -------------------------------------------------------------------------------

    async def find_user(self, username: str) -> Account:
        """The one account whose login name is `username` (escaped into the filter).

        Raises:
            NoSuchEntry: no such account, or more than one.
        """
        s = self.settings
        value = escape_filter_chars(username)
        if s.flavour == "ad":
            match = f"(|({s.login}={value})(userPrincipalName={value}))"
            query = f"(&(objectCategory=person)(objectClass=user){match})"
        else:
            query = f"(&(|(objectClass=person)(objectClass=posixAccount))({s.login}={value}))"
        found = await self._run(search, s.base_dn, query, "sub", self._attributes(), 2)
        if not found:
            raise NoSuchEntry(f"no user named {username!r} under {s.base_dn}")
        if len(found) > 1:
            raise NoSuchEntry(f"more than one user named {username!r} under {s.base_dn}")
        return self._account(*found[0])

    async def read(self, dn: str) -> Account:
        """The account at `dn`, which must lie under the base DN.

        Raises:
            NoSuchEntry: no entry there, not an account, or outside the base.
        """
        self.check_within_base(dn, "account")
        found = await self._run(read_entry, dn, self._attributes())
        if found is None:
            raise NoSuchEntry(f"no account {dn!r}")
        if not self._is_account(found[1]):
            raise NoSuchEntry(f"{dn!r} is not a user account")
        return self._account(*found)

    async def find_by_login(self, username: str) -> Account | None:
        try:
            return await self.find_user(username)
        except NoSuchEntry:
            return None

    async def groups_of(self, account: Account) -> list[str]:
        """The DNs of the groups under the base that list the account as a direct member."""
        query = f"(member={escape_filter_chars(account.dn)})"
        found = await self._run(search, self.settings.base_dn, query, "sub", ["cn"], 0)
        return [dn for dn, _ in found]

    async def group_exists(self, dn: str) -> bool:
        self.check_within_base(dn, "group")
        found = await self._run(read_entry, dn, ["objectClass"])
        return found is not None

    def is_service_account(self, account: Account, groups: Iterable[str]) -> bool:
        """Under a configured service-account base, in a configured group, or (AD) with a
        servicePrincipalName."""
        s = self.settings
        if any(is_within(account.dn, base) for base in s.service_account_bases):
            return True
        wanted = {normal(g) for g in s.service_account_groups}
        if wanted & {normal(g) for g in groups}:
            return True
        return s.flavour == "ad" and account.service_principal

    def check_within_base(self, dn: str, what: str) -> None:
        try:
            inside = is_within(dn, self.settings.base_dn)
        except ValueError:
            raise NoSuchEntry(f"{dn!r} is not a valid DN") from None
        if not inside:
            raise NoSuchEntry(f"{what} {dn!r} is outside {self.settings.base_dn}")

    # -- writing -------------------------------------------------------------------------------

    async def disable(self, account: Account) -> None:
        if self.settings.flavour == "ad":
            control = (account.control or 0) | ACCOUNTDISABLE
            change = {"userAccountControl": [("replace", [str(control)])]}
        else:
            change = {"pwdAccountLockedTime": [("replace", [LOCKED_FOR_GOOD])]}
        await self._run(modify, account.dn, change)

    async def enable(self, account: Account) -> None:
        if self.settings.flavour == "ad":
            control = (account.control or 0) & ~ACCOUNTDISABLE
            change = {"userAccountControl": [("replace", [str(control)])]}
        else:
            change = {"pwdAccountLockedTime": [("delete", [])]}
        await self._run(modify, account.dn, change, {NO_SUCH_ATTRIBUTE})

    async def set_password(self, dn: str, password: str, *, must_change: bool) -> None:
        """Set a password as an administrator: AD `unicodePwd` (TLS only), OpenLDAP the
        password modify extended operation. With `must_change` the user must change it at the
        next logon (AD `pwdLastSet=0`, ppolicy `pwdReset`)."""
        if self.settings.flavour == "ad":
            if not self.settings.encrypted:
                raise OperationRefused(
                    "Active Directory takes passwords over TLS only: use ldaps:// or start_tls"
                )
            quoted = f'"{password}"'.encode("utf-16-le")
            await self._run(modify, dn, {"unicodePwd": [("replace", [quoted])]})
            if must_change:
                await self._run(modify, dn, {"pwdLastSet": [("replace", ["0"])]})
        else:
            await self._run(password_modify, dn, password)
            if must_change:
                await self._run(modify, dn, {"pwdReset": [("replace", ["TRUE"])]})

    async def remove_member(self, group: str, account: Account) -> bool:
        """Take the account out of one group; False when it was not in it."""
        change = {"member": [("delete", [account.dn])]}
        return bool(
            await self._run(modify, group, change, {NO_SUCH_ATTRIBUTE, UNWILLING_TO_PERFORM})
        )

    async def add_member(self, group: str, account: Account) -> bool:
        """Put the account in one group; False when it was already in it (AD says 68)."""
        change = {"member": [("add", [account.dn])]}
        return bool(
            await self._run(
                modify, group, change, {ATTRIBUTE_OR_VALUE_EXISTS, ENTRY_ALREADY_EXISTS}
            )
        )

    def new_dn(self, username: str) -> str:
        """The DN create_account gives `username`: its RDN value escaped (RFC 4514)."""
        attribute = "CN" if self.settings.flavour == "ad" else "uid"
        return f"{attribute}={escape_rdn(username)},{self.settings.account_container}"

    async def add_account(self, new: NewAccount, dn: str) -> None:
        """Add the entry (AD: disabled, no password yet; it is finished by `finish_account`)."""
        s = self.settings
        attributes: dict[str, object] = {
            "givenName": new.given_name,
            "sn": new.surname,
            "displayName": new.display_name,
        }
        if new.email:
            attributes["mail"] = new.email
        if s.flavour == "ad":
            classes = ["top", "person", "organizationalPerson", "user"]
            attributes |= {
                "sAMAccountName": new.username,
                "userPrincipalName": f"{new.username}@{domain_of(s.base_dn)}",
                "userAccountControl": str(NORMAL_ACCOUNT | ACCOUNTDISABLE | PASSWD_NOTREQD),
            }
        else:
            classes = ["top", "person", "organizationalPerson", "inetOrgPerson"]
            attributes |= {"uid": new.username, "cn": new.display_name}
        await self._run(add, dn, classes, attributes)

    async def finish_account(self, account: Account, new: NewAccount) -> bool:
        """Give a new account a random password it must change, and the state asked for.
        Idempotent: an account that already has a password is left as it is. Returns whether
        anything changed."""
        if account.has_password:
            return False
        await self.set_password(account.dn, new_password(), must_change=True)
        if self.settings.flavour == "ad":
            control = NORMAL_ACCOUNT | (0 if new.enabled else ACCOUNTDISABLE)
            await self._run(
                modify, account.dn, {"userAccountControl": [("replace", [str(control)])]}
            )
        elif not new.enabled:
            await self.disable(account)
        return True

    # -- helpers -------------------------------------------------------------------------------

    def _attributes(self) -> list[str]:
        attributes = list(_ACCOUNT_ATTRIBUTES[self.settings.flavour])
        if self.settings.login not in attributes:
            attributes.append(self.settings.login)
        if self.settings.flavour == "openldap":
            attributes.append("userPassword")
        return attributes

    def _is_account(self, attributes: Mapping[str, list[bytes]]) -> bool:
        classes = {c.decode().lower() for c in attributes.get("objectclass", [])}
        if self.settings.flavour == "ad":
            return "user" in classes and "computer" not in classes
        return bool(classes & {"person", "posixaccount", "inetorgperson", "account"})

    def _account(self, dn: str, attributes: Mapping[str, list[bytes]]) -> Account:
        def first(name: str) -> str | None:
            values = attributes.get(name.lower())
            return values[0].decode("utf-8", errors="replace") if values else None

        login = first(self.settings.login) or ""
        name = first("displayName") or first("cn") or login
        if self.settings.flavour == "ad":
            control = int(first("userAccountControl") or "0")
            lockout = int(first("lockoutTime") or "0")
            return Account(
                dn=dn,
                login=login,
                name=name,
                email=first("mail"),
                disabled=bool(control & ACCOUNTDISABLE),
                locked=lockout != 0,
                control=control,
                has_password=not control & PASSWD_NOTREQD,
                service_principal=first("servicePrincipalName") is not None,
                modified=first("whenChanged") or first("modifyTimestamp"),
            )
        locked_time = first("pwdAccountLockedTime")
        return Account(
            dn=dn,
            login=login,
            name=name,
            email=first("mail"),
            disabled=locked_time == LOCKED_FOR_GOOD,
            locked=locked_time is not None and locked_time != LOCKED_FOR_GOOD,
            control=None,
            has_password=first("userPassword") is not None or first("pwdChangedTime") is not None,
            service_principal=False,
            modified=first("modifyTimestamp"),
        )
