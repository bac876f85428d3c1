"""The SSRF guard: which URLs and which IP addresses an `http` request may reach.

A URL passes when its scheme is http(s), it carries no user info, its host is on the allow-list
and is a DNS name or a canonical IP literal (never a decimal, octal, hex or shortened IPv4
form). Every address the host resolves to must then pass too; the request connects to exactly
those addresses (see `_client.py`), so a DNS answer that changes between the check and the
connection changes nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import JsonValue
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_BYTES: Final = 1024 * 1024
DEFAULT_MAX_REDIRECTS: Final = 5
DEFAULT_TIMEOUT: Final = 30.0

# cloud instance metadata services: refused even with allow_private (AWS, ECS, GCP and Azure
# share 169.254.169.254; AWS IPv6 fd00:ec2::254; Alibaba 100.100.100.200; Oracle 192.0.0.192)
METADATA: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "100.100.100.200",
        "192.0.0.192",
    )
)
_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
_SITE_LOCAL: Final = ipaddress.ip_network("fec0::/10")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE: Final = ipaddress.ip_network("::/96")
_THIS_NETWORK: Final = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")
_NUMERIC_LABEL: Final = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_HOST_PATTERN: Final = re.compile(r"^(\*|(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?)$")


class Refused(Exception):
    """The guard refuses a URL or an address; never worth retrying."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(Exception):
    """The connector's settings cannot be used."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What the `http` connector's settings allow (`[connectors.http]`)."""

    allowed_hosts: tuple[str, ...] = ()
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_ports: tuple[int, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    timeout: float = DEFAULT_TIMEOUT
    secret_hosts: Mapping[str, tuple[str, ...]] | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, JsonValue]) -> Policy:
        """Read the settings.

        Raises:
            SettingsError: a setting of the wrong type or a malformed host or network.
        """
        hosts = tuple(_host_entry(h) for h in _strings(settings, "allowed_hosts"))
        try:
            networks = tuple(
                ipaddress.ip_network(n, strict=False)
                for n in _strings(settings, "allowed_networks")
            )
        except ValueError as exc:
            raise SettingsError(f"setting 'allowed_networks': {exc}") from None
        ports = settings.get("allowed_ports", [])
        if not isinstance(ports, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports
        ):
            raise SettingsError("setting 'allowed_ports' must be a list of port numbers")
        allow_private = settings.get("allow_private", False)
        if not isinstance(allow_private, bool):
            raise SettingsError("setting 'allow_private' must be true or false")
        raw_secret_hosts = settings.get("secret_hosts", {})
        if not isinstance(raw_secret_hosts, dict):
            raise SettingsError("setting 'secret_hosts' must map secret names to host lists")
        secret_hosts = {
            name: tuple(_host_entry(h) for h in _strings(raw_secret_hosts, name))
            for name in raw_secret_hosts
        }
        return cls(
            allowed_hosts=hosts,
            allow_private=allow_private,
            allowed_networks=networks,
            allowed_ports=tuple(int(str(p)) for p in ports),
            max_bytes=int(_positive(settings, "max_bytes", DEFAULT_MAX_BYTES)),
            max_redirects=int(
                _positive(settings, "max_redirects", DEFAULT_MAX_REDIRECTS, zero=True)
            ),
            timeout=_positive(settings, "timeout", DEFAULT_TIMEOUT),
            secret_hosts=secret_hosts,
        )

    # -- URLs ------------------------------------------------------------------------------------

    def check_url(self, url: URL) -> str | IPAddress:
        """The URL's host, as an IP address when it is an IP literal, else as a DNS name.

        Raises:
            Refused: a scheme other than http(s), user info, a host that is not allowed, a
                non-canonical IPv4 form, an IPv6 zone, or a literal address that is refused.
        """
        if url.scheme not in ("http", "https") or not url.is_absolute():
            raise Refused(f"only absolute http and https URLs are allowed, not {_shown(url)}")
        if url.user is not None or url.password is not None:
            raise Refused("a URL with user info (user@host) is refused")
        host = (url.raw_host or "").lower().rstrip(".")
        if not host:
            raise Refused("the URL has no host")
        if self.allowed_ports and url.port not in self.allowed_ports:
            raise Refused(f"the port {url.port} is not allowed")
        address = literal_address(host)
        if address is not None:
            if not self.is_allowed_host(str(address), address):
                raise Refused(f"the host {address} is not on the allow-list")
            self.check_address(address)
            return address
        if not self.is_allowed_host(host, None):
            raise Refused(f"the host {host} is not on the allow-list")
        return host

    def is_allowed_host(self, host: str, address: IPAddress | None) -> bool:
        """Whether `host` matches an `allowed_hosts` entry (`*`, `*.suffix`, a name or an IP)."""
        return any(_matches(entry, host, address) for entry in self.allowed_hosts)

    def may_carry(self, secret: str, host: str) -> bool:
        """Whether the secret may be sent to `host` (`secret_hosts`)."""
        hosts = (self.secret_hosts or {}).get(secret, ())
        address = literal_address(host)
        return any(_matches(entry, host, address) for entry in hosts if entry != "*")

    # -- addresses ---------------------------------------------------------------------------------

    def check_address(self, address: IPAddress) -> None:
        """Refuse an address the policy does not allow, and any IPv4 address embedded in it
        (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64).

        Raises:
            Refused: naming why (metadata, multicast, unspecified, reserved, private).
        """
        inner = _embedded(address)
        for candidate in (*inner, address):
            reason = self._refusal(candidate, wrapper=candidate == address and bool(inner))
            if reason is not None:
                shown = f"{address} ({candidate})" if candidate != address else str(address)
                raise Refused(f"the address {shown} is {reason}")

    def check_addresses(self, addresses: Sequence[IPAddress]) -> None:
        """Every address must pass: one refused address refuses the host."""
        for address in addresses:
            self.check_address(address)

    def _refusal(self, address: IPAddress, *, wrapper: bool) -> str | None:
        """Why `address` is refused, or None. A `wrapper` (an IPv6 address carrying an IPv4
        one, already checked) is not refused for lying in a reserved IPv6 range."""
        if any(address.version == n.version and address in n for n in self.allowed_networks):
            return None
        if address in METADATA:
            return "a cloud metadata address"
        if address.is_multicast:
            return "a multicast address"
        if address.is_unspecified:
            return "unspecified"
        if isinstance(address, ipaddress.IPv4Address) and address == _BROADCAST:
            return "the broadcast address"
        if address in _THIS_NETWORK:
            return "in 0.0.0.0/8"
        if address.is_reserved and not wrapper and not address.is_loopback:
            return "a reserved address"
        kind = _private_kind(address)
        if kind is not None:
            return None if self.allow_private else f"{kind} (allow_private is off)"
        return None


