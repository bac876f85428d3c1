"""The blocking ldap3 calls, each run in a worker thread by `Directory`, and the TLS set-up.
ldap3's exceptions and result codes become `DirectoryError`s here, with messages that name DNs
and result codes, never a password."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

from soar_ldap._ldap3 import ldap3, ldap_errors
from soar_ldap._settings import (
    BindRefused,
    CertificateRefused,
    DirectoryError,
    DirectorySettings,
    DirectoryUnavailable,
    NoSuchEntry,
    OperationRefused,
    SettingsInvalid,
)

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


def tls_of(settings: DirectorySettings) -> _Tls | None:
    if not settings.encrypted:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsInvalid(f"ldap settings: tls_ca_file: cannot load it ({exc})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    host = urlsplit(settings.url).hostname or ""
    return _Tls(context, settings.tls_server_name or host)


def connect(settings: DirectorySettings, password: str) -> Any:
    server = ldap3.Server(
        settings.url,
        tls=tls_of(settings),
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
        close(connection)
        raise DirectoryUnavailable(f"StartTLS with {settings.url} failed") from exc
    except (ldap_errors.LDAPCommunicationError, ssl.SSLCertVerificationError) as exc:
        close(connection)
        # ldap3 re-raises an SSL error as a class made of both its own and the SSL one.
        if isinstance(exc, ssl.SSLCertVerificationError):
            name = settings.tls_server_name or urlsplit(settings.url).hostname
            raise CertificateRefused(
                f"the TLS certificate of {settings.url} is not trusted or not issued to "
                f"{name!r} (check tls_ca_file and tls_server_name)"
            ) from exc
        raise DirectoryUnavailable(
            f"directory {settings.url} unreachable ({type(exc).__name__})"
        ) from exc
    except DirectoryError:
        close(connection)
        raise
    except ldap_errors.LDAPException as exc:
        close(connection)
        raise DirectoryUnavailable(f"could not open {settings.url} ({type(exc).__name__})") from exc


def close_opened(opening: asyncio.Future[Any]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        close(opening.result())


def close(connection: Any) -> None:
    with suppress(Exception):
        connection.unbind()
    # ldap3 keeps the socket of a failed open (refused, TLS refused) without closing it.
    sock = getattr(connection, "socket", None)
    if sock is not None:
        with suppress(OSError):
            sock.close()


def guarded(fn: Any, connection: Any, *args: Any) -> Any:
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


def search(
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


def read_entry(
    connection: Any, dn: str, attributes: list[str]
) -> tuple[str, dict[str, list[bytes]]] | None:
    found = search(connection, dn, "(objectClass=*)", "base", attributes, 1)
    return found[0] if found else None


def modify(
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


def add(connection: Any, dn: str, classes: list[str], attributes: dict[str, object]) -> None:
    if not connection.add(dn, classes, attributes):
        raise _fail(connection, "add of", dn)


def password_modify(connection: Any, dn: str, password: str) -> None:
    ok = connection.extend.standard.modify_password(user=dn, new_password=password)
    if not ok:
        raise _fail(connection, "password modify of", dn)
