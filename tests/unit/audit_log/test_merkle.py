"""RFC 9162 trees, proofs and the compact range, against a brute-force tree hash."""

from __future__ import annotations

import hashlib

import pytest

from soar.audit.merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    node,
    root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [hashlib.sha256(b"\x00" + str(i).encode()).digest() for i in range(70)]


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def test_roots_and_the_compact_range_match_the_definition() -> None:
    grown = CompactRange()
    for n in range(71):
        assert root(LEAVES[:n]) == mth(LEAVES[:n])
        assert grown.root() == mth(LEAVES[:n])
        resumed = CompactRange.from_hex(n, grown.to_hex())
        assert resumed.root() == grown.root()
        if n < 70:
            grown.append(LEAVES[n])


def test_every_inclusion_proof_holds_and_a_tampered_one_fails() -> None:
    for size in range(1, 71):
        expected = mth(LEAVES[:size])
        for index in range(size):
            proof = inclusion_proof(LEAVES, index, size)
            assert verify_inclusion(LEAVES[index], index, size, proof, expected)
            assert not verify_inclusion(LEAVES[(index + 1) % 70], index, size, proof, expected)
            if proof:
                bent = [node(proof[0], proof[0]), *proof[1:]]
                assert not verify_inclusion(LEAVES[index], index, size, bent, expected)


def test_every_consistency_proof_holds_and_a_tampered_one_fails() -> None:
    for new in range(1, 71):
        for old in range(1, new + 1):
            proof = consistency_proof(LEAVES, old, new)
            old_root, new_root = mth(LEAVES[:old]), mth(LEAVES[:new])
            assert verify_consistency(old, new, old_root, new_root, proof)
            if old < new:
                forged = hashlib.sha256(b"forged").digest()
                assert not verify_consistency(old, new, forged, new_root, proof)
                assert not verify_consistency(old, new, old_root, new_root, proof[:-1])


def test_out_of_range_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="no leaf 5"):
        inclusion_proof(LEAVES, 5, 5)
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(LEAVES, 0, 3)
    with pytest.raises(ValueError, match="has 2 nodes"):
        CompactRange.from_hex(3, ["00" * 32])