def _private_kind(address: IPAddress) -> str | None:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None or address in _IPV4_COMPATIBLE or address in _NAT64
    ):
        return None  # decided by the IPv4 address inside
    if (
        address.is_private
        or address in _CGNAT
        or (isinstance(address, ipaddress.IPv6Address) and address in _SITE_LOCAL)
    ):
        return "a private address"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells, when it is an IP literal; None for a DNS name.

    Raises:
        Refused: an IPv6 zone, or an IPv4 address in a non-canonical form (`2130706433`,
            `0x7f.1`, `0177.0.0.1`, `127.1`) that resolvers would read as an address.
    """
    if "%" in host:
        raise Refused("an IPv6 address with a zone is refused")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        raise Refused(f"the host {host} is an IPv4 address in a non-standard form, refused")
    return None


def _embedded(address: IPAddress) -> list[IPAddress]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[IPAddress] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _matches(entry: str, host: str, address: IPAddress | None) -> bool:
    if entry == "*":
        return True
    if address is not None:
        try:
            return ipaddress.ip_address(entry) == address
        except ValueError:
            return False
    if entry.startswith("*."):
        return host.endswith(entry[1:])
    return host == entry


def _host_entry(entry: str) -> str:
    text = entry.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    try:
        text = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError:
        raise SettingsError(f"not a host name: {entry!r}") from None
    if not _HOST_PATTERN.match(text):
        raise SettingsError(f"not a host name, '*.suffix' or IP address: {entry!r}")
    return text


def _strings(settings: Mapping[str, JsonValue], name: str) -> list[str]:
    value = settings.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"setting {name!r} must be a list of strings")
    return [str(v) for v in value]


def _positive(
    settings: Mapping[str, JsonValue], name: str, default: float, *, zero: bool = False
) -> float:
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SettingsError(f"setting {name!r} must be a positive number")
    if value == 0 and not zero:
        raise SettingsError(f"setting {name!r} must be a positive number")
    return float(value)


def _shown(url: URL) -> str:
    return f"{url.scheme}:" if url.scheme else "a relative URL"
