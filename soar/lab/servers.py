"""The outside systems the connectors talk to, stood up on loopback for the lab: a Falcon-shaped
EDR, a Freshservice-shaped helpdesk, an SMTP server and the Slack, Teams, PagerDuty and Twilio
webhooks, and, where they are installed, a real OpenLDAP slapd, a real Prometheus scraping a
real node exporter, and a real OpenSSH sshd running the change scripts (docs/lab.md). Each
comes from its connector's own `testing` module, imported here only when the connector is
installed; one that is missing is said and skipped, and its connector has no server behind it
(`Wiring.offline`, whose playbooks' runs are then dry runs).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import JsonValue

__all__ = ["CHANGE_COMMANDS", "LAB_USERS", "Wiring", "start_servers"]

_T = TypeVar("_T")

# (uid, full name, mail); alice leads the SOC, denny and admin are the brute-force sample's
LAB_USERS = (
    ("alice", "Alice Martin", "alice@example.org"),
    ("bob", "Bob Durand", "bob@example.org"),
    ("carol", "Carol Petit", "carol@example.org"),
    ("denny", "Denny Moreau", "denny@example.org"),
    ("admin", "Lab Administrator", "admin@example.org"),
)
_USER_PASSWORD = "Lab-user-passw0rd"  # noqa: S105 - the lab directory's users, on loopback only

# what playbooks read as `directory`, and notify's own directory: the same people
_EXECUTIVES: list[JsonValue] = [
    {"name": "CISO", "email": "ciso@example.org", "phone": "+33600000001"},
    {"name": "CEO", "email": "ceo@example.org", "phone": "+33600000002"},
]
_SOC_ONCALL: dict[str, JsonValue] = {
    "timezone": "Europe/Paris",
    "shifts": [
        {
            "start": "08:00",
            "end": "20:00",
            "people": [{"name": "Alice", "email": "alice@example.org", "phone": "+33600000011"}],
        },
        {
            "start": "20:00",
            "end": "08:00",
            "people": [{"name": "Bob", "email": "bob@example.org", "phone": "+33600000012"}],
        },
    ],
    "default": ["soc@example.org"],
}

#: the ssh allow-list of the lab: each command is a harmless script in `<lab>/change-bin/` that
#: appends one line to `<lab>/ssh-commands.log` and prints what a real one would
CHANGE_COMMANDS = ("backup", "apply", "check", "rollback", "scale_out")
_TARGET: dict[str, JsonValue] = {"pattern": "^[a-z0-9-]{1,64}$"}
_CHANGE: dict[str, JsonValue] = {"pattern": "^CHG[0-9]{4,10}$"}


def _ssh_commands(bin_dir: Path) -> dict[str, JsonValue]:
    def run(name: str, *args: str) -> list[JsonValue]:
        return [str(bin_dir / name), *args]

    return {
        "backup": {
            "argv": run("backup", "--target", "{target}"),
            "idempotent": True,
            "params": {"target": _TARGET},
        },
        "apply": {
            "argv": run("apply", "--target", "{target}", "--change", "{change}"),
            "undo": "rollback",
            "params": {"target": _TARGET, "change": _CHANGE},
        },
        "check": {"argv": run("check", "--target", "{target}"), "params": {"target": _TARGET}},
        "rollback": {
            "argv": run("rollback", "--target", "{target}", "--change", "{change}"),
            "params": {"target": _TARGET, "change": _CHANGE},
        },
        "scale_out": {
            "argv": run("scale_out", "--pool", "{pool}", "--reason", "{reason}"),
            "params": {"pool": _TARGET},
        },
    }


_SCRIPT = """#!/bin/sh
# soar lab: a stand-in for the real {name} command; it changes nothing but this log
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '%s {name} %s key=%s\\n' "$stamp" "$*" "${{SOAR_IDEMPOTENCY_KEY:-}}" >> {log}
{say}
"""
_SAYS = {
    "backup": 'echo "backup of $2 made: /var/backups/$2-lab.tar.zst"',
    "apply": 'echo "$4 applied to $2"',
    "check": 'echo "$2 healthy: 12/12 checks passed"',
    "rollback": 'echo "$4 rolled back on $2"',
    "scale_out": 'echo "pool $2: 2 -> 3 nodes"',
}


def _lab_directory(metrics_target: str | None) -> dict[str, JsonValue]:
    """What playbooks read as `directory`: people, on-call, and the shipped playbooks' maps
    (docs/playbooks/*.md say which keys each reads)."""
    instance = metrics_target or "app-1:9100"
    return {
        "executives": _EXECUTIVES,
        "oncall": {"soc": _SOC_ONCALL},
        "p1": {
            "management_service": "it-management",
            "escalation_service": "it-escalation-manager",
            "management_emails": ["cio@example.org", "it-director@example.org"],
        },
        "services": {
            "checkout": {"group_id": 7, "responder_id": 12, "instance": instance},
            "default": {"group_id": 2, "responder_id": None, "instance": instance},
        },
        "server_check": {
            "cpu_threshold": 90,
            "memory_threshold": 95,
            "disk_threshold": 95,
            "page_above": 98,
            "oncall_service": "infra-oncall",
            "report_to": ["infra-team@example.org", "cio@example.org"],
        },
        "scaling": {"host": "127.0.0.1", "pool": "web", "emergency_service": "infra-emergency"},
        "change_management": {
            "cab": ["cab@example.org", "change-manager@example.org"],
            "oncall_service": "change-manager-oncall",
        },
        "change_targets": {
            "checkout": {
                "test": {"host": "127.0.0.1", "target": "checkout-test"},
                "production": {"host": "127.0.0.1", "target": "checkout-prod"},
            }
        },
    }


@dataclass(slots=True)
class Wiring:
    """What the engine needs to reach the servers: connector settings, secrets (by
    `connector.name`) and the directory; and what the lab says about them."""

    settings: dict[str, dict[str, JsonValue]] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    directory: dict[str, JsonValue] = field(default_factory=dict)
    offline: dict[str, str] = field(default_factory=dict)
    """connector -> why no server stands behind it in this lab"""
    servers: list[tuple[str, str]] = field(default_factory=list)
    """(what, where) for each server started"""
    processes: dict[str, int] = field(default_factory=dict)
    """child processes by name: pid"""
    _effects: list[Callable[[], str | None]] = field(default_factory=list)
    warm_ups: list[Callable[[], None]] = field(default_factory=list)
    """blocking waits until a server has data worth reading (Prometheus' first CPU rate)"""

    def effects(self) -> list[str]:
        """What the servers were asked to do so far, one phrase each (none when idle)."""
        return [text for count in self._effects if (text := count()) is not None]


async def start_servers(
    stack: AsyncExitStack,
    directory: Path,
    *,
    hosts: Iterable[str],
    offline: bool = False,
    tickets: Iterable[int] = (),
) -> Wiring:
    """Start every server whose connector is installed; each is stopped when `stack` closes.
    `hosts` are the EDR's machines (the sample alerts' hosts); `tickets` the helpdesk tickets
    the samples name (the P1 sample's ticket), put in place. With `offline` no directory
    server is started even where slapd is installed (the lab's `--no-ldap`).

    Raises:
        Exception: a server that is installed but fails to start (its error says why).
    """
    wiring = Wiring()
    await _edr(stack, wiring, directory, sorted(set(hosts)))
    await _ticket(stack, wiring, sorted(set(tickets)))
    await _notify(stack, wiring, directory)
    if offline:
        wiring.offline["ldap"] = "the lab was started with --no-ldap"
    else:
        await _ldap(stack, wiring, directory)
    target = await _metrics(stack, wiring, directory)
    await _ssh(stack, wiring, directory)
    wiring.directory = _lab_directory(target)
    return wiring


async def _enter(stack: AsyncExitStack, server: AbstractContextManager[_T]) -> _T:
    """Enter a blocking server context (it waits for the server to be ready) off the loop."""
    entered = await asyncio.to_thread(server.__enter__)
    stack.push(server.__exit__)
    return entered


async def _metrics(stack: AsyncExitStack, wiring: Wiring, directory: Path) -> str | None:
    """A node exporter and a Prometheus scraping it every second; returns the exporter's
    target (what `directory.services` names as the monitored instance), or None."""
    try:
        from soar_metrics.testing import (
            NODE_EXPORTER,
            PROMETHEUS,
            monitoring_installed,
            running_node_exporter,
            running_prometheus,
            wait_for_data,
        )
    except ImportError:
        wiring.offline["metrics"] = "the soar-metrics connector is not installed"
        return None
    if not monitoring_installed(PROMETHEUS, NODE_EXPORTER):
        wiring.offline["metrics"] = (
            f"Prometheus or the node exporter is not installed here ({PROMETHEUS}, "
            f"{NODE_EXPORTER}; .ci/install-prometheus)"
        )
        return None
    exporter = await _enter(stack, running_node_exporter(directory))
    prometheus = await _enter(stack, running_prometheus(directory, targets=[exporter.target]))
    wiring.settings["metrics"] = prometheus.settings
    wiring.warm_ups.append(
        lambda: wait_for_data(prometheus, 'rate(node_cpu_seconds_total{mode="idle"}[1h])')
    )
    wiring.processes["node exporter"] = exporter.process.pid
    wiring.processes["prometheus"] = prometheus.process.pid
    wiring.servers.append(
        ("monitoring (Prometheus, node exporter)", f"{prometheus.url}  target: {exporter.target}")
    )
    return exporter.target


async def _ssh(stack: AsyncExitStack, wiring: Wiring, directory: Path) -> None:
    """A real sshd letting the current user in with a new key, and the allow-listed change
    commands as harmless scripts whose every call is a line in `ssh-commands.log`."""
    try:
        from soar_ssh.testing import SSHD, new_client_key, running_sshd, sshd_installed
    except ImportError:
        wiring.offline["ssh"] = "the soar-ssh connector is not installed"
        return
    if not sshd_installed():
        wiring.offline["ssh"] = f"OpenSSH's sshd is not installed here ({SSHD}; .ci/install-ssh)"
        return
    bin_dir = directory / "change-bin"
    bin_dir.mkdir()
    log = directory / "ssh-commands.log"
    log.touch()
    for name in CHANGE_COMMANDS:
        script = bin_dir / name
        script.write_text(_SCRIPT.format(name=name, log=log, say=_SAYS[name]))
        script.chmod(0o755)
    sshd = await _enter(stack, running_sshd(directory))
    key = new_client_key()
    sshd.authorize(key.public_line)
    wiring.settings["ssh"] = sshd.settings(
        commands=_ssh_commands(bin_dir), connect_timeout_seconds=5
    )
    wiring.secrets["ssh.private_key"] = key.private_pem
    wiring.processes["sshd"] = sshd.process.pid
    wiring.servers.append(
        (
            "change hosts (OpenSSH sshd)",
            f"{sshd.username}@127.0.0.1:{sshd.port}  commands: "
            f"{', '.join(CHANGE_COMMANDS)} (log: {log.name})",
        )
    )
    wiring._effects.append(lambda: _counted("ssh command", _lines(log), "ssh commands"))


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


async def _edr(stack: AsyncExitStack, wiring: Wiring, directory: Path, hosts: list[str]) -> None:
    try:
        from soar_edr.testing import FalconTestServer
    except ImportError:
        wiring.offline["edr"] = "the soar-edr connector is not installed"
        return
    falcon = await stack.enter_async_context(
        FalconTestServer(client_secret=secrets.token_urlsafe(16))
    )
    for host in hosts or ["lab-ws-01"]:
        falcon.add_host(host, processes={4242}, files={"C:\\Windows\\Temp\\dropper.exe": b"MZ"})
    wiring.settings["edr"] = {**falcon.settings, "poll_interval": 0.2}
    wiring.secrets["edr.client_id"] = falcon.client_id
    wiring.secrets["edr.client_secret"] = falcon.client_secret
    evidence = directory / "evidence"
    evidence.mkdir()
    wiring.settings["forensics"] = {"store_dir": str(evidence), "edr_base_url": falcon.url}
    wiring.secrets["forensics.edr_client_id"] = falcon.client_id
    wiring.secrets["forensics.edr_client_secret"] = falcon.client_secret
    wiring.servers.append(("EDR (Falcon API)", f"{falcon.url}  hosts: {', '.join(hosts)}"))
    wiring._effects.append(
        lambda: _counted("EDR action", sum(falcon.effects.values()), "EDR actions")
    )


async def _ticket(stack: AsyncExitStack, wiring: Wiring, tickets: list[int]) -> None:
    try:
        from soar_ticket.testing import FreshserviceTestServer
    except ImportError:
        wiring.offline["ticket"] = "the soar-ticket connector is not installed"
        return
    helpdesk = await stack.enter_async_context(
        FreshserviceTestServer(api_key=secrets.token_urlsafe(16))
    )
    for number in tickets:  # the samples' tickets, under their own numbers
        record = helpdesk.add_ticket(subject=f"lab ticket {number}", priority=4)
        helpdesk.tickets.pop(helpdesk._next_id)  # add_ticket files it under the next free id
        helpdesk.tickets[number] = {**record, "id": number}
    wiring.settings["ticket"] = dict(helpdesk.settings)
    wiring.secrets["ticket.api_key"] = helpdesk.api_key
    wiring.servers.append(("helpdesk (Freshservice API)", helpdesk.url))
    wiring._effects.append(
        lambda: _counted("ticket change", sum(helpdesk.effects.values()), "ticket changes")
    )


async def _notify(stack: AsyncExitStack, wiring: Wiring, directory: Path) -> None:
    try:
        from soar_notify.testing import Mailbox, make_certificate, running_smtp, running_vendor
    except ImportError:
        wiring.offline["notify"] = "the soar-notify connector is not installed"
        return
    certificate = make_certificate(directory / "tls")
    outbox = directory / "mail"
    outbox.mkdir()

    class Outbox(Mailbox):
        """The lab's mailbox, which also keeps every accepted mail as `mail/NNNN.eml`, so a
        person (or a test) can read what was sent."""

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            answer = await super().handle_DATA(server, session, envelope)
            content = envelope.content
            data = content if isinstance(content, bytes) else str(content).encode()
            (outbox / f"{len(self.envelopes):04d}.eml").write_bytes(data)
            return answer

    mailbox = Outbox(password=secrets.token_urlsafe(16))
    smtp = stack.enter_context(running_smtp(certificate, mailbox))
    vendor = await stack.enter_async_context(running_vendor())
    wiring.settings["notify"] = {
        **vendor.settings(),
        **smtp.settings(),
        "timeout_seconds": 5,
        "chat_platform": "slack",
        "pagerduty_source": "soar-lab",
        "directory": {"executives": _EXECUTIVES, "oncall": {"soc": _SOC_ONCALL}},
    }
    wiring.secrets.update({f"notify.{k}": v for k, v in vendor.secret_values().items()})
    wiring.secrets["notify.smtp_password"] = mailbox.password
    wiring.servers.append(("mail (SMTP, STARTTLS)", f"127.0.0.1:{smtp.port}"))
    wiring.servers.append(("chat and paging (Slack, Teams, PagerDuty, SMS)", vendor.base))
    wiring._effects.append(lambda: _counted("mail", len(mailbox.envelopes), "mails"))
    wiring._effects.append(
        lambda: _counted("chat, page or SMS", len(vendor.received), "chats, pages and SMS")
    )


async def _ldap(stack: AsyncExitStack, wiring: Wiring, directory: Path) -> None:
    try:
        from soar_ldap.testing import SLAPD, running_slapd, slapd_installed
    except ImportError:
        wiring.offline["ldap"] = "the soar-ldap connector is not installed"
        return
    if not slapd_installed():
        wiring.offline["ldap"] = f"OpenLDAP is not installed here ({SLAPD})"
        return
    password = secrets.token_urlsafe(16)
    server = running_slapd(directory, password=password, entries=_lab_ldif())
    slapd = await asyncio.to_thread(server.__enter__)
    stack.push(server.__exit__)
    wiring.settings["ldap"] = slapd.settings
    wiring.secrets["ldap.bind_password"] = password
    wiring.processes["slapd"] = slapd.process.pid
    users = ", ".join(uid for uid, _, _ in LAB_USERS)
    wiring.servers.append(("directory (OpenLDAP slapd)", f"{slapd.url}  users: {users}"))


def _lab_ldif() -> str:
    entries = [
        f"dn: uid={uid},ou=people,{{base}}\n"
        "objectClass: inetOrgPerson\n"
        f"uid: {uid}\ncn: {name}\nsn: {name.split()[-1]}\nmail: {mail}\n"
        f"userPassword: {_USER_PASSWORD}\n"
        for uid, name, mail in LAB_USERS
    ]
    entries.append(
        "dn: cn=soc-leads,ou=groups,{base}\n"
        "objectClass: groupOfNames\ncn: soc-leads\n"
        "member: uid=alice,ou=people,{base}\n"
    )
    entries.append(
        "dn: uid=svc-backup,ou=services,{base}\n"
        "objectClass: inetOrgPerson\nuid: svc-backup\ncn: backup service\nsn: service\n"
    )
    return "\n".join(entries)


def _counted(one: str, count: int, many: str) -> str | None:
    if count == 0:
        return None
    return f"1 {one}" if count == 1 else f"{count} {many}"
