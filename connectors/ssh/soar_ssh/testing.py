"""A real OpenSSH sshd on a free loopback port, for the ssh connector's tests and `soar lab`:
its own host key in a private directory, public-key logins of the current user only, and
`AcceptEnv SOAR_IDEMPOTENCY_KEY`. The recipe is docs/test-servers.md ("OpenSSH sshd").

Not for production: `StrictModes no`, and the server trusts whatever key `authorize` is given.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from pydantic import JsonValue

from soar.connectors.servers import ServerFailed, ServerMissing, free_port

__all__ = [
    "SSHD",
    "ClientKey",
    "ServerFailed",
    "ServerMissing",
    "Sshd",
    "free_port",
    "new_client_key",
    "running_sshd",
    "sshd_installed",
]

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # fixed at build time; sshd refuses to start without it
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {dir}/host_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
StrictModes no
AcceptEnv SOAR_IDEMPOTENCY_KEY
AllowTcpForwarding no
X11Forwarding no
PermitTunnel no
MaxStartups 100:30:200
LogLevel VERBOSE
"""


def sshd_installed() -> bool:
    return Path(SSHD).exists()


@dataclass(frozen=True)
class ClientKey:
    """A client key pair: `private_pem` (OpenSSH format, encrypted when `passphrase` is set) is
    what the connector's `private_key` secret holds; `public_line` goes into authorized_keys."""

    private_pem: str
    public_line: str
    passphrase: str | None = None


def new_client_key(*, passphrase: str | None = None) -> ClientKey:
    """A fresh ed25519 client key, its private half encrypted with `passphrase` when given."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    pem = key.export_private_key("openssh", passphrase).decode()
    public = key.export_public_key("openssh").decode().strip()
    return ClientKey(private_pem=pem, public_line=public, passphrase=passphrase)


@dataclass
class Sshd:
    """A running sshd on `127.0.0.1:port` that lets `username` log in with the authorized keys."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    username: str
    host_key: asyncssh.SSHKey

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def known_hosts_line(self) -> str:
        """The known_hosts line that trusts this server's host key at its address and port."""
        public = self.host_key.export_public_key("openssh").decode().strip()
        return f"[{self.host}]:{self.port} {public}"

    @property
    def fingerprint(self) -> str:
        """The host key's SHA256 fingerprint, as `ssh-keygen -l` prints it."""
        return str(self.host_key.get_fingerprint("sha256"))

    def authorize(self, public_line: str) -> None:
        """Let a client key log in (appended to the server's authorized_keys)."""
        with (self.directory / "authorized_keys").open("a") as keys:
            keys.write(public_line.strip() + "\n")

    def settings(self, **more: JsonValue) -> dict[str, JsonValue]:
        """The ssh connector's settings for this server, plus `more` (commands, hosts...)."""
        base: dict[str, JsonValue] = {
            "username": self.username,
            "port": self.port,
            "known_hosts": self.known_hosts_line,
            "hosts": [self.host],
        }
        return base | more

    def log(self) -> str:
        return _read(self.directory / "sshd.log")


@contextmanager
def running_sshd(parent: Path, *, username: str | None = None) -> Iterator[Sshd]:
    """An sshd in a new directory under `parent`, with a new host key, listening on a free
    loopback port, running as the current user; stopped and removed at the end. `username`
    (default: the current user) is the account clients log in as.

    Raises:
        ServerMissing: sshd is not installed.
        ServerFailed: it would not start (the message has its log).
    """
    if not sshd_installed():
        raise ServerMissing("OpenSSH sshd is not installed (.ci/install-ssh)")
    directory = Path(tempfile.mkdtemp(prefix="sshd-", dir=parent))
    process: subprocess.Popen[bytes] | None = None
    try:
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        host_key.write_private_key(directory / "host_ed25519", "openssh")
        (directory / "host_ed25519").chmod(0o600)
        (directory / "authorized_keys").write_text("")
        (directory / "authorized_keys").chmod(0o600)
        with suppress(PermissionError):  # as root; otherwise it must exist already
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        for _ in range(5):  # another program may take the port between the probe and sshd
            port = free_port()
            config = directory / "sshd_config"
            config.write_text(SSHD_CONFIG.format(port=port, dir=directory))
            with (directory / "sshd.log").open("wb") as log:
                process = subprocess.Popen(  # noqa: S603 - fixed binary, our own files
                    [SSHD, "-D", "-e", "-f", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=directory,
                    process_group=0,
                )
            if _wait_banner(process, port):
                yield Sshd(
                    port=port,
                    directory=directory,
                    process=process,
                    username=username or getpass.getuser(),
                    host_key=host_key.convert_to_public(),
                )
                return
            _stop(process)
            process = None
        raise ServerFailed(f"sshd did not start:\n{_tail(_read(directory / 'sshd.log'))}")
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_banner(process: subprocess.Popen[bytes], port: int) -> bool:
    """Whether *our* sshd came up: it is alive and its port answers with an SSH banner."""
    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        if process.poll() is not None:
            return False
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            if s.recv(64).startswith(b"SSH-2.0-") and process.poll() is None:
                return True
        time.sleep(0.01)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to sshd's process group (the listener and its sessions), then SIGKILL."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])
