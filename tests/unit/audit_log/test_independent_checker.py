"""Proofs from `soar audit prove` hold under a short checker written here from RFC 9162 and
docs/audit.md, using only hashlib, json, base64 and cryptography — none of soar's own code."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from soar.audit.canonical import canonical
from soar.audit.keys import Keyring, checkpoint_line
from soar.audit.merkle import CompactRange
from soar.audit.proofs import prove_consistency, prove_inclusion
from soar.models.audit import ZERO_HASH, AuditEvent, AuditKind, seal

# ---- the independent checker: nothing below imports soar ----------------------------------


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def check_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def check_consistency(m: int, n: int, old: bytes, new: bytes, path: list[bytes]) -> bool:
    if m == n:
        return not path and old == new
    if m & (m - 1) == 0:
        path = [old, *path]
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old and sr == new


def check_signature(line: str, key: Ed25519PublicKey) -> dict[str, object]:
    item = json.loads(line)
    body = item["checkpoint"]
    # RFC 8785 for a flat object of ASCII keys, strings and small integers
    canonical_body = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    key.verify(base64.b64decode(item["signature"]), canonical_body.encode())
    return dict(body)


def record_hash(line: str) -> str:
    item = json.loads(line)
    body = json.dumps(item["body"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    entry = f'{{"body":{body},"prev":"{item["prev"]}","seq":{item["seq"]}}}'
    return hashlib.sha256(b"\x00" + entry.encode()).hexdigest()


# ---- an export made by soar ---------------------------------------------------------------


def an_export(tmp_path: Path, records: int = 37) -> tuple[list[str], Keyring]:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    events = [
        AuditEvent(
            kind=AuditKind.STEP_FINISHED,
            time=now,
            actor="engine",
            body=canonical({"kind": "step.finished", "n": n, "actor": "engine", "who": "Zoë"}),
        )
        for n in range(records)
    ]
    sealed = seal(events, (0, ZERO_HASH))
    keyring = Keyring.create(tmp_path / "keys")
    lines: list[str] = []
    tree = CompactRange()
    for record in sealed:
        lines.append(record.line())
        tree.append(bytes.fromhex(record.hash))
        if record.seq in (13, records):
            body = {
                "log": "soar",
                "tree_size": record.seq,
                "root": tree.root().hex(),
                "head": record.hash,
                "time": "2026-11-28T12:00:00.000000Z",
            }
            lines.append(checkpoint_line(body, keyring))
    return lines, keyring


def test_an_inclusion_proof_checks_out_independently(tmp_path: Path) -> None:
    lines, keyring = an_export(tmp_path)
    key = load_pem_public_key(keyring.public_pem().encode())
    assert isinstance(key, Ed25519PublicKey)
    records = [line for line in lines if '"type":"record"' in line]
    assert all(json.loads(line)["hash"] == record_hash(line) for line in records)
    document = json.loads(json.dumps(prove_inclusion(lines, 9)))
    leaf = bytes.fromhex(document["leaf_hash"])
    assert document["leaf_hash"] == record_hash(records[8])
    path = [bytes.fromhex(p) for p in document["path"]]
    root = bytes.fromhex(document["root"])
    assert check_inclusion(leaf, document["leaf_index"], document["tree_size"], path, root)
    signed = check_signature(document["checkpoint"], key)
    assert signed["root"] == document["root"]
    assert signed["tree_size"] == document["tree_size"] == 37
    assert not check_inclusion(leaf, 9, document["tree_size"], path, root)


def test_a_consistency_proof_checks_out_independently(tmp_path: Path) -> None:
    lines, keyring = an_export(tmp_path)
    key = load_pem_public_key(keyring.public_pem().encode())
    assert isinstance(key, Ed25519PublicKey)
    document = json.loads(json.dumps(prove_consistency(lines, 13, 37)))
    old, new = bytes.fromhex(document["old_root"]), bytes.fromhex(document["new_root"])
    path = [bytes.fromhex(p) for p in document["path"]]
    assert check_consistency(13, 37, old, new, path)
    assert check_signature(document["old_checkpoint"], key)["root"] == document["old_root"]
    assert check_signature(document["new_checkpoint"], key)["root"] == document["new_root"]
    assert not check_consistency(13, 37, new, new, path)
