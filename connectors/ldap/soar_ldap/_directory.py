"""The wire client of the ldap connector: one ldap3 connection per action call, its blocking
calls run in a worker thread, and the two dialects (Active Directory, OpenLDAP with ppolicy)
behind one small interface. Filters and DNs built from names are always escaped here.

The bind password is handed to ldap3 for the bind only and dropped from the connection right
after it (ldap3's `Connection.__repr__` prints it), and no message built here contains it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
import string
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

with warnings.catch_warnings():
    # ldap3 2.9.1, its last release, imports names that pyasn1 0.6.1 and later deprecate.
    warnings.filterwarnings("ignore", "tagMap is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "typeMap is deprecated", DeprecationWarning)
    import ldap3  # type: ignore[import-untyped]
    from ldap3.core import exceptions as ldap_errors  # type: ignore[import-untyped]
    from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped]
    from ldap3.utils.dn import escape_rdn, parse_dn  # type: ignore[import-untyped]

Flavour = Literal["ad", "openldap"]

# Active Directory userAccountControl bits (MS-ADTS 2.2.16).
ACCOUNTDISABLE = 0x2
PASSWD_NOTREQD = 0x20
NORMAL_ACCOUNT = 0x200
# OpenLDAP ppolicy: this pwdAccountLockedTime locks an account until an administrator unlocks it.
LOCKED_FOR_GOOD = "000001010000Z"

# LDAP result codes (RFC 4511 4.1.9) the client reacts to.
SUCCESS = 0
TIME_LIMIT_EXCEEDED = 3
NO_SUCH_ATTRIBUTE = 16
ATTRIBUTE_OR_VALUE_EXISTS = 20
NO_SUCH_OBJECT = 32
INVALID_DN_SYNTAX = 34
INVALID_CREDENTIALS = 49
BUSY = 51
UNAVAILABLE = 52
UNWILLING_TO_PERFORM = 53
ENTRY_ALREADY_EXISTS = 68
_RETRYABLE_RESULTS = {TIME_LIMIT_EXCEEDED, BUSY, UNAVAILABLE}

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


class DirectoryError(Exception):
    """A directory operation failed; `retryable` says whether another attempt may succeed.
    Messages name DNs and LDAP result codes, never a password."""

    retryable = False


class DirectoryUnavailable(DirectoryError):
    """The directory could not be reached, or did not answer in time, or is busy."""

    retryable = True


class SettingsInvalid(DirectoryError):
    """The connector's settings are missing or wrong."""


class BindRefused(DirectoryError):
    """The directory refused the bind: wrong DN or password, or the account cannot bind."""


class NoSuchEntry(DirectoryError):
    """No such user, DN or group (or it is outside the configured base)."""


class OperationRefused(DirectoryError):
    """The directory refused an operation: rights, schema, password policy, ..."""


