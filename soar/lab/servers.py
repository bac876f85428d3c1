"""The outside systems the connectors talk to, stood up on loopback for the lab: a Falcon-shaped
EDR, a Freshservice-shaped helpdesk, an SMTP server and the Slack, Teams, PagerDuty and Twilio
webhooks, and a real OpenLDAP slapd where one is installed. Each comes from its connector's own
`testing` module, imported here only when the connector is installed; one that is missing is
said and skipped, and its connector has no server behind it (`Wiring.offline`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import JsonValue

__all__ = ["LAB_USERS", "Wiring", "start_servers"]

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

    def effects(self) -> list[str]:
        """What the servers were asked to do so far, one phrase each (none when idle)."""
        return [text for count in self._effects if (text := count()) is not None]


async def start_servers(
    stack: AsyncExitStack, directory: Path, *, hosts: Iterable[str], offline: bool = False
) -> Wiring:
    """Start every server whose connector is installed; each is stopped when `stack` closes.
    `hosts` are the EDR's machines (the sample alerts' hosts). With `offline` no directory
    server is started even where slapd is installed (the lab's `--no-ldap`).

    Raises:
        Exception: a server that is installed but fails to start (its error says why).
    """
    wiring = Wiring(directory={"executives": _EXECUTIVES, "oncall": {"soc": _SOC_ONCALL}})
    await _edr(stack, wiring, directory, sorted(set(hosts)))
    await _ticket(stack, wiring)
    await _notify(stack, wiring, directory)
    if offline:
        wiring.offline["ldap"] = "the lab was started with --no-ldap"
    else:
        await _ldap(stack, wiring, directory)
    return wiring


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


async def _ticket(stack: AsyncExitStack, wiring: Wiring) -> None:
    try:
        from soar_ticket.testing import FreshserviceTestServer
    except ImportError:
        wiring.offline["ticket"] = "the soar-ticket connector is not installed"
        return
    helpdesk = await stack.enter_async_context(
        FreshserviceTestServer(api_key=secrets.token_urlsafe(16))
    )
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
    mailbox = Mailbox(password=secrets.token_urlsafe(16))
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
