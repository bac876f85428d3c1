"""Directory accounts over LDAP: Active Directory and OpenLDAP (with the ppolicy overlay).

Every write reads the entry first, so repeating it is harmless and its output says whether it
`changed` anything; each names the action that undoes it. docs/connectors/ldap.md is the guide.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from pydantic import BaseModel, Field, field_validator

from soar.connectors import ActionContext, ActionFailed, Connector, TargetKind
from soar_ldap._directory import Account, Directory, NewAccount, new_password
from soar_ldap._dn import same_dn
from soar_ldap._settings import DirectoryError, NoSuchEntry

__all__ = [
    "AccountCreated",
    "AccountRef",
    "AccountState",
    "GroupChange",
    "GroupsAdded",
    "GroupsRemoved",
    "GroupsToRestore",
    "NewAccountRequest",
    "PasswordReset",
    "PasswordResetRequest",
    "User",
    "UserQuery",
    "ldap",
]

ldap = Connector("ldap", doc="Directory accounts over LDAP: Active Directory and OpenLDAP.")

_TIMEOUT = timedelta(seconds=30)


def _printable(value: str | None) -> str | None:
    """Names may hold any character LDAP can escape, but no control characters."""
    if value is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("control characters are not allowed")
    return value


class UserQuery(BaseModel):
    username: str = Field(min_length=1, max_length=256, description="login name (AD: or UPN)")

    _check = field_validator("username")(_printable)


class User(BaseModel):
    dn: str
    name: str = Field(description="login name: uid (OpenLDAP) or sAMAccountName (AD)")
    display_name: str = ""
    email: str | None = None
    is_service_account: bool
    groups: list[str] = Field(description="DNs of the groups it is a direct member of")
    disabled: bool = False
    locked: bool = Field(default=False, description="locked out by failed logons")


class AccountRef(BaseModel):
    dn: str = Field(min_length=1, max_length=2048)

    _check = field_validator("dn")(_printable)


class AccountState(BaseModel):
    dn: str
    disabled: bool
    changed: bool


class PasswordResetRequest(AccountRef):
    must_change: bool = Field(default=True, description="must change it at the next logon")


class PasswordReset(BaseModel):
    dn: str
    changed: bool
    must_change: bool


class GroupChange(AccountRef):
    groups: list[str] | None = Field(
        default=None, description="group DNs; none given: every group it is a direct member of"
    )


class GroupsToRestore(AccountRef):
    groups: list[str] = Field(description="group DNs, e.g. remove_from_groups' `removed`")


class GroupsRemoved(BaseModel):
    dn: str
    removed: list[str] = Field(description="the groups it was taken out of, for restore_groups")
    changed: bool


class GroupsAdded(BaseModel):
    dn: str
    added: list[str]
    changed: bool


class NewAccountRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64, description="login name and RDN value")
    given_name: str = Field(min_length=1, max_length=256)
    surname: str = Field(min_length=1, max_length=256)
    display_name: str | None = Field(default=None, max_length=256)
    email: str | None = Field(default=None, max_length=256)
    groups: list[str] = Field(default_factory=list, description="group DNs to put it in")
    enabled: bool = True

    _check = field_validator("username", "given_name", "surname", "display_name", "email")(
        _printable
    )


class AccountCreated(BaseModel):
    dn: str
    name: str
    created: bool = Field(description="False: the account was already there")
    changed: bool
    disabled: bool
    groups_added: list[str]


@asynccontextmanager
async def _directory(ctx: ActionContext) -> AsyncIterator[Directory]:
    """The bound directory; its failures become ActionFailed (unreachable: retryable)."""
    try:
        async with Directory.open(ctx.settings, ctx.secrets["bind_password"]) as directory:
            yield directory
    except DirectoryError as exc:
        raise ActionFailed(str(exc), retryable=exc.retryable) from exc


@ldap.action(
    secrets=["bind_password"],
    idempotent=True,
    timeout=_TIMEOUT,
    target=TargetKind.USER,
    target_field="username",
    cache_ttl=timedelta(seconds=30),
)
async def get_user(ctx: ActionContext, params: UserQuery) -> User:
    """Look an account up by login name: its DN, groups and state. Read-only.

    AD matches sAMAccountName or userPrincipalName, OpenLDAP uid. Fails (not retryable) when
    there is no such user or more than one."""
    async with _directory(ctx) as directory:
        account = await directory.find_user(params.username)
        groups = await directory.groups_of(account)
        service = directory.is_service_account(account, groups)
    return User(
        dn=account.dn,
        name=account.login,
        display_name=account.name,
        email=account.email,
        is_service_account=service,
        groups=groups,
        disabled=account.disabled,
        locked=account.locked,
    )


@ldap.action(
    secrets=["bind_password"],
    idempotent=True,
    compensate="ldap.enable_account",
    timeout=_TIMEOUT,
    target=TargetKind.USER,
    target_field="dn",
)
async def disable_account(ctx: ActionContext, params: AccountRef) -> AccountState:
    """Disable an account so that it can no longer bind.

    AD: the ACCOUNTDISABLE bit of userAccountControl; OpenLDAP: pwdAccountLockedTime
    000001010000Z (ppolicy). A disabled account is left as it is (`changed: false`)."""
    return await _switch(ctx, params.dn, disabled=True)


@ldap.verify("disable_account")
async def is_disabled(ctx: ActionContext, params: AccountRef) -> AccountState | None:
    """The account's state when it is already disabled, else None."""
    return await _state_if(ctx, params.dn, disabled=True)