class DirectorySettings(BaseModel):
    """The `[connectors.ldap]` settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^ldaps?://[^/\s]+/?$")
    bind_dn: str = Field(min_length=1)
    base_dn: str = Field(min_length=1)
    flavour: Flavour
    tls_ca_file: str | None = None
    tls_server_name: str | None = None
    start_tls: bool = False
    users_dn: str | None = None
    login_attribute: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9-]*$")
    service_account_bases: list[str] = Field(default_factory=list)
    service_account_groups: list[str] = Field(default_factory=list)
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    operation_timeout: int = Field(default=15, ge=1, le=600)

    @field_validator("base_dn", "bind_dn", "users_dn")
    @classmethod
    def _a_dn(cls, value: str | None) -> str | None:
        if value is not None and "@" not in value:
            _components(value)  # raises ValueError on a malformed DN
        return value

    @property
    def encrypted(self) -> bool:
        return self.url.startswith("ldaps://") or self.start_tls

    @property
    def login(self) -> str:
        if self.login_attribute:
            return self.login_attribute
        return "sAMAccountName" if self.flavour == "ad" else "uid"

    @property
    def account_container(self) -> str:
        return self.users_dn or self.base_dn


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


def settings_from(raw: Mapping[str, JsonValue]) -> DirectorySettings:
    """Parse the connector settings.

    Raises:
        SettingsInvalid: naming each wrong or missing setting.
    """
    try:
        return DirectorySettings.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsInvalid(f"ldap settings: {problems}") from None


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
        opening = loop.run_in_executor(None, _connect, settings, password)
        try:
            connection = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The thread goes on until its own timeouts: close what it opens, if anything.
            opening.add_done_callback(_close_opened)
            raise
        directory = cls(settings, connection)
        try:
            yield directory
        except BaseException:
            # Cancelled (the step's timeout) or failed: a worker thread may still be using the
            # connection, so it is closed in the background instead of being waited for.
            loop.run_in_executor(None, _close, connection)
            raise
        await asyncio.to_thread(_close, connection)

    async def _run(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(_guarded, fn, self._conn, *args)

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
        found = await self._run(_search, s.base_dn, query, "sub", self._attributes(), 2)
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
        found = await self._run(_read_entry, dn, self._attributes())
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
        found = await self._run(_search, self.settings.base_dn, query, "sub", ["cn"], 0)
        return [dn for dn, _ in found]

    async def group_exists(self, dn: str) -> bool:
        self.check_within_base(dn, "group")
        found = await self._run(_read_entry, dn, ["objectClass"])
        return found is not None

    def is_service_account(self, account: Account, groups: Iterable[str]) -> bool:
        """Under a configured service-account base, in a configured group, or (AD) with a
        servicePrincipalName."""
        s = self.settings
        if any(is_within(account.dn, base) for base in s.service_account_bases):
            return True
        wanted = {_normal(g) for g in s.service_account_groups}
        if wanted & {_normal(g) for g in groups}:
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
        await self._run(_modify, account.dn, change)

    async def enable(self, account: Account) -> None:
        if self.settings.flavour == "ad":
            control = (account.control or 0) & ~ACCOUNTDISABLE
            change = {"userAccountControl": [("replace", [str(control)])]}
        else:
            change = {"pwdAccountLockedTime": [("delete", [])]}
        await self._run(_modify, account.dn, change, {NO_SUCH_ATTRIBUTE})

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
            await self._run(_modify, dn, {"unicodePwd": [("replace", [quoted])]})
            if must_change:
                await self._run(_modify, dn, {"pwdLastSet": [("replace", ["0"])]})
        else:
            await self._run(_password_modify, dn, password)
            if must_change:
                await self._run(_modify, dn, {"pwdReset": [("replace", ["TRUE"])]})

    async def remove_member(self, group: str, account: Account) -> bool:
        """Take the account out of one group; False when it was not in it."""
        change = {"member": [("delete", [account.dn])]}
        return bool(
            await self._run(_modify, group, change, {NO_SUCH_ATTRIBUTE, UNWILLING_TO_PERFORM})
        )

    async def add_member(self, group: str, account: Account) -> bool:
        """Put the account in one group; False when it was already in it (AD says 68)."""
        change = {"member": [("add", [account.dn])]}
        return bool(
            await self._run(
                _modify, group, change, {ATTRIBUTE_OR_VALUE_EXISTS, ENTRY_ALREADY_EXISTS}
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
        await self._run(_add, dn, classes, attributes)

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
                _modify, account.dn, {"userAccountControl": [("replace", [str(control)])]}
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


# -- DNs ---------------------------------------------------------------------------------------

_HEX_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})|\\(.)")


def _unescape(value: str) -> str:
    raw = bytearray()
    position = 0
    for match in _HEX_ESCAPE.finditer(value):
        raw += value[position : match.start()].encode()
        raw += bytes([int(match[1], 16)]) if match[1] else match[2].encode()
        position = match.end()
    raw += value[position:].encode()
    return raw.decode("utf-8", errors="replace")


def _components(dn: str) -> list[tuple[str, str]]:
    """(attribute, value) pairs, lower-cased and unescaped, for comparing DNs.

    Raises:
        ValueError: not a DN.
    """
    try:
        parsed = parse_dn(dn, escape=False)
    except (ldap_errors.LDAPInvalidDnError, IndexError, ValueError) as exc:
        raise ValueError(f"{dn!r} is not a valid DN") from exc
    return [(attr.strip().lower(), _unescape(value).lower()) for attr, value, _ in parsed]


def _normal(dn: str) -> tuple[tuple[str, str], ...] | str:
    try:
        return tuple(_components(dn))
    except ValueError:
        return dn.lower()


def is_within(dn: str, base: str) -> bool:
    """Whether `dn` is `base` or under it (compared attribute by attribute, case-insensitive).

    Raises:
        ValueError: either is not a valid DN.
    """
    inner, outer = _components(dn), _components(base)
    return len(inner) >= len(outer) and inner[len(inner) - len(outer) :] == outer


def same_dn(a: str, b: str) -> bool:
    return _normal(a) == _normal(b)


def domain_of(base_dn: str) -> str:
    """`example.test` from `DC=example,DC=test`."""
    return ".".join(value for attr, value in _components(base_dn) if attr == "dc")


# -- blocking calls, run in a worker thread -------------------------------------------------------


class _Tls(ldap3.Tls):  # type: ignore[misc]
    """TLS through the standard library's own certificate and host name checks (ldap3 turns
    them off and uses `ssl.match_hostname`, deprecated since Python 3.7 and gone in 3.12)."""

    def __init__(self, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context = context
        self._server_name = server_name

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._server_name,
        )


def _tls(settings: DirectorySettings) -> _Tls | None:
    if not settings.encrypted:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsInvalid(f"ldap settings: tls_ca_file: cannot load it ({exc})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    host = urlsplit(settings.url).hostname or ""
    return _Tls(context, settings.tls_server_name or host)


def _connect(settings: DirectorySettings, password: str) -> Any:
    server = ldap3.Server(
        settings.url,
        tls=_tls(settings),
        connect_timeout=settings.connect_timeout,
        get_info=ldap3.NONE,
    )
    connection = ldap3.Connection(
        server,
        user=settings.bind_dn,
        authentication=ldap3.SIMPLE,
        client_strategy=ldap3.SYNC,
        raise_exceptions=False,
        receive_timeout=settings.operation_timeout,
        auto_referrals=False,
        read_only=False,
        return_empty_attributes=False,
    )
    try:
        connection.open()
        if settings.start_tls and not connection.start_tls():
            raise DirectoryUnavailable(f"StartTLS refused by {settings.url}")
        connection.password = password
        try:
            bound = connection.bind()
        finally:
            connection.password = None  # its repr would print it
        if not bound:
            result = connection.result or {}
            code = result.get("result")
            if code in _RETRYABLE_RESULTS:
                raise DirectoryUnavailable(f"{settings.url} is not accepting binds ({code})")
            raise BindRefused(
                f"bind as {settings.bind_dn!r} refused by {settings.url}: "
                f"{result.get('description', 'unknown')} ({code})"
            )
        return connection
    except ldap_errors.LDAPStartTLSError as exc:
        _close(connection)
        raise DirectoryUnavailable(f"StartTLS with {settings.url} failed") from exc
    except ldap_errors.LDAPCommunicationError as exc:
        _close(connection)
        raise DirectoryUnavailable(
            f"directory {settings.url} unreachable ({type(exc).__name__})"
        ) from exc
    except DirectoryError:
        _close(connection)
        raise
    except ldap_errors.LDAPException as exc:
        _close(connection)
        raise DirectoryUnavailable(f"could not open {settings.url} ({type(exc).__name__})") from exc


def _close_opened(opening: asyncio.Future[Any]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _close(opening.result())


def _close(connection: Any) -> None:
    with suppress(Exception):
        connection.unbind()
    # ldap3 keeps the socket of a failed open (refused, TLS refused) without closing it.
    sock = getattr(connection, "socket", None)
    if sock is not None:
        with suppress(OSError):
            sock.close()


def _guarded(fn: Any, connection: Any, *args: Any) -> Any:
    """Call `fn(connection, *args)`, turning ldap3's exceptions into DirectoryErrors."""
    try:
        return fn(connection, *args)
    except ldap_errors.LDAPCommunicationError as exc:
        raise DirectoryUnavailable(f"lost the directory connection ({type(exc).__name__})") from exc
    except ldap_errors.LDAPInvalidDnError as exc:
        raise NoSuchEntry("not a valid DN") from exc
    except ldap_errors.LDAPException as exc:
        raise OperationRefused(f"LDAP client error ({type(exc).__name__})") from exc


