"""The encrypted secret store: connector secrets in one file, each value sealed with AES-256-GCM.

A secret is named `connector.name` (`ldap.bind_password`), as actions declare them. Each value is
sealed on its own, with a fresh 96-bit nonce and its name as associated data, so an entry copied
under another name, or edited, fails to open. The key is 32 random bytes, read from a file or
from an environment variable (base64); it never touches the store file, which names only the
key's id (the first 16 hex digits of its SHA-256), so that opening a store with the wrong key
says so instead of failing entry by entry. Rotation seals every value again under a new key and
replaces the file in one rename.

The file is JSON:
`{"format": "soar-secrets/1", "key_id": "...", "secrets": {NAME: {"nonce", "sealed", "updated"}}}`
with base64 nonce and sealed bytes (ciphertext and tag). Values are never written in the clear,
never logged, and `list` shows names only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets as random
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from soar.errors import ConfigError

FORMAT: Final = "soar-secrets/1"
KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_NAME: Final = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\Z")


class SecretStoreError(ConfigError):
    """The secret store or its key cannot be used: wrong key, damaged file, bad name."""


@dataclass(frozen=True, slots=True)
class SecretEntry:
    """What `list` shows of a secret: never its value."""

    name: str
    updated: datetime


def new_key() -> bytes:
    return random.token_bytes(KEY_BYTES)


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def write_key(path: Path, key: bytes) -> None:
    """Write a key file (base64, mode 0600), refusing to replace one.

    Raises:
        SecretStoreError: the file exists.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretStoreError(f"{path} exists: a key file is never overwritten") from None
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(key).decode() + "\n")


def read_key(*, file: Path | None = None, env: str | None = None) -> bytes:
    """The key from `file`, else from the environment variable `env` (base64 of 32 bytes).

    Raises:
        SecretStoreError: neither is set, or the key is not 32 bytes of base64.
    """
    if file is not None:
        try:
            text, where = file.read_text(), str(file)
        except OSError as exc:
            raise SecretStoreError(f"cannot read the secrets key {file}: {exc.strerror}") from None
    elif env is not None and os.environ.get(env):
        text, where = os.environ[env], f"${env}"
    else:
        raise SecretStoreError(
            "no secrets key: set secrets.key_file, or the key (base64) in "
            f"${env or 'SOAR_SECRETS_KEY'}; `soar secrets keygen PATH` makes one"
        )
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretStoreError(f"the secrets key in {where} is not base64") from None
    if len(key) != KEY_BYTES:
        raise SecretStoreError(f"the secrets key in {where} is {len(key)} bytes, not {KEY_BYTES}")
    return key


class SecretStore:
    """One store file, opened with its key. Changes are written at once, atomically."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key
        self._aead = AESGCM(key)
        self._entries: dict[str, dict[str, str]] = {}
        self._load()

    # -- reading -------------------------------------------------------------------------

    def names(self) -> list[SecretEntry]:
        return [
            SecretEntry(name, datetime.fromisoformat(entry["updated"]))
            for name, entry in sorted(self._entries.items())
        ]

    def get(self, name: str) -> str:
        """The value of `name`.

        Raises:
            SecretStoreError: no such secret, or its entry was altered.
        """
        entry = self._entries.get(name)
        if entry is None:
            raise SecretStoreError(f"no secret {name!r} in {self.path}")
        return self._open(name, entry)

    def values(self) -> dict[str, str]:
        """Every secret, opened (what an engine hands its actions)."""
        return {name: self._open(name, entry) for name, entry in self._entries.items()}

    # -- changing ------------------------------------------------------------------------

    def set(self, name: str, value: str, *, now: datetime | None = None) -> None:
        """Seal `value` as `name` (replacing any value it had) and write the file.

        Raises:
            SecretStoreError: `name` is not `connector.name`, or the value is empty.
        """
        if not _NAME.match(name):
            raise SecretStoreError(
                "secret names are `connector.name` in lower case (ldap.bind_password), "
                f"not {name!r}"
            )
        if not value:
            raise SecretStoreError(f"secret {name!r}: an empty value is not a secret")
        self._entries[name] = self._seal(self._aead, name, value, now or datetime.now(UTC))
        self._save(self._key)

    def delete(self, name: str) -> bool:
        """Remove `name`; False when there was no such secret."""
        if self._entries.pop(name, None) is None:
            return False
        self._save(self._key)
        return True

    def rotate(self, new: bytes) -> None:
        """Seal every value again under the key `new` and replace the file in one rename: the
        file is readable with the old key until the rename and with the new one after."""
        if len(new) != KEY_BYTES:
            raise SecretStoreError(f"a secrets key is {KEY_BYTES} bytes")
        aead = AESGCM(new)
        entries = {
            name: self._seal(aead, name, self._open(name, entry), _updated(entry))
            for name, entry in self._entries.items()
        }
        previous = self._entries
        self._entries = entries
        try:
            self._save(new)
        except BaseException:
            self._entries = previous
            raise
        self._key, self._aead = new, aead

    # -- the file ------------------------------------------------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            document = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise SecretStoreError(f"{self.path} is not a secret store: {exc}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise SecretStoreError(f"{self.path} is not a secret store ({FORMAT})")
        found = document.get("key_id")
        if found != key_id(self._key):
            raise SecretStoreError(
                f"{self.path} is sealed with key {found}, and the key given is "
                f"{key_id(self._key)}: use the key it was written (or last rotated) with"
            )
        entries = document.get("secrets")
        if not isinstance(entries, dict) or not all(
            isinstance(e, dict) and {"nonce", "sealed", "updated"} <= e.keys()
            for e in entries.values()
        ):
            raise SecretStoreError(f"{self.path}: damaged secret entries")
        self._entries = entries

    def _save(self, key: bytes) -> None:
        document = {"format": FORMAT, "key_id": key_id(key), "secrets": self._entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".secrets-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(document, out, indent=2, sort_keys=True)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @staticmethod
    def _seal(aead: AESGCM, name: str, value: str, updated: datetime) -> dict[str, str]:
        nonce = random.token_bytes(_NONCE_BYTES)
        sealed = aead.encrypt(nonce, value.encode(), name.encode())
        return {
            "nonce": base64.b64encode(nonce).decode(),
            "sealed": base64.b64encode(sealed).decode(),
            "updated": updated.isoformat(),
        }

    def _open(self, name: str, entry: Mapping[str, str]) -> str:
        try:
            nonce = base64.b64decode(entry["nonce"], validate=True)
            sealed = base64.b64decode(entry["sealed"], validate=True)
            return self._aead.decrypt(nonce, sealed, name.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError, KeyError):
            raise SecretStoreError(
                f"secret {name!r} in {self.path} does not open with this key: it was altered, "
                "or moved from another name"
            ) from None


def _updated(entry: Mapping[str, str]) -> datetime:
    return datetime.fromisoformat(entry["updated"])
