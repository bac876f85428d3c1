"""The artifact store: files kept content-addressed by SHA-256, each with a JSON record beside it
holding who collected it, from where and when, and an append-only chain of custody.

Layout under the store directory:

    objects/ab/ab12...ef         the artifact's bytes (read-only), named by its SHA-256
    objects/ab/ab12...ef.json    its record
    keys/<sha256 of the key>     the SHA-256 collected under an idempotency key
    tmp/                         downloads in progress

Each custody entry carries `prev`, the SHA-256 of the entry before it (canonical JSON), so an
entry removed, changed or reordered is found by `verify`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from pydantic import JsonValue

FORMAT: Final = "soar-artifact/1"
_SHA256: Final = re.compile(r"^[0-9a-f]{64}\Z")
_GENESIS: Final = "0" * 64

Record = dict[str, JsonValue]


class ArtifactTooLarge(Exception):
    """The artifact is over the store's size limit."""


class StoreError(Exception):
    """The store directory cannot be used, or an artifact or record is missing or damaged."""


@dataclass(frozen=True, slots=True)
class Stored:
    """An artifact in the store: where it is and its record; `changed` is False when the store
    already held it for this idempotency key."""

    sha256: str
    size: int
    path: Path
    record_path: Path
    record: Record
    changed: bool

    def custody_head(self, idempotency_key: str) -> str:
        """The SHA-256 of the custody entry this key added (the last one if none), the same on
        every repeat of the key."""
        custody = self.record.get("custody")
        entries = [e for e in custody if isinstance(e, dict)] if isinstance(custody, list) else []
        mine = [e for e in entries if e.get("idempotency_key") == idempotency_key]
        chosen = mine or entries
        return entry_digest(chosen[-1]) if chosen else _GENESIS


def entry_digest(entry: Mapping[str, JsonValue]) -> str:
    """The SHA-256 of a custody entry's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ArtifactStore:
    """One store directory. Writes go to `tmp/` first and are renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths ---------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise StoreError(f"{sha256!r} is not a SHA-256 in lower-case hex")
        return self.root / "objects" / sha256[:2] / sha256

    def record_path(self, sha256: str) -> Path:
        return self.blob_path(sha256).with_name(f"{sha256}.json")

    def _key_path(self, idempotency_key: str) -> Path:
        return self.root / "keys" / hashlib.sha256(idempotency_key.encode()).hexdigest()

    # -- reading -------------------------------------------------------------------------

    def read_record(self, sha256: str) -> Record:
        """The record of `sha256`.

        Raises:
            StoreError: no record, or not a JSON object.
        """
        path = self.record_path(sha256)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"no record {path}") from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"the record {path} is unreadable: {exc}") from None
        if not isinstance(record, dict):
            raise StoreError(f"the record {path} is not a JSON object")
        return record

    def collected_under(self, idempotency_key: str) -> Stored | None:
        """What was stored under this key, when its artifact and record are in place."""
        try:
            sha256 = self._key_path(idempotency_key).read_text().strip()
            record = self.read_record(sha256)
        except (OSError, StoreError):
            return None
        path = self.blob_path(sha256)
        size = record.get("size")
        if not path.is_file() or not isinstance(size, int):
            return None
        return Stored(sha256, size, path, self.record_path(sha256), record, changed=False)

    # -- writing -------------------------------------------------------------------------

    def temporary(self) -> Path:
        """A new empty file in `tmp/` for a download; the caller removes it or adds it."""
        directory = self.root / "tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="artifact-", dir=directory)
        except OSError as exc:
            raise StoreError(f"cannot write to the store {self.root}: {exc.strerror}") from None
        os.close(fd)
        return Path(name)

    def add(
        self,
        temporary: Path,
        *,
        sha256: str,
        size: int,
        idempotency_key: str,
        collector: Record,
        source: Record,
        at: datetime,
    ) -> Stored:
        """Move a downloaded file into place and write or extend its record.

        New content gets a record whose custody starts with `collected`; content the store
        already holds gets a `collected again` custody entry, unless this key already has one.
        """
        path = self.blob_path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            temporary.unlink(missing_ok=True)  # same name, same bytes
        else:
            temporary.chmod(0o444)
            os.replace(temporary, path)
        entry: Record = {
            "at": at.isoformat(),
            "actor": "soar forensics.collect",
            "event": "collected",
            "idempotency_key": idempotency_key,
            "source": source,
        }
        try:
            record = self.read_record(sha256)
        except StoreError:
            record = {
                "format": FORMAT,
                "sha256": sha256,
                "size": size,
                "collected_at": at.isoformat(),
                "collector": collector,
                "source": source,
                "custody": [],
            }
        custody = record.get("custody")
        if not isinstance(custody, list):
            raise StoreError(f"the record of {sha256} has no custody list")
        keys = {e.get("idempotency_key") for e in custody if isinstance(e, dict)}
        changed = idempotency_key not in keys
        if changed:
            if custody:
                entry["event"] = "collected again"
            last = custody[-1] if custody and isinstance(custody[-1], dict) else None
            entry["prev"] = entry_digest(last) if last is not None else _GENESIS
            custody.append(entry)
            _write_json(self.record_path(sha256), record)
        key_path = self._key_path(idempotency_key)
        key_path.parent.mkdir(parents=True, exist_ok=True)
        _write_text(key_path, sha256 + "\n")
        return Stored(sha256, size, path, self.record_path(sha256), record, changed=changed)

    # -- checking ------------------------------------------------------------------------

    def verify(self, sha256: str) -> list[str]:
        """Every problem found with one artifact: its bytes against its name and record, and
        its custody chain. An empty list means it is intact."""
        try:
            path = self.blob_path(sha256)
            record = self.read_record(sha256)
        except StoreError as exc:
            return [str(exc)]
        problems: list[str] = []
        digest = hashlib.sha256()
        size = 0
        try:
            with path.open("rb") as blob:
                while chunk := blob.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            return [f"cannot read the artifact {path}: {exc.strerror}"]
        actual = digest.hexdigest()
        if actual != sha256:
            problems.append(f"the artifact's SHA-256 is now {actual}, not {sha256}: it was altered")
        if record.get("sha256") != sha256:
            problems.append(f"the record names SHA-256 {record.get('sha256')}, not {sha256}")
        if record.get("size") != size:
            problems.append(f"the artifact is {size} bytes, the record says {record.get('size')}")
        problems += _custody_problems(record.get("custody"))
        return problems


def _custody_problems(custody: JsonValue) -> list[str]:
    if not isinstance(custody, list) or not custody:
        return ["the record has no chain of custody"]
    problems: list[str] = []
    previous = _GENESIS
    for index, entry in enumerate(custody):
        if not isinstance(entry, dict):
            problems.append(f"custody entry {index} is not an object")
            break
        if entry.get("prev") != previous:
            problems.append(f"custody entry {index} does not follow entry {index - 1}")
        previous = entry_digest(entry)
    return problems


def _write_json(path: Path, document: Record) -> None:
    _write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


def _write_text(path: Path, text: str) -> None:
    fd, name = tempfile.mkstemp(prefix=".write-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
