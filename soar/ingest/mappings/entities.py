"""Collecting the users, hosts, addresses, hashes, URLs and emails an alert is about.

Every mapping adds candidates in its own order of importance; `Entities` drops blanks and
duplicates (first one wins, order kept) so playbooks see each entity once.
"""

from __future__ import annotations

import ipaddress
from typing import TypeVar

from pydantic import BaseModel

from soar.models.alert import (
    EmailEntity,
    HashEntity,
    HostEntity,
    IpEntity,
    UrlEntity,
    UserEntity,
)

_E = TypeVar("_E", bound=BaseModel)

_HASH_NAMES = {
    "md5": "md5",
    "sha1": "sha1",
    "sha-1": "sha1",
    "sha256": "sha256",
    "sha-256": "sha256",
    "sha512": "sha512",
    "sha-512": "sha512",
    "sha384": "sha384",
    "sha-384": "sha384",
}
_HASH_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 96: "sha384", 128: "sha512"}


def is_ip(text: str) -> bool:
    """Whether `text` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def hash_algorithm(name: str | None, value: str) -> str:
    """A lower-case algorithm name; guessed from the hex length when the source gives none."""
    if name:
        key = name.strip().lower()
        return _HASH_NAMES.get(key, key.replace("-", ""))
    return _HASH_BY_LENGTH.get(len(value), "unknown")


class Entities:
    """The entity lists of one alert under construction."""

    def __init__(self) -> None:
        self.users: list[UserEntity] = []
        self.hosts: list[HostEntity] = []
        self.ips: list[IpEntity] = []
        self.hashes: list[HashEntity] = []
        self.urls: list[UrlEntity] = []
        self.emails: list[EmailEntity] = []

    def user(
        self,
        name: str | None,
        *,
        domain: str | None = None,
        id: str | None = None,
        email: str | None = None,
    ) -> None:
        """Add a user; one with no name falls back to its email, then its id."""
        name = _clean(name) or _clean(email) or _clean(id)
        if name:
            _add(
                self.users,
                UserEntity(name=name, domain=_clean(domain), id=_clean(id), email=_clean(email)),
            )

    def host(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        ips: list[str] | None = None,
        os: str | None = None,
    ) -> None:
        """Add a host when it has a name or an id; addresses are kept only when they parse."""
        addresses = list(dict.fromkeys(a.strip() for a in ips or [] if is_ip(a)))
        name, id = _clean(name), _clean(id)
        if name or id:
            _add(self.hosts, HostEntity(id=id, name=name, ips=addresses, os=_clean(os)))

    def ip(self, address: str | None, role: str | None = None) -> None:
        """Add an address; text that is not an IP address is dropped."""
        if address and is_ip(address):
            _add(self.ips, IpEntity(address=address.strip(), role=role))

    def hash(self, value: str | None, algorithm: str | None = None) -> None:
        """Add a file hash, kept in lower case."""
        value = _clean(value)
        if value:
            value = value.lower()
            _add(self.hashes, HashEntity(algorithm=hash_algorithm(algorithm, value), value=value))

    def url(self, url: str | None) -> None:
        """Add a URL."""
        url = _clean(url)
        if url:
            _add(self.urls, UrlEntity(url=url))

    def email(self, address: str | None, role: str | None = None) -> None:
        """Add an email address that at least has an `@`."""
        address = _clean(address)
        if address and "@" in address:
            _add(self.emails, EmailEntity(address=address, role=role))

    def fields(self) -> dict[str, list[BaseModel]]:
        """The lists as `Alert` keyword arguments."""
        return {
            "users": list(self.users),
            "hosts": list(self.hosts),
            "ips": list(self.ips),
            "hashes": list(self.hashes),
            "urls": list(self.urls),
            "emails": list(self.emails),
        }


def _clean(value: str | None) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _add(items: list[_E], item: _E) -> None:
    if item not in items:
        items.append(item)
