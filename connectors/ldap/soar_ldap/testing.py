"""A real OpenLDAP slapd on a free loopback port, for the ldap connector's tests and `soar lab`:
the ppolicy and memberof overlays, a base of organizational units and a default password policy,
plus any entries the caller adds. The recipe is docs/connectors/ldap.md ("How it is tested").

Not for production: the administrator's password sits in a file of the server's directory.
"""

from __future__ import annotations

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

from pydantic import JsonValue

from soar.connectors.servers import ServerFailed, ServerMissing, free_port, tail

__all__ = [
    "OPENLDAP_ADMIN",
    "OPENLDAP_BASE",
    "SLAPD",
    "ServerFailed",
    "ServerMissing",
    "Slapd",
    "free_port",
    "running_slapd",
    "slapd_installed",
    "stop_process",
    "tail",
    "wait_listening",
]

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SLAPD_MODULES = Path("/usr/lib/ldap")
SLAPD_SCHEMAS = Path("/etc/ldap/schema")
OPENLDAP_BASE = "dc=example,dc=org"
OPENLDAP_ADMIN = f"cn=admin,{OPENLDAP_BASE}"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


SLAPD_CONF = """\
include {schemas}/core.schema
include {schemas}/cosine.schema
include {schemas}/inetorgperson.schema
include {schemas}/nis.schema
modulepath {modules}
moduleload back_mdb.la
moduleload ppolicy.la
moduleload memberof.la
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args

database mdb
suffix "{base}"
rootdn "{admin}"
rootpw {password}
directory {dir}/data
maxsize 104857600
index objectClass eq
index uid,cn,member,memberOf eq

overlay ppolicy
ppolicy_default "cn=default,ou=policies,{base}"
ppolicy_use_lockout
ppolicy_hash_cleartext

overlay memberof
memberof-refint TRUE

access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to * by * read
"""

SLAPD_SEED = (
    """\
dn: {base}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

"""
    + "".join(
        f"dn: ou={ou},{{base}}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
        for ou in ("people", "groups", "admins", "services", "policies")
    )
    + """\
dn: cn=default,ou=policies,{base}
objectClass: device
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 3
pwdLockoutDuration: 0
pwdFailureCountInterval: 0
pwdAllowUserChange: TRUE
pwdMustChange: FALSE
"""
)


@dataclass
class Slapd:
    """A running slapd: `url` is `ldap://127.0.0.1:PORT`, the suffix `OPENLDAP_BASE`, the
    administrator `OPENLDAP_ADMIN` (its password is the one `running_slapd` was given)."""

    url: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def settings(self) -> dict[str, JsonValue]:
        """The ldap connector's settings for this server (the bind password is a secret)."""
        return {
            "url": self.url,
            "bind_dn": OPENLDAP_ADMIN,
            "base_dn": OPENLDAP_BASE,
            "flavour": "openldap",
            "users_dn": f"ou=people,{OPENLDAP_BASE}",
            "service_account_bases": [f"ou=services,{OPENLDAP_BASE}"],
        }

    def log(self) -> str:
        return (self.directory / "slapd.log").read_text(errors="replace")


def slapd_installed() -> bool:
    """Whether slapd, slapadd and the ppolicy module are where Debian puts them."""
    return all(Path(p).exists() for p in (SLAPD, SLAPADD, SLAPD_MODULES / "ppolicy.la"))


@contextmanager
def running_slapd(parent: Path, *, password: str, entries: str = "") -> Iterator[Slapd]:
    """A slapd with ppolicy and memberof in a new directory under `parent`, seeded with the
    base entries, the default password policy and `entries` (LDIF, `{base}` standing for the
    suffix), its administrator's password `password`; stopped and removed at the end.

    The server runs in a process group of its own, so a Ctrl-C meant for the program that
    started it does not stop it before that program is done with it.

    Raises:
        ServerMissing: slapd is not installed.
        ServerFailed: it would not start (the message has its log).
    """
    if not slapd_installed():
        raise ServerMissing("OpenLDAP slapd with ppolicy is not installed (.ci/install-ldap)")
    directory = Path(tempfile.mkdtemp(prefix="slapd-", dir=parent))
    process: subprocess.Popen[bytes] | None = None
    try:
        (directory / "data").mkdir()
        conf = directory / "slapd.conf"
        conf.write_text(
            SLAPD_CONF.format(
                schemas=SLAPD_SCHEMAS,
                modules=SLAPD_MODULES,
                dir=directory,
                base=OPENLDAP_BASE,
                admin=OPENLDAP_ADMIN,
                password=password,
            )
        )
        conf.chmod(0o600)
        seed = directory / "base.ldif"
        text = SLAPD_SEED + ("\n" + entries if entries else "")
        seed.write_text(text.replace("{base}", OPENLDAP_BASE))
        added = subprocess.run(  # noqa: S603 - fixed binary, our own files
            [SLAPADD, "-f", str(conf), "-l", str(seed)],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if added.returncode != 0:
            raise ServerFailed(f"slapadd failed ({added.returncode}):\n{tail(added.stderr)}")
        for _ in range(5):  # another program may take the port between the probe and slapd
            port = free_port()
            with (directory / "slapd.log").open("wb") as log:
                process = subprocess.Popen(  # noqa: S603 - fixed binary, our own files
                    [SLAPD, "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "stats"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=directory,
                    process_group=0,
                )
            if wait_listening(process, port, directory / "slapd.log", b"slapd starting"):
                yield Slapd(url=f"ldap://127.0.0.1:{port}", directory=directory, process=process)
                return
            stop_process(process)
            process = None
        raise ServerFailed(f"slapd did not start:\n{tail(_read(directory / 'slapd.log'))}")
    finally:
        if process is not None:
            stop_process(process)
        shutil.rmtree(directory, ignore_errors=True)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def wait_listening(
    process: subprocess.Popen[bytes],
    port: int,
    log: Path,
    ready: bytes,
    deadline: float = START_TIMEOUT_S,
) -> bool:
    """Whether *our* server came up: its ready line is logged and the port answers, while the
    process is still alive (a port check alone may hit somebody else's server)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            return False
        if ready in log.read_bytes():
            with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        time.sleep(0.01)
    return False


def stop_process(process: subprocess.Popen[bytes], grace: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is reaped."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
