"""The Ed25519 keys that sign audit checkpoints: a keyring directory with one active key and
the retired ones (kept, so checkpoints signed before a rotation still verify)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from soar.audit.canonical import canonical
from soar.errors import ConfigError

KEYRING_FILE: Final = "keyring.json"
_PEM_BLOCK: Final = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
_CHECKPOINT_FIELDS: Final = ("log", "tree_size", "root", "head", "time", "key_id")


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


class Keyring:
    """Private keys as `<key_id>.key` (PKCS#8 PEM, owner-only), and `keyring.json` naming the
    active key and when each key was created and retired."""

    def __init__(self, directory: Path, index: dict[str, object]) -> None:
        self.directory = directory
        self._index = index
        self._signer: Ed25519PrivateKey | None = None

    @classmethod
    def create(cls, directory: Path) -> Keyring:
        """A new keyring with its first key.

        Raises:
            ConfigError: a keyring already exists there.
        """
        if (directory / KEYRING_FILE).exists():
            raise ConfigError(
                f"{directory} already holds a keyring (`soar keys rotate` replaces keys)"
            )
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        keyring = cls(directory, {"active": None, "keys": []})
        keyring._add_key()
        return keyring

    @classmethod
    def open(cls, directory: Path) -> Keyring:
        """The keyring in `directory`.

        Raises:
            ConfigError: there is none, or its index is unreadable.
        """
        path = directory / KEYRING_FILE
        if not path.is_file():
            raise ConfigError(f"no audit keyring in {directory}: run `soar keys create`")
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if not isinstance(index, dict) or not isinstance(index.get("active"), str):
            raise ConfigError(f"{path} names no active key")
        return cls(directory, index)

    @property
    def active_id(self) -> str:
        return str(self._index["active"])

    def entries(self) -> list[tuple[str, str, str, str | None]]:
        """(key id, active/retired, created, retired) for every key, oldest first."""
        found = []
        for entry in self._keys():
            status = "active" if entry["id"] == self.active_id else "retired"
            found.append((entry["id"], status, entry["created"], entry.get("retired")))
        return found

    def rotate(self) -> tuple[str, str]:
        """Retire the active key for a new one; returns (old id, new id)."""
        old = self.active_id
        for entry in self._keys():
            if entry["id"] == old:
                entry["retired"] = _now()
        new = self._add_key()
        return old, new

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature of `data` with the active key.

        Raises:
            ConfigError: the key file is missing, unreadable, or readable by others.
        """
        if self._signer is None or key_id(self._signer.public_key()) != self.active_id:
            self._signer = self._load_private(self.active_id)
        return self._signer.sign(data)

    def public_pem(self, wanted: str | None = None) -> str:
        """PEM public keys: all of them, or the one with id `wanted`.

        Raises:
            ConfigError: no key has that id.
        """
        ids = [e["id"] for e in self._keys()] if wanted is None else [wanted]
        if wanted is not None and wanted not in {e["id"] for e in self._keys()}:
            raise ConfigError(f"no key {wanted} in {self.directory}")
        return "".join(_public_pem(self._load_private(i).public_key()) for i in ids)

    def _keys(self) -> list[dict[str, str]]:
        keys = self._index.setdefault("keys", [])
        assert isinstance(keys, list)  # noqa: S101
        return keys

    def _add_key(self) -> str:
        private = Ed25519PrivateKey.generate()
        new = key_id(private.public_key())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self.directory / f"{new}.key"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(pem)
        self._keys().append({"id": new, "created": _now()})
        self._index["active"] = new
        self._save()
        self._signer = private
        return new

    def _save(self) -> None:
        path = self.directory / KEYRING_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._index, indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)

    def _load_private(self, wanted: str) -> Ed25519PrivateKey:
        path = self.directory / f"{wanted}.key"
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    f"{path} is readable by others (mode {stat.filemode(mode)}): chmod 600 it"
                )
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise ConfigError(f"audit key {wanted}: {exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"{path} is not a PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey) or key_id(key.public_key()) != wanted:
            raise ConfigError(f"{path} does not hold Ed25519 key {wanted}")
        return key


def load_public_keys(pem_text: str) -> dict[str, Ed25519PublicKey]:
    """Every Ed25519 public key in the PEM text, by key id (other blocks are skipped)."""
    found: dict[str, Ed25519PublicKey] = {}
    for block in _PEM_BLOCK.findall(pem_text):
        try:
            key = serialization.load_pem_public_key(block.encode())
        except ValueError:
            continue
        if isinstance(key, Ed25519PublicKey):
            found[key_id(key)] = key
    return found


def checkpoint_line(body: Mapping[str, object], keyring: Keyring) -> str:
    """The export line of a checkpoint signed with the keyring's active key (docs/audit.md)."""
    signed = {**{k: v for k, v in body.items() if k != "key_id"}, "key_id": keyring.active_id}
    signature = base64.b64encode(keyring.sign(canonical(signed))).decode()
    return (
        '{"type":"checkpoint","checkpoint":'
        + canonical(signed).decode()
        + f',"signature":"{signature}"}}'
    )


def check_checkpoint(
    line: Mapping[str, object], keys: Mapping[str, Ed25519PublicKey]
) -> str | None:
    """None when the checkpoint line's signature holds, else what is wrong with it."""
    body = line.get("checkpoint")
    signature = line.get("signature")
    if not isinstance(body, dict) or not isinstance(signature, str):
        return "malformed checkpoint: no checkpoint object or signature"
    missing = [f for f in _CHECKPOINT_FIELDS if f not in body]
    if missing:
        return f"malformed checkpoint: no {', '.join(missing)}"
    key = keys.get(str(body["key_id"]))
    if key is None:
        return f"signed with unknown key {body['key_id']}"
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical(body))
    except (InvalidSignature, ValueError):
        return f"bad signature by key {body['key_id']}"
    return None
