"""IP address helpers (stdlib ipaddress); a value that is not an address is simply not inside."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from soar.errors import EvaluationError
from soar.playbook.expr.arguments import expect_list
from soar.playbook.expr.text import kind

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Networks:
    """Networks parsed once, at compile time, from a literal."""

    networks: tuple[Network, ...]


def _address(value: object) -> Address | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network(value: object) -> Network:
    if not isinstance(value, str) or len(value) > 64:
        raise EvaluationError(f"a network must be a string such as 10.0.0.0/8, not {kind(value)}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise EvaluationError("not a network such as 10.0.0.0/8 or fd00::/8") from None


def to_networks(value: object) -> Networks:
    """One network or a list of them, as `Networks`.

    Raises:
        EvaluationError: something that is not a network.
    """
    if isinstance(value, Networks):
        return value
    items: Sequence[object] = (
        expect_list(value, "networks") if isinstance(value, list | tuple) else [value]
    )
    return Networks(tuple(_network(item) for item in items))


def cidr_contains(ip: object, cidr: object) -> bool:
    """True when address `ip` is inside network `cidr` (or any of a list of networks).

    An `ip` that is not an IP address (null, a host name) gives false; a bad `cidr` is an
    error. IPv4-mapped IPv6 addresses count as their IPv4 address.
    """
    networks = to_networks(cidr).networks
    address = _address(ip)
    if address is None:
        return False
    return any(address in network for network in networks)


def is_private_ip(ip: object) -> bool:
    """True for a private, loopback or link-local address; false for anything else."""
    address = _address(ip)
    return address is not None and (
        address.is_private or address.is_loopback or address.is_link_local
    )


def is_ip(value: object) -> bool:
    """True when `value` is a string holding an IPv4 or IPv6 address."""
    return _address(value) is not None
