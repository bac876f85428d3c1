"""Offline verification of an exported audit log: nothing but its lines and public keys.

One pass, in order. Each record must match its own hash, carry the next `seq` and link to the
record before it; each signed checkpoint must verify and commit to exactly the records the file
holds up to its tree size. The first problem is reported with the record it concerns and what
kind of tampering it shows. Memory: the 32-byte leaf hashes, a compact range, and a look-ahead
window used only to tell a deletion from a reordering.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from soar.audit.canonical import canonical
from soar.audit.keys import check_checkpoint
from soar.audit.merkle import CompactRange, root
from soar.models.audit import ZERO_HASH, leaf_hash

LOOK_AHEAD: Final = 10_000
"""Lines read ahead at a gap in `seq`, to see whether the missing record comes later."""


class ProblemKind(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    INSERTED = "inserted"
    TRUNCATED = "truncated"
    ROOT_MISMATCH = "root_mismatch"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    seq: int | None
    line: int | None
    message: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    records: int
    checkpoints: int
    last_checkpoint: int
    """The largest tree size a verified signed checkpoint covers (0: none)."""
    problem: Problem | None = None


@dataclass(slots=True)
class _Checkpoint:
    size: int
    root: str
    head: str
    line: int | None


class _Found(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def verify_export(
    lines: Iterable[str],
    keys: Mapping[str, Ed25519PublicKey],
    *,
    external: Iterable[str] = (),
) -> VerifyReport:
    """Check an export (docs/audit.md) and, with `external`, checkpoint lines published outside
    the store. The report names the first problem, if any."""
    state = _Verifier(keys)
    try:
        for number, text in enumerate(external, start=1):
            if text.strip():
                state.checkpoint(_parse(text, None), None, f"published checkpoint {number}")
        state.run(_Lines(lines))
        state.finish()
    except _Found as found:
        return state.report(found.problem)
    return state.report(None)


class _Lines:
    """Numbered non-blank lines with a look-ahead buffer."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._source: Iterator[tuple[int, str]] = (
            (n, t) for n, t in enumerate(lines, start=1) if t.strip()
        )
        self._ahead: deque[tuple[int, str]] = deque()

    def __iter__(self) -> Iterator[tuple[int, str]]:
        while True:
            if self._ahead:
                yield self._ahead.popleft()
                continue
            item = next(self._source, None)
            if item is None:
                return
            yield item

    def later_has_seq(self, seq: int) -> bool:
        """Whether a record with `seq` comes within the next LOOK_AHEAD lines."""
        while len(self._ahead) < LOOK_AHEAD:
            item = next(self._source, None)
            if item is None:
                break
            self._ahead.append(item)
        needle = f'"seq":{seq},'
        for _, text in self._ahead:
            if needle in text and '"type":"record"' in text:
                try:
                    if json.loads(text).get("seq") == seq:
                        return True
                except ValueError:
                    continue
        return False