def _fail(connection: Any, what: str, dn: str) -> DirectoryError:
    result = connection.result or {}
    code = result.get("result")
    description = result.get("description", "unknown")
    message = str(result.get("message") or "").strip()
    detail = f"{description} ({code})" + (f": {message}" if message else "")
    text = f"{what} {dn!r} failed: {detail}"
    if code in _RETRYABLE_RESULTS:
        return DirectoryUnavailable(text)
    if code in (NO_SUCH_OBJECT, INVALID_DN_SYNTAX):
        return NoSuchEntry(text)
    return OperationRefused(text)


_Found = list[tuple[str, dict[str, list[bytes]]]]
_SCOPES = {"sub": ldap3.SUBTREE, "base": ldap3.BASE}


def _search(
    connection: Any, base: str, query: str, scope: str, attributes: list[str], limit: int
) -> _Found:
    ok = connection.search(
        base,
        query,
        search_scope=_SCOPES[scope],
        attributes=attributes,
        size_limit=limit,
    )
    code = (connection.result or {}).get("result")
    if not ok and code not in (SUCCESS, 4):  # 4 sizeLimitExceeded: we asked for `limit`
        if code == NO_SUCH_OBJECT:
            return []
        raise _fail(connection, "search under", base)
    return [
        (entry["dn"], {key.lower(): values for key, values in entry["raw_attributes"].items()})
        for entry in connection.response or []
        if entry.get("type") == "searchResEntry"
    ]


