"""Who is calling: API tokens (stored only as a SHA-256 digest), the roles they carry, and the
console's session cookie with its CSRF token.

A token is `soar_<id>_<secret>`: 256 bits from `secrets`, so a plain SHA-256 digest is as good as a
slow hash (nobody can guess one to try). The session cookie is signed with HMAC-SHA256 under a
key that stays in the process (or `api.session_key_file`, for several API replicas); it names the
token's digest, so revoking the token ends its sessions at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

SESSION_COOKIE: Final = "soar_session"
CSRF_HEADER: Final = "X-CSRF-Token"
_PREFIX: Final = "soar_"


class Role(StrEnum):
    """What a token may do (docs/api.md has the route matrix)."""

    ADMIN = "admin"
    AUTHOR = "author"
    RESPONDER = "responder"
    AUDITOR = "auditor"
    INGEST = "ingest"


@dataclass(frozen=True, slots=True)
class NewToken:
    id: str
    token: str
    digest: str


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the token's name is the actor in the audit log."""

    token_id: str
    name: str
    role: Role
    digest: str
    via: str  # "token" or "session"

    @property
    def actor(self) -> str:
        return f"api:{self.name}"


def new_token() -> NewToken:
    token_id = secrets.token_hex(6)
    token = f"{_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(token_id, token, token_digest(token))


def token_digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(_PREFIX) and 20 <= len(value) <= 200 and value.isascii()


class Sessions:
    """Signed session cookies; nothing kept server-side but the key."""

    def __init__(self, key: bytes, ttl: timedelta) -> None:
        if len(key) < 32:
            raise ValueError("a session key needs at least 32 bytes")
        self._key = key
        self.ttl = ttl

    def issue(self, digest: str, now: datetime) -> tuple[str, str]:
        """A cookie value for the token with `digest`, and its CSRF token."""
        expires = int((now + self.ttl).timestamp())
        payload = _b64(json.dumps({"d": digest, "e": expires, "n": secrets.token_hex(8)}).encode())
        cookie = f"{payload}.{self._sign(payload)}"
        return cookie, self.csrf_for(cookie)

    def open(self, cookie: str, now: datetime) -> str | None:
        """The token digest a valid, unexpired cookie names; None otherwise."""
        payload, _, signature = cookie.partition(".")
        if not payload or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            digest, expires = str(fields["d"]), int(fields["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires <= now.timestamp():
            return None
        return digest

    def csrf_for(self, cookie: str) -> str:
        return self._sign("csrf:" + cookie)[:32]

    def csrf_ok(self, cookie: str, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(self.csrf_for(cookie), sent)

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def utc_now() -> datetime:
    return datetime.now(UTC)
