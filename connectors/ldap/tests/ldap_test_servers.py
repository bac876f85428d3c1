"""Real directory servers for the ldap connector's tests: an OpenLDAP slapd with the ppolicy and
memberof overlays on a free loopback port (soar_ldap.testing, which `soar lab` uses too), and a
Samba Active Directory domain controller in a private network namespace (its LDAP ports are
fixed), reached through a loopback forwarder.

The recipes are those of docs/connectors/ldap.md ("How it is tested"). Both bind as their
administrator with `BIND_PASSWORD`, the canary the tests look for in every output.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from soar_ldap.testing import ServerFailed, ServerMissing, stop_process, tail

BIND_PASSWORD = "canary-ldap-secret-1234"  # noqa: S105 - the canary of the secret-leak test

SAMBA = shutil.which("samba", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/samba"
SAMBA_TOOL = shutil.which("samba-tool", path="/usr/bin:/usr/sbin") or "/usr/bin/samba-tool"
AD_REALM = "EXAMPLE.TEST"
AD_BASE = "DC=example,DC=test"
AD_ADMIN = f"CN=Administrator,CN=Users,{AD_BASE}"
AD_HOST_NAME = "DC1.example.test"
LDAPS_PORT = 636


# -- network namespaces ------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000

# Run by `unshare -n` inside the new namespace: bring the loopback interface up (a new
# namespace has it down), then become the server. No `ip` binary needed.
_LOOPBACK_UP_THEN_EXEC = """\
import fcntl, os, socket, struct, sys
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    req = struct.pack("16sH14x", b"lo", 0)
    flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