def _read_entry(
    connection: Any, dn: str, attributes: list[str]
) -> tuple[str, dict[str, list[bytes]]] | None:
    found = _search(connection, dn, "(objectClass=*)", "base", attributes, 1)
    return found[0] if found else None


def _modify(
    connection: Any,
    dn: str,
    changes: Mapping[str, Sequence[tuple[str, list[Any]]]],
    unchanged: Iterable[int] = (),
) -> bool:
    """Apply changes; True when applied, False when the result is one of `unchanged`."""
    operations = {"replace": ldap3.MODIFY_REPLACE, "add": ldap3.MODIFY_ADD}
    operations["delete"] = ldap3.MODIFY_DELETE
    request = {
        attribute: [(operations[op], values) for op, values in ops]
        for attribute, ops in changes.items()
    }
    if connection.modify(dn, request):
        return True
    if (connection.result or {}).get("result") in set(unchanged):
        return False
    raise _fail(connection, f"modify ({', '.join(changes)}) of", dn)


def _add(connection: Any, dn: str, classes: list[str], attributes: dict[str, object]) -> None:
    if not connection.add(dn, classes, attributes):
        raise _fail(connection, "add of", dn)


def _password_modify(connection: Any, dn: str, password: str) -> None:
    ok = connection.extend.standard.modify_password(user=dn, new_password=password)
    if not ok:
        raise _fail(connection, "password modify of", dn)
