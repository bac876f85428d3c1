"""The wire side of the ssh connector: one asyncssh connection per call, host keys checked
against the configured known_hosts, one argv run with every element shell-quoted, and a
remote process that outlives its budget killed, not left behind."""

from __future__ import annotations

import asyncio
import functools
import shlex
import socket
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from soar_ssh._settings import SshSettings

# The remote account's shell reports its pid (which `exec` hands to the command, a process
# group leader since sshd calls setsid) so a command past its budget can be killed.
PID_MARK = b"soar-ssh-pid "
KILL_TIMEOUT_S = 5.0
FINGERPRINT_TIMEOUT_S = 5.0
_CHUNK = 65536


class Unreachable(Exception):
    """The host could not be reached or the connection broke: worth another attempt."""


class HostKeyRejected(Exception):
    """The host's key is not the one known_hosts trusts (unknown or changed)."""

    def __init__(self, host: str, fingerprint: str) -> None:
        super().__init__(f"host key of {host} is not trusted ({fingerprint})")
        self.host = host
        self.fingerprint = fingerprint


class TrustMissing(Exception):
    """known_hosts cannot be read: nothing to check host keys against, so nothing is trusted."""


class LoginRefused(Exception):
    """The server refused our credentials."""


class BadCredentials(Exception):
    """The configured private key cannot be read (damaged, or the passphrase is wrong)."""


class TimedOut(Exception):
    """The command ran past its budget; it was killed."""

    def __init__(self, killed: bool) -> None:
        super().__init__("timed out")
        self.killed = killed


@dataclass(frozen=True, slots=True)
class Credentials:
    private_key: str | None = None
    passphrase: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    exit_status: int | None
    signal: str | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    duration_seconds: float


def command_line(argv: Sequence[str]) -> str:
    """What the remote shell gets: the pid report, then `exec` of the argv, each element quoted
    with shlex.quote, so nothing in it is shell syntax."""
    quoted = " ".join(shlex.quote(part) for part in argv)
    return f"printf '{PID_MARK.decode()}%s\\n' \"$$\" >&2; exec {quoted}"


def _known_hosts(settings: SshSettings) -> asyncssh.SSHKnownHosts:
    text = settings.known_hosts_text()
    try:
        if text is None:
            return asyncssh.read_known_hosts(str(Path(str(settings.known_hosts)).expanduser()))
        return asyncssh.import_known_hosts(text)
    except (OSError, ValueError) as exc:
        raise TrustMissing(f"known_hosts cannot be read: {type(exc).__name__}") from None


def _client_keys(credentials: Credentials) -> list[asyncssh.SSHKey]:
    if credentials.private_key is None:
        return []
    try:
        return [_decrypted(credentials.private_key, credentials.passphrase)]
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
        # Never chained: a parser's message may quote what it could not read.
        raise BadCredentials(f"the private key cannot be read ({type(exc).__name__})") from None


@functools.lru_cache(maxsize=8)
def _decrypted(pem: str, passphrase: str | None) -> asyncssh.SSHKey:
    """Decrypting an OpenSSH key runs bcrypt's KDF (about a second): once per process and key,
    as an agent would. Failures are not cached."""
    return asyncssh.import_private_key(pem, passphrase)


async def _fingerprint(host: str, port: int) -> str:
    """The key the host presents, for the error message only (the decision was already made)."""
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(host, port, config=None), FINGERPRINT_TIMEOUT_S
        )
    except (OSError, asyncssh.Error, TimeoutError):
        return "fingerprint unavailable"
    return "fingerprint unavailable" if key is None else str(key.get_fingerprint("sha256"))


