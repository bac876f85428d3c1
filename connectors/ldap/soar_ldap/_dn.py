"""Comparing DNs: attribute by attribute, case-insensitively, whatever the escaping style
(`\\,` or `\\2C`), so that a DN from a playbook matches the directory's spelling of it."""

from __future__ import annotations

import re

from soar_ldap._ldap3 import ldap_errors, parse_dn

_HEX_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})|\\(.)")


def _unescape(value: str) -> str:
    raw = bytearray()
    position = 0
    for match in _HEX_ESCAPE.finditer(value):
        raw += value[position : match.start()].encode()
        raw += bytes([int(match[1], 16)]) if match[1] else match[2].encode()
        position = match.end()
    raw += value[position:].encode()
    return raw.decode("utf-8", errors="replace")


def components(dn: str) -> list[tuple[str, str]]:
    """(attribute, value) pairs, lower-cased and unescaped, for comparing DNs.

    Raises:
        ValueError: not a DN.
    """
    try:
        parsed = parse_dn(dn, escape=False)
    except (ldap_errors.LDAPInvalidDnError, IndexError, ValueError) as exc:
        raise ValueError(f"{dn!r} is not a valid DN") from exc
    return [(attr.strip().lower(), _unescape(value).lower()) for attr, value, _ in parsed]


def normal(dn: str) -> tuple[tuple[str, str], ...] | str:
    try:
        return tuple(components(dn))
    except ValueError:
        return dn.lower()


def is_within(dn: str, base: str) -> bool:
    """Whether `dn` is `base` or under it (compared attribute by attribute, case-insensitive).

    Raises:
        ValueError: either is not a valid DN.
    """
    inner, outer = components(dn), components(base)
    return len(inner) >= len(outer) and inner[len(inner) - len(outer) :] == outer


def same_dn(a: str, b: str) -> bool:
    return normal(a) == normal(b)


def domain_of(base_dn: str) -> str:
    """`example.test` from `DC=example,DC=test`."""
    return ".".join(value for attr, value in components(base_dn) if attr == "dc")