os.execv(sys.argv[1], sys.argv[1:])
"""


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


@dataclass
class NamespaceForwarder:
    """Listens on 127.0.0.1 (a free port, in the tests' namespace) and forwards each connection
    to `target_port` on 127.0.0.1 inside another process's network namespace.

    The upstream sockets are made by one thread that joined that namespace (setns only moves
    the calling thread); a socket stays in the namespace it was made in, so the byte pumps can
    run anywhere. TLS passes through untouched.
    """

    namespace_of: int
    target_port: int
    port: int = 0
    _listener: socket.socket | None = None
    _requests: list[tuple[threading.Event, list[socket.socket | BaseException]]] = field(
        default_factory=list
    )
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _closed: bool = False
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._namespace_fd = os.open(f"/proc/{self.namespace_of}/ns/net", os.O_RDONLY)
        self._dialer = threading.Thread(target=self._dial_loop, name="netns-dialer", daemon=True)
        self._dialer.start()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self._listener = listener
        self.port = listener.getsockname()[1]
        accept = threading.Thread(target=self._accept_loop, name="netns-accept", daemon=True)
        accept.start()
        self._threads.append(accept)

    def dial(self, timeout: float = 5.0) -> socket.socket:
        """A socket connected to the target inside the namespace."""
        done = threading.Event()
        box: list[socket.socket | BaseException] = []
        with self._wake:
            self._requests.append((done, box))
            self._wake.notify()
        if not done.wait(timeout):
            raise TimeoutError("the namespace dialer did not answer")
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _dial_loop(self) -> None:
        _setns(self._namespace_fd)
        while True:
            with self._wake:
                while not self._requests and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                done, box = self._requests.pop(0)
            try:
                box.append(socket.create_connection(("127.0.0.1", self.target_port), timeout=5))
            except OSError as exc:
                box.append(exc)
            done.set()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = self.dial()
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                pump = threading.Thread(target=_pump, args=(source, sink), daemon=True)
                pump.start()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._listener is not None:
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for thread in self._threads:
            thread.join(2)
        self._dialer.join(2)
        os.close(self._namespace_fd)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        source.close()


# -- Samba AD DC -------------------------------------------------------------------------------

SAMBA_PROVISION_OPTIONS = (
    "--realm=" + AD_REALM,
    "--domain=EXAMPLE",
    "--server-role=dc",
    "--dns-backend=NONE",
    "--host-name=dc1",
    "--host-ip=127.0.0.1",
    "--option=interfaces=lo",
    "--option=bind interfaces only=yes",
)
SAMBA_PASSWORD_SETTINGS = (
    "--complexity=on",
    "--min-pwd-age=0",
    "--history-length=0",
    "--account-lockout-threshold=0",
)


@dataclass
class SambaDC:
    """A running Samba AD DC: LDAPS 636 in its own namespace, reached at `url` (a forwarder)."""

    url: str
    directory: Path
    process: subprocess.Popen[bytes]
    forwarder: NamespaceForwarder

    @property
    def ca_file(self) -> Path:
        return self.directory / "private" / "tls" / "ca.pem"

    @property
    def settings(self) -> dict[str, object]:
        return {
            "url": self.url,
            "bind_dn": AD_ADMIN,
            "base_dn": AD_BASE,
            "flavour": "ad",
            "tls_ca_file": str(self.ca_file),
            "tls_server_name": AD_HOST_NAME,
            "users_dn": f"CN=Users,{AD_BASE}",
            "service_account_bases": [f"OU=Services,{AD_BASE}"],
        }

    def log(self) -> str:
        return (self.directory / "samba.out").read_text(errors="replace")


def samba_installed() -> bool:
    return Path(SAMBA).exists() and Path(SAMBA_TOOL).exists()


def _samba_version() -> str:
    out = subprocess.run(  # noqa: S603
        [SAMBA, "--version"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "soar"


def _samba_conf_options(directory: Path) -> list[str]:
    """Options that keep the instance in its own directory (none of /run/samba, /var/lib)."""
    return [
        f"--option=log file={directory}/log.%m",
        f"--option=pid directory={directory}/run",
        f"--option=ncalrpc dir={directory}/run/ncalrpc",
        f"--option=winbindd socket directory={directory}/run/winbindd",
        f"--option=ntp signd socket directory={directory}/run/ntp_signd",
    ]


def provisioned_domain(log: Callable[[str], None] = lambda _: None) -> Path:
    """A provisioned domain directory to copy from, made once per Samba version and recipe and
    kept under ~/.cache/soar (provisioning takes ~4 s). Made in a scratch directory and renamed
    into place, so concurrent sessions never see half of one.

    Raises:
        ServerFailed: provisioning failed (the message has its output).
    """
    recipe = "\n".join(
        (_samba_version(), BIND_PASSWORD, *SAMBA_PROVISION_OPTIONS, *SAMBA_PASSWORD_SETTINGS)
    )
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    template = _cache_root() / f"samba-ad-{key}"
    if (template / "etc" / "smb.conf").exists() and (template / "ready").exists():
        return template
    _cache_root().mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="samba-provision-", dir=_cache_root()))
    try:
        (scratch / "run").mkdir()
        empty = scratch / "empty.conf"
        empty.write_text("")
        started = time.monotonic()
        _samba_tool(
            "domain",
            "provision",
            "-s",
            str(empty),
            f"--targetdir={scratch}",
            f"--adminpass={BIND_PASSWORD}",
            *SAMBA_PROVISION_OPTIONS,
            *_samba_conf_options(scratch),
        )
        _samba_tool(
            "domain",
            "passwordsettings",
            "set",
            "-s",
            str(scratch / "etc" / "smb.conf"),
            *SAMBA_PASSWORD_SETTINGS,
        )
        (scratch / "template-dir").write_text(str(scratch))
        (scratch / "ready").write_text(f"{time.monotonic() - started:.1f}s\n")
        log(f"provisioned a Samba domain in {time.monotonic() - started:.1f}s")
        try:
            scratch.rename(template)
        except OSError:  # another session put one there first: use that one
            shutil.rmtree(scratch, ignore_errors=True)
        return template
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _samba_tool(*args: str) -> None:
    """Run `samba-tool args...`.

    Raises:
        ServerFailed: it failed (the message ends with its output).
    """
    done = subprocess.run(  # noqa: S603
        [SAMBA_TOOL, *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise ServerFailed(
            f"samba-tool {args[0]} {args[1]} failed ({done.returncode}):\n"
            f"{tail(done.stdout + done.stderr)}"
        )


def copy_domain(template: Path, parent: Path) -> Path:
    """A private copy of the provisioned domain, its smb.conf pointed at the copy."""
    directory = Path(tempfile.mkdtemp(prefix="samba-", dir=parent))
    shutil.copytree(template, directory, symlinks=True, dirs_exist_ok=True)
    old = (template / "template-dir").read_text().strip()
    conf = directory / "etc" / "smb.conf"
    conf.write_text(conf.read_text().replace(old, str(directory)))
    for stale in (directory / "run").glob("*"):
        if stale.is_file():
            stale.unlink()
    return directory


@contextmanager
def running_samba(parent: Path) -> Iterator[SambaDC]:
    """A Samba AD DC (LDAP service only, one process) in a private network namespace, on a copy
    of the cached provisioned domain, with a loopback forwarder to its LDAPS port.

    Raises:
        ServerMissing: samba is not installed, or network namespaces cannot be made here.
        ServerFailed: it would not provision or start (the message has its log).
    """
    if not samba_installed():
        raise ServerMissing("Samba AD DC is not installed (.ci/install-ldap)")
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ServerMissing("unshare (util-linux) is not installed")
    template = provisioned_domain()
    directory = copy_domain(template, parent)
    out = directory / "samba.out"
    process: subprocess.Popen[bytes] | None = None
    forwarder: NamespaceForwarder | None = None
    try:
        with out.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603
                [
                    unshare,
                    "-n",
                    "--",
                    sys.executable,
                    "-c",
                    _LOOPBACK_UP_THEN_EXEC,
                    SAMBA,
                    "-s",
                    str(directory / "etc" / "smb.conf"),
                    "-F",
                    "--no-process-group",
                    "-M",
                    "single",
                    "--option=server services=ldap",
                    "-d",
                    "1",
                    "--debug-stdout",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        forwarder = _forward_when_listening(process, out)
        yield SambaDC(
            url=f"ldaps://127.0.0.1:{forwarder.port}",
            directory=directory,
            process=process,
            forwarder=forwarder,
        )
    finally:
        if forwarder is not None:
            forwarder.close()
        if process is not None:
            stop_process(process)
        shutil.rmtree(directory, ignore_errors=True)


def _forward_when_listening(
    process: subprocess.Popen[bytes], out: Path, deadline: float = 30.0
) -> NamespaceForwarder:
    end = time.monotonic() + deadline
    # The namespace exists once unshare has exec'd the Python helper; wait for samba itself.
    while time.monotonic() < end:
        if process.poll() is not None:
            text = out.read_text(errors="replace")
            if "unshare failed" in text:  # no CAP_SYS_ADMIN here (an unprivileged container)
                raise ServerMissing(f"cannot make a network namespace here: {tail(text, 3)}")
            raise _samba_exited(process, out)
        try:
            exe = os.readlink(f"/proc/{process.pid}/exe")
        except OSError:
            exe = ""
        if Path(exe).name == "samba":
            break
        time.sleep(0.01)
    forwarder = NamespaceForwarder(namespace_of=process.pid, target_port=LDAPS_PORT)
    forwarder.start()
    while time.monotonic() < end:
        if process.poll() is not None:
            forwarder.close()
            raise _samba_exited(process, out)
        try:
            forwarder.dial(timeout=2).close()
            return forwarder
        except OSError:
            time.sleep(0.05)
    forwarder.close()
    raise ServerFailed(f"samba's LDAPS port did not open:\n{tail(out.read_text(errors='replace'))}")


def _samba_exited(process: subprocess.Popen[bytes], out: Path) -> ServerFailed:
    return ServerFailed(
        f"samba exited with {process.returncode}:\n{tail(out.read_text(errors='replace'))}"
    )
