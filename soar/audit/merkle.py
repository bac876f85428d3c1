"""The Merkle tree over the audit log, as Certificate Transparency defines it (RFC 9162 §2.1):
tree hashes, inclusion and consistency proofs and their verification, and a compact range that
gives the root of a growing log in O(log n) without rereading it.

Leaves are the records' `hash` values, which are already leaf hashes (`SHA-256(0x00 ‖ entry)`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()


def node(left: bytes, right: bytes) -> bytes:
    """An interior node: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of these leaf hashes."""
    if not leaves:
        return EMPTY_ROOT
    return _mth(leaves, 0, len(leaves))


def _mth(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    n = end - start
    if n == 1:
        return leaves[start]
    k = _split(n)
    return node(_mth(leaves, start, start + k), _mth(leaves, start + k, end))


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1).

    Raises:
        ValueError: not 0 <= index < size <= len(leaves).
    """
    if not 0 <= index < size <= len(leaves):
        raise ValueError(f"no leaf {index} in a tree of size {size}")
    path: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            path.append(_mth(leaves, start + k, end))
            end = start + k
        else:
            path.append(_mth(leaves, start, start + k))
            start, m = start + k, m - k
    path.reverse()
    return path


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1).

    Raises:
        ValueError: not 0 < old_size <= new_size <= len(leaves).
    """
    if not 0 < old_size <= new_size <= len(leaves):
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    return _subproof(leaves, old_size, 0, new_size, True)


def _subproof(leaves: Sequence[bytes], m: int, start: int, end: int, whole: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if whole else [_mth(leaves, start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves, m, start, start + k, whole), _mth(leaves, start + k, end)]
    return [*_subproof(leaves, m - k, start + k, end, False), _mth(leaves, start, start + k)]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """Whether `proof` shows `leaf` at `index` in the tree of `size` with `expected_root`
    (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether `proof` shows the tree of `old_size` is a prefix of the one of `new_size`
    (RFC 9162 §2.1.4.2)."""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class CompactRange:
    """The roots of the perfect subtrees that make up a log of `size` leaves, largest first:
    enough to append and to compute the root, and small enough to store with a checkpoint."""

    def __init__(self) -> None:
        self.size = 0
        self._nodes: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        self._nodes.append(leaf)
        self.size += 1
        merged = self.size
        while merged & 1 == 0:  # two equal subtrees side by side become one
            right = self._nodes.pop()
            self._nodes[-1] = node(self._nodes[-1], right)
            merged >>= 1

    def root(self) -> bytes:
        if not self._nodes:
            return EMPTY_ROOT
        folded = self._nodes[-1]
        for left in reversed(self._nodes[:-1]):
            folded = node(left, folded)
        return folded

    def to_hex(self) -> list[str]:
        return [n.hex() for n in self._nodes]

    @classmethod
    def from_hex(cls, size: int, hashes: Sequence[str]) -> CompactRange:
        """A range as `to_hex` stored it.

        Raises:
            ValueError: the number of hashes does not fit `size`.
        """
        if size < 0 or len(hashes) != bin(size).count("1"):
            raise ValueError(f"a range of size {size} has {bin(size).count('1')} nodes")
        found = cls()
        found.size = size
        found._nodes = [bytes.fromhex(h) for h in hashes]
        return found
