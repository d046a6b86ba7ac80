"""RFC 6962 Merkle trees: the root of a settled period and inclusion proofs of its transfers.

The tree is the Certificate Transparency one (RFC 6962 section 2.1, unchanged in RFC 9162
section 2.1.1): a leaf hash is ``SHA-256(0x00 || data)``, an interior node
``SHA-256(0x01 || left || right)``, the empty tree ``SHA-256()``; a list of ``n > 1`` leaves
splits at ``k``, the largest power of two smaller than ``n``. Built bottom-up, that split rule
is the same as pairing the nodes of each level left to right and carrying an odd last node up
unchanged, which is how :func:`levels` builds it (no recursion, one pass per level).

Inclusion proofs are the RFC's audit paths (``PATH(m, D[n])``, section 2.1.1), verified with
the algorithm of RFC 9162 section 2.1.3.2 (:func:`root_from_proof`), which needs nothing but
the leaf, its index, the tree size and the path: a member checks a statement offline.

References
----------
RFC 6962, "Certificate Transparency", section 2.1 (Merkle hash trees, audit paths).
RFC 9162, "Certificate Transparency Version 2.0", section 2.1.3.2 (verifying an inclusion proof).
Test vectors: transparency-dev/merkle ``proof/verify_test.go`` (tests/data/merkle/).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)`` [32 bytes]."""
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` [32 bytes]."""
    return hashlib.sha256(_NODE + left + right).digest()


def levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first and the root's level (one node) last.

    An empty list of leaves gives ``[[]]`` (its root is :data:`EMPTY_ROOT`).
    """
    out = [list(leaf_hashes)]
    sha = hashlib.sha256
    while len(out[-1]) > 1:
        below = out[-1]
        n = len(below)
        up = [sha(_NODE + below[i] + below[i + 1]).digest() for i in range(0, n - 1, 2)]
        if n % 2:
            up.append(below[-1])  # an odd last node moves up unchanged (the RFC's split)
        out.append(up)
    return out


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash ``MTH(D[n])`` of the leaves (given as leaf hashes)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return levels(leaf_hashes)[-1][0]


def inclusion_proof(tree: list[list[bytes]], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in a tree built by :func:`levels`, leaf side first."""
    n = len(tree[0])
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} outside a tree of {n} leaves")
    path = []
    m = index
    for level in tree[:-1]:
        sibling = m ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        m //= 2
    return path


def root_from_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 section 2.1.3.2).

    Raises
    ------
    ValueError
        If the index is outside the tree or the proof has the wrong length for it.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} outside a tree of {size} leaves")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != 32:
            raise ValueError("a proof hash must be 32 bytes")
        if sn == 0:
            raise ValueError("inclusion proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion proof is shorter than the tree is high")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """True if ``proof`` shows leaf hash ``leaf`` at ``index`` of the tree with that root."""
    try:
        return root_from_proof(index, size, leaf, proof) == expected_root
    except ValueError:
        return False
