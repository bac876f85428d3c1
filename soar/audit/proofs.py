"""Inclusion and consistency proofs (RFC 9162) from an export, as JSON documents an auditor can
check offline with any RFC 9162 implementation — or `check_inclusion` / `check_consistency`.

A document carries the signed checkpoint lines that commit to its roots when the export has one
at that tree size, so checking it also shows the root is the one soar signed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from soar.audit.keys import check_checkpoint
from soar.audit.merkle import (
    consistency_proof,
    inclusion_proof,
    root,
    verify_consistency,
    verify_inclusion,
)


def _read(lines: Iterable[str]) -> tuple[list[bytes], dict[int, str]]:
    leaves: list[bytes] = []
    checkpoints: dict[int, str] = {}
    for text in lines:
        if not text.strip():
            continue
        item = json.loads(text)
        if item.get("type") == "record":
            leaves.append(bytes.fromhex(item["hash"]))
        elif item.get("type") == "checkpoint":
            checkpoints.setdefault(int(item["checkpoint"]["tree_size"]), text.strip())
    return leaves, checkpoints


def prove_inclusion(
    lines: Iterable[str], seq: int, *, tree_size: int | None = None
) -> dict[str, object]:
    """That record `seq` is in the tree of `tree_size` records (default: the largest signed
    checkpoint covering it, else the whole export).

    Raises:
        ValueError: no such record or tree size in the export.
    """
    leaves, checkpoints = _read(lines)
    if tree_size is None:
        signed = [size for size in checkpoints if size >= seq]
        tree_size = max(signed) if signed else len(leaves)
    if not 1 <= seq <= tree_size <= len(leaves):
        raise ValueError(f"no record {seq} in a tree of size {tree_size} ({len(leaves)} records)")
    path = inclusion_proof(leaves, seq - 1, tree_size)
    return {
        "proof": "inclusion",
        "seq": seq,
        "leaf_index": seq - 1,
        "leaf_hash": leaves[seq - 1].hex(),
        "tree_size": tree_size,
        "root": root(leaves[:tree_size]).hex(),
        "path": [p.hex() for p in path],
        "checkpoint": checkpoints.get(tree_size),
    }


def prove_consistency(lines: Iterable[str], old_size: int, new_size: int) -> dict[str, object]:
    """That the tree of `old_size` records is a prefix of the tree of `new_size`.

    Raises:
        ValueError: sizes out of order or beyond the export.
    """
    leaves, checkpoints = _read(lines)
    if not 1 <= old_size <= new_size <= len(leaves):
        raise ValueError(f"no proof from {old_size} to {new_size} ({len(leaves)} records)")
    path = consistency_proof(leaves, old_size, new_size)
    return {
        "proof": "consistency",
        "old_size": old_size,
        "new_size": new_size,
        "old_root": root(leaves[:old_size]).hex(),
        "new_root": root(leaves[:new_size]).hex(),
        "path": [p.hex() for p in path],
        "old_checkpoint": checkpoints.get(old_size),
        "new_checkpoint": checkpoints.get(new_size),
    }


def check_inclusion(
    document: Mapping[str, object], keys: Mapping[str, Ed25519PublicKey] | None = None
) -> str | None:
    """None when the inclusion proof holds (and, with keys, its checkpoint verifies)."""
    try:
        leaf = bytes.fromhex(str(document["leaf_hash"]))
        path = [bytes.fromhex(str(p)) for p in document["path"]]  # type: ignore[attr-defined]
        index, size = int(document["leaf_index"]), int(document["tree_size"])  # type: ignore[call-overload]
        expected = bytes.fromhex(str(document["root"]))
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed proof: {exc}"
    if not verify_inclusion(leaf, index, size, path, expected):
        return "the path does not lead from the leaf to the root"
    return _signed(document.get("checkpoint"), size, expected, keys)


def check_consistency(
    document: Mapping[str, object], keys: Mapping[str, Ed25519PublicKey] | None = None
) -> str | None:
    """None when the consistency proof holds (and, with keys, its checkpoints verify)."""
    try:
        old, new = int(document["old_size"]), int(document["new_size"])  # type: ignore[call-overload]
        old_root = bytes.fromhex(str(document["old_root"]))
        new_root = bytes.fromhex(str(document["new_root"]))
        path = [bytes.fromhex(str(p)) for p in document["path"]]  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed proof: {exc}"
    if not verify_consistency(old, new, old_root, new_root, path):
        return f"the tree of size {old} is not shown to be a prefix of the one of size {new}"
    return _signed(document.get("old_checkpoint"), old, old_root, keys) or _signed(
        document.get("new_checkpoint"), new, new_root, keys
    )


def _signed(
    line: object, size: int, expected: bytes, keys: Mapping[str, Ed25519PublicKey] | None
) -> str | None:
    if keys is None or line is None:
        return None
    try:
        item = json.loads(str(line))
    except ValueError:
        return "the checkpoint is not JSON"
    problem = check_checkpoint(item, keys)
    if problem is not None:
        return f"checkpoint: {problem}"
    body = item["checkpoint"]
    if body.get("tree_size") != size or body.get("root") != expected.hex():
        return f"the checkpoint does not commit to the root of size {size}"
    return None