@ldap.action(
    secrets=["bind_password"],
    idempotent=True,
    compensate="ldap.disable_account",
    timeout=_TIMEOUT,
    target=TargetKind.USER,
    target_field="dn",
)
async def enable_account(ctx: ActionContext, params: AccountRef) -> AccountState:
    """Enable an account again: the compensation of disable_account.

    AD: clear ACCOUNTDISABLE; OpenLDAP: remove pwdAccountLockedTime, which also lifts a lockout
    left by failed binds. An enabled account is left as it is (`changed: false`)."""
    return await _switch(ctx, params.dn, disabled=False)


@ldap.verify("enable_account")
async def is_enabled(ctx: ActionContext, params: AccountRef) -> AccountState | None:
    """The account's state when it is already enabled, else None."""
    return await _state_if(ctx, params.dn, disabled=False)


def _is_already(directory: Directory, account: Account, *, disabled: bool) -> bool:
    """Whether the account is disabled, or enabled with no lockout left for enabling to lift
    (OpenLDAP: removing pwdAccountLockedTime lifts one)."""
    if disabled:
        return account.disabled
    lifts_lockout = directory.settings.flavour == "openldap" and account.locked
    return not account.disabled and not lifts_lockout


async def _switch(ctx: ActionContext, dn: str, *, disabled: bool) -> AccountState:
    """Disable or enable the account; one that is so already is left as it is."""
    async with _directory(ctx) as directory:
        account = await directory.read(dn)
        if _is_already(directory, account, disabled=disabled):
            return AccountState(dn=account.dn, disabled=disabled, changed=False)
        await (directory.disable if disabled else directory.enable)(account)
    ctx.logger.info("disabled %s" if disabled else "enabled %s", account.dn)
    return AccountState(dn=account.dn, disabled=disabled, changed=True)


async def _state_if(ctx: ActionContext, dn: str, *, disabled: bool) -> AccountState | None:
    """The account's state when it is already disabled (or enabled), else None."""
    async with _directory(ctx) as directory:
        account = await directory.read(dn)
        done = _is_already(directory, account, disabled=disabled)
    return AccountState(dn=account.dn, disabled=disabled, changed=True) if done else None


@ldap.action(
    secrets=["bind_password"],
    idempotent=True,
    timeout=_TIMEOUT,
    target=TargetKind.USER,
    target_field="dn",
)
async def reset_password(ctx: ActionContext, params: PasswordResetRequest) -> PasswordReset:
    """Replace the password with a random one that nobody is told, to shut an intruder out.

    The user then gets a new one through the helpdesk. AD: unicodePwd, over TLS only;
    OpenLDAP: the password modify extended operation. The password is never returned, logged
    or stored. Repeating it has the effect of doing it once: a password nobody knows. No
    compensation: an old password cannot be put back."""
    async with _directory(ctx) as directory:
        account = await directory.read(params.dn)
        await directory.set_password(account.dn, new_password(), must_change=params.must_change)
    ctx.logger.info("reset the password of %s", account.dn)
    return PasswordReset(dn=account.dn, changed=True, must_change=params.must_change)


