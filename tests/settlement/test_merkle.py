"""RFC 6962 Merkle trees against the published Certificate Transparency vectors and against
the RFC's recursive definitions (a second method, written from the RFC's text)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement import merkle

VECTORS = json.loads(
    (Path(__file__).parents[1] / "data" / "merkle" / "rfc6962_vectors.json").read_text()
)
LEAVES = [bytes.fromhex(h) for h in VECTORS["leaves"]]


def _mth(data: list[bytes]) -> bytes:
    """RFC 6962 2.1: MTH({}) = SHA-256(), MTH({d0}) = SHA-256(0x00||d0), else split at k."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(data[:k]) + _mth(data[k:])).digest()


def _path(m: int, data: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1: PATH(m, D[n])."""
    n = len(data)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, data[:k]), _mth(data[k:])]
    return [*_path(m - k, data[k:]), _mth(data[:k])]


def test_roots_match_the_rfc6962_vectors() -> None:
    assert merkle.root([]).hex() == VECTORS["empty_root"]
    hashes = [merkle.leaf_hash(d) for d in LEAVES]
    for n, want in enumerate(VECTORS["roots"], start=1):
        assert merkle.root(hashes[:n]).hex() == want, n


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['index']}of{c['size']}")
def test_inclusion_proofs_match_the_vectors(case: dict) -> None:
    hashes = [merkle.leaf_hash(d) for d in LEAVES[: case["size"]]]
    tree = merkle.levels(hashes)
    proof = merkle.inclusion_proof(tree, case["index"])
    assert [p.hex() for p in proof] == case["proof"]
    root = bytes.fromhex(VECTORS["roots"][case["size"] - 1])
    leaf = hashes[case["index"]]
    assert merkle.verify_inclusion(case["index"], case["size"], leaf, proof, root)
    # the corruptions of the reference suite are all refused
    bad = [
        (case["index"] + 1, case["size"], leaf, proof),
        (case["index"], case["size"] * 2, leaf, proof),
        (case["index"], case["size"], merkle.leaf_hash(b"wrong"), proof),
        (case["index"], case["size"], leaf, [*proof, root]),
        (case["index"], case["size"], leaf, [root, *proof]),
    ]
    if proof:
        bad.append((case["index"], case["size"], leaf, proof[:-1]))
        flipped = bytes([proof[0][0] ^ 8]) + proof[0][1:]
        bad.append((case["index"], case["size"], leaf, [flipped, *proof[1:]]))
    for args in bad:
        assert not merkle.verify_inclusion(*args, root), args


@settings(deadline=None)  # a tree of 70 leaves, recursively: no deadline under load
@given(st.lists(st.binary(max_size=12), min_size=1, max_size=70), st.data())
def test_levels_agree_with_the_recursive_definition(data: list[bytes], draw: st.DataObject) -> None:
    hashes = [merkle.leaf_hash(d) for d in data]
    tree = merkle.levels(hashes)
    assert tree[-1] == [_mth(data)]
    m = draw.draw(st.integers(0, len(data) - 1))
    assert merkle.inclusion_proof(tree, m) == _path(m, data)
    assert merkle.root_from_proof(m, len(data), hashes[m], _path(m, data)) == _mth(data)


def test_index_outside_the_tree_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside a tree of 3"):
        merkle.inclusion_proof(merkle.levels([merkle.leaf_hash(b"")] * 3), 3)
    assert not merkle.verify_inclusion(3, 3, b"\x00" * 32, [], b"\x00" * 32)