class _Verifier:
    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self.keys = keys
        self.leaves: list[bytes] = []
        self.tree = CompactRange()
        self.prev = ZERO_HASH
        self.pending: dict[int, list[_Checkpoint]] = {}
        self.checked = 0
        self.verified_size = 0
        self.signatures = 0

    def report(self, problem: Problem | None) -> VerifyReport:
        return VerifyReport(
            ok=problem is None,
            records=len(self.leaves),
            checkpoints=self.signatures,
            last_checkpoint=self.verified_size,
            problem=problem,
        )

    def run(self, lines: _Lines) -> None:
        for number, text in lines:
            item = _parse(text, number)
            kind = item.get("type")
            if kind == "record":
                self.record(item, number, lines)
            elif kind == "checkpoint":
                self.checkpoint(item, number, f"checkpoint on line {number}")
            else:
                raise _Found(
                    Problem(ProblemKind.MALFORMED, None, number, "neither record nor checkpoint")
                )

    def record(self, item: dict[str, object], number: int, lines: _Lines) -> None:
        seq, prev, body, claimed = (item.get(k) for k in ("seq", "prev", "body", "hash"))
        if not (
            isinstance(seq, int)
            and isinstance(prev, str)
            and isinstance(body, dict)
            and isinstance(claimed, str)
        ):
            raise _Found(
                Problem(
                    ProblemKind.MALFORMED, None, number, "a record lacks seq, prev, body or hash"
                )
            )
        expected = len(self.leaves) + 1
        try:
            actual = leaf_hash(seq, prev, canonical(body))
        except ValueError as exc:
            raise _Found(
                Problem(ProblemKind.MALFORMED, seq, number, f"body is not canonical JSON: {exc}")
            ) from None
        if actual != claimed:
            raise _Found(
                Problem(
                    ProblemKind.EDITED,
                    seq,
                    number,
                    "the record does not match its hash: it was changed",
                )
            )
        if seq < expected:
            raise _Found(
                Problem(
                    ProblemKind.INSERTED,
                    seq,
                    number,
                    f"a second record {seq} after record {expected - 1}: one was added",
                )
            )
        if seq > expected:
            if lines.later_has_seq(expected):
                raise _Found(
                    Problem(
                        ProblemKind.REORDERED,
                        seq,
                        number,
                        f"record {seq} comes before record {expected}: records were moved",
                    )
                )
            raise _Found(
                Problem(
                    ProblemKind.DELETED,
                    expected,
                    number,
                    f"record {expected} is missing: it was deleted",
                )
            )
        if prev != self.prev:
            raise _Found(
                Problem(
                    ProblemKind.INSERTED,
                    seq,
                    number,
                    f"record {seq} does not link to record {seq - 1}: it was put in its place",
                )
            )
        leaf = bytes.fromhex(claimed)
        self.leaves.append(leaf)
        self.tree.append(leaf)
        self.prev = claimed
        for checkpoint in self.pending.pop(len(self.leaves), []):
            self.compare(checkpoint, self.tree.root().hex())

    def checkpoint(self, item: dict[str, object], number: int | None, where: str) -> None:
        problem = check_checkpoint(item, self.keys)
        if problem is not None:
            kind = (
                ProblemKind.UNKNOWN_KEY
                if "unknown key" in problem
                else ProblemKind.MALFORMED
                if problem.startswith("malformed")
                else ProblemKind.BAD_SIGNATURE
            )
            raise _Found(Problem(kind, None, number, f"{where}: {problem}"))
        body = item["checkpoint"]
        assert isinstance(body, dict)  # noqa: S101 - check_checkpoint saw to it
        size, root_hex, head = body["tree_size"], body["root"], body["head"]
        if not isinstance(size, int) or size < 0 or not isinstance(root_hex, str):
            raise _Found(
                Problem(ProblemKind.MALFORMED, None, number, f"{where}: bad tree_size or root")
            )
        self.signatures += 1
        found = _Checkpoint(size, root_hex, str(head), number)
        if size == len(self.leaves):  # the usual place: right after the last record it covers
            self.compare(found, self.tree.root().hex())
        elif size < len(self.leaves):
            self.compare(found, root(self.leaves[:size]).hex())
        else:
            self.pending.setdefault(size, []).append(found)

    def compare(self, checkpoint: _Checkpoint, actual_root: str) -> None:
        size = checkpoint.size
        head = self.leaves[size - 1].hex() if size else ZERO_HASH
        if actual_root != checkpoint.root or head != checkpoint.head:
            since = self.verified_size if self.verified_size < size else 0
            raise _Found(
                Problem(
                    ProblemKind.ROOT_MISMATCH,
                    since + 1,
                    checkpoint.line,
                    f"records {since + 1}..{size} are not those the checkpoint at tree size "
                    f"{size} signed: they were rewritten",
                )
            )
        self.verified_size = max(self.verified_size, size)

    def finish(self) -> None:
        if self.pending:
            size = min(self.pending)
            checkpoint = self.pending[size][0]
            raise _Found(
                Problem(
                    ProblemKind.TRUNCATED,
                    len(self.leaves) + 1,
                    checkpoint.line,
                    f"tail cut behind the checkpoint at tree size {size}: "
                    f"only {len(self.leaves)} records",
                )
            )


def _parse(text: str, number: int | None) -> dict[str, object]:
    try:
        item = json.loads(text)
    except ValueError as exc:
        raise _Found(Problem(ProblemKind.MALFORMED, None, number, f"not JSON: {exc}")) from None
    if not isinstance(item, dict):
        raise _Found(Problem(ProblemKind.MALFORMED, None, number, "not a JSON object"))
    return item