class _Removals:
    """What remove_from_groups took out under each idempotency key, in this process: a retry
    of an attempt that failed half-way reports the groups of both attempts, so that
    restore_groups puts back exactly what the step removed."""

    def __init__(self, size: int = 4096) -> None:
        self._seen: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
        self._size = size

    def add(self, key: str, dn: str, groups: list[str]) -> list[str]:
        slot = (key, dn.lower())
        done = self._seen.pop(slot, [])
        done += [g for g in groups if not any(same_dn(g, d) for d in done)]
        self._seen[slot] = done
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return list(done)


_removals = _Removals()


@ldap.action(
    secrets=["bind_password"],
    idempotent=True,
    compensate="ldap.restore_groups",
    timeout=_TIMEOUT,
    target=TargetKind.USER,
    target_field="dn",
)
async def remove_from_groups(ctx: ActionContext, params: GroupChange) -> GroupsRemoved:
    """Take an account out of the given groups, or out of all its groups.

    Only direct memberships under the base DN (AD's primary group stays). `removed` lists the
    groups it was really in, which restore_groups puts back; groups it was not in are
    skipped."""
    async with _directory(ctx) as directory:
        account = await directory.read(params.dn)
        current = await directory.groups_of(account)
        if params.groups is None:
            targets = current
        else:
            for group in params.groups:
                directory.check_within_base(group, "group")
            targets = [g for g in current if any(same_dn(g, want) for want in params.groups)]
        removed: list[str] = []
        try:
            for group in targets:
                if await directory.remove_member(group, account):
                    removed.append(group)
        finally:
            everything = _removals.add(ctx.idempotency_key, account.dn, removed)
    if removed:
        ctx.logger.info("removed %s from %d groups", account.dn, len(removed))
    return GroupsRemoved(dn=account.dn, removed=everything, changed=bool(removed))


@ldap.action(
    secrets=["bind_password"],
    idempotent=True,
    compensate="ldap.remove_from_groups",
    timeout=_TIMEOUT,
    target=TargetKind.USER,
    target_field="dn",
)
async def restore_groups(ctx: ActionContext, params: GroupsToRestore) -> GroupsAdded:
    """Put an account back into groups: the compensation of remove_from_groups.

    Groups it is already in are left as they are. Fails (not retryable) on a group that does
    not exist."""
    async with _directory(ctx) as directory:
        account = await directory.read(params.dn)
        added = await _add_to_groups(directory, account, params.groups)
    if added:
        ctx.logger.info("added %s to %d groups", account.dn, len(added))
    return GroupsAdded(dn=account.dn, added=added, changed=bool(added))


async def _add_to_groups(directory: Directory, account: Account, groups: list[str]) -> list[str]:
    current = await directory.groups_of(account)
    added: list[str] = []
    for group in groups:
        directory.check_within_base(group, "group")
        if any(same_dn(group, g) for g in current) or any(same_dn(group, g) for g in added):
            continue
        if not await directory.group_exists(group):
            raise NoSuchEntry(f"no group {group!r}")
        if await directory.add_member(group, account):
            added.append(group)
    return added


@ldap.action(
    secrets=["bind_password"],
    idempotent=True,
    compensate="ldap.disable_account",
    timeout=_TIMEOUT,
    target=TargetKind.USER,
    target_field="username",
)
async def create_account(ctx: ActionContext, params: NewAccountRequest) -> AccountCreated:
    """Create an account (onboarding) and put it in groups.

    It goes in the configured `users_dn`, named by its escaped username, with a random
    password it must change at the first logon (set one through the helpdesk). An account
    already there under that name is completed and returned (`created: false`); the name taken
    by an account elsewhere fails. Undo with disable_account on the output's `dn`."""
    new = NewAccount(
        username=params.username,
        given_name=params.given_name,
        surname=params.surname,
        display_name=params.display_name or f"{params.given_name} {params.surname}",
        email=params.email,
        enabled=params.enabled,
    )
    async with _directory(ctx) as directory:
        dn = directory.new_dn(params.username)
        existing = await directory.find_by_login(params.username)
        created = False
        if existing is not None and not same_dn(existing.dn, dn):
            raise ActionFailed(
                f"username {params.username!r} is taken by {existing.dn!r}", retryable=False
            )
        if existing is None:
            await directory.add_account(new, dn)
            created = True
        account = await directory.read(dn)
        finished = await directory.finish_account(account, new)
        account = await directory.read(dn)
        added = await _add_to_groups(directory, account, params.groups)
    if created:
        ctx.logger.info("created %s", account.dn)
    return AccountCreated(
        dn=account.dn,
        name=account.login,
        created=created,
        changed=created or finished or bool(added),
        disabled=account.disabled,
        groups_added=added,
    )