async def connect(
    settings: SshSettings, host: str, credentials: Credentials, *, budget: float
) -> asyncssh.SSHClientConnection:
    """An authenticated connection to `host`, its host key checked.

    Raises:
        Unreachable, HostKeyRejected, LoginRefused, BadCredentials, TrustMissing.
    """
    known_hosts = _known_hosts(settings)
    keys = _client_keys(credentials)
    timeout = max(min(settings.connect_timeout_seconds, budget), 0.001)
    try:
        return await asyncio.wait_for(
            asyncssh.connect(
                host,
                port=settings.port,
                username=settings.username,
                known_hosts=known_hosts,
                client_keys=keys or None,
                password=credentials.password,
                passphrase=None,
                agent_path=None,
                agent_forwarding=False,
                config=None,
                preferred_auth=_preferred_auth(credentials),
                kbdint_auth=False,
                gss_auth=False,
                gss_kex=False,
                x509_trusted_certs=None,
                connect_timeout=timeout,
                login_timeout=timeout,
                keepalive_interval=15,
            ),
            timeout,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise HostKeyRejected(host, await _fingerprint(host, settings.port)) from None
    except asyncssh.PermissionDenied:
        raise LoginRefused(f"{settings.username}@{host} was refused") from None
    except TimeoutError:
        raise Unreachable(f"{host}:{settings.port} did not answer in {timeout:.1f} s") from None
    except socket.gaierror as exc:
        raise Unreachable(f"{host} cannot be resolved ({exc.strerror})") from None
    except OSError as exc:
        raise Unreachable(f"{host}:{settings.port}: {exc.strerror or type(exc).__name__}") from None
    except asyncssh.Error as exc:
        raise Unreachable(f"{host}:{settings.port}: {type(exc).__name__}") from None


def _preferred_auth(credentials: Credentials) -> list[str]:
    methods = []
    if credentials.private_key is not None:
        methods.append("publickey")
    if credentials.password is not None:
        methods.append("password")
    return methods


async def run(
    conn: asyncssh.SSHClientConnection,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    budget: float,
    limit: int,
) -> Finished:
    """Runs `argv` on the connection and collects its exit and at most `limit` bytes of each
    stream (the rest is read and dropped, so the command is never blocked on a full pipe).

    Raises:
        TimedOut: past `budget` seconds; the remote process group was killed.
        Unreachable: the connection broke.
    """
    started = time.monotonic()
    try:
        process = await conn.create_process(
            command_line(argv), env=env, stdin=asyncssh.DEVNULL, encoding=None
        )
    except (asyncssh.Error, OSError) as exc:
        raise Unreachable(f"no session: {type(exc).__name__}") from None
    pid: list[int] = []
    stdout = asyncio.ensure_future(_collect(process.stdout, limit))
    stderr = asyncio.ensure_future(_collect(process.stderr, limit, pid=pid))
    try:
        async with asyncio.timeout(budget):
            out, out_cut = await stdout
            err, err_cut = await stderr
            await process.wait_closed()
    except TimeoutError:
        stdout.cancel()
        stderr.cancel()
        killed = await _kill(conn, process, pid)
        raise TimedOut(killed) from None
    except (asyncssh.Error, OSError) as exc:
        raise Unreachable(f"connection lost: {type(exc).__name__}") from None
    finally:
        process.close()
    status = process.exit_status
    signal = process.exit_signal[0] if process.exit_signal else None
    return Finished(
        exit_status=status if status is not None and status >= 0 else None,
        signal=signal,
        stdout=out,
        stderr=err,
        stdout_truncated=out_cut,
        stderr_truncated=err_cut,
        duration_seconds=time.monotonic() - started,
    )


async def _collect(
    stream: asyncssh.SSHReader[bytes], limit: int, *, pid: list[int] | None = None
) -> tuple[bytes, bool]:
    kept = bytearray()
    truncated = False
    if pid is not None:  # the shell's pid report comes first, before `exec`
        line = await stream.readline()
        number = line.removeprefix(PID_MARK).strip()
        if line.startswith(PID_MARK) and number.isdigit():
            pid.append(int(number))
        else:
            kept += line[:limit]
            truncated = len(line) > limit
    while chunk := await stream.read(_CHUNK):
        room = limit - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > max(room, 0):
            truncated = True
    return bytes(kept), truncated


async def _kill(
    conn: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess[bytes], pid: list[int]
) -> bool:
    """Stops a command past its budget: a KILL signal over the channel (honoured by OpenSSH
    for non-root logins), the channel closed, and `kill -KILL -- -PGID` in a second session
    (which works for any login whose shell is POSIX). True when the last step succeeded."""
    with suppress(asyncssh.Error, OSError):
        process.send_signal("KILL")
    process.close()
    if not pid:
        return False
    try:
        async with asyncio.timeout(KILL_TIMEOUT_S):
            done = await conn.run(f"kill -KILL -- -{pid[0]} 2>/dev/null", check=False)
    except (TimeoutError, asyncssh.Error, OSError):
        return False
    return done.exit_status == 0
