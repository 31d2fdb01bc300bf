"""RFC 9162 Merkle trees: the published vectors, every valid proof up to 300 leaves, an independent implementation
(pymerkle), and every mutation class rejected by both verifiers."""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Sequence

import pymerkle
import pytest

from services.common.ledger.merkle import (
    EMPTY_ROOT,
    ProofError,
    aligned_pieces,
    consistency_proof,
    consistency_ranges,
    fold_pieces,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

N = 300
LEAVES = [f"leaf {i}".encode() for i in range(N)]
HASHES = [leaf_hash(leaf) for leaf in LEAVES]


# The reference: RFC 9162 section 2.1 read literally (recursive, hashlib directly, nothing shared with the module).
@functools.cache
def mth(start: int, end: int) -> bytes:
    n = end - start
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + LEAVES[start]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(start, start + k) + mth(start + k, end)).digest()


def rfc_path(m: int, start: int, end: int) -> list[bytes]:
    n = end - start
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*rfc_path(m, start, start + k), mth(start + k, end)]
    return [*rfc_path(m - k, start + k, end), mth(start, start + k)]


def rfc_subproof(m: int, start: int, end: int, whole: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if whole else [mth(start, end)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*rfc_subproof(m, start, start + k, whole), mth(start + k, end)]
    return [*rfc_subproof(m - k, start + k, end, False), mth(start, start + k)]


def root(size: int) -> bytes:
    return mth(0, size)


# --- Published vectors (transparency-dev/merkle testonly/constants.go and proof/verify_test.go) ---

CT_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657"]] + [
    bytes.fromhex("606162636465666768696a6b6c6d6e6f")
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index from zero, tree size, proof)
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_HASHES = [leaf_hash(leaf) for leaf in CT_LEAVES]


def ct_subtree(start: int, end: int) -> bytes:
    return root_of(CT_HASHES[start:end])


def test_roots_match_the_published_rfc_6962_vectors() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    for size in range(len(CT_LEAVES) + 1):
        assert root_of(CT_HASHES[:size]).hex() == CT_ROOTS[size], size


def test_leaf_and_node_hashes_carry_the_domain_separation_prefixes() -> None:
    assert leaf_hash(b"").hex() == CT_ROOTS[1]
    assert node_hash(CT_HASHES[0], CT_HASHES[1]).hex() == CT_ROOTS[2]


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_inclusion_proofs_match_the_published_vectors(index: int, size: int, expected: list[str]) -> None:
    proof = inclusion_proof(index, size, ct_subtree)
    assert [value.hex() for value in proof] == expected
    verify_inclusion(CT_HASHES[index], index, size, proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old_size", "new_size", "expected"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_published_vectors(old_size: int, new_size: int, expected: list[str]) -> None:
    proof = consistency_proof(old_size, new_size, ct_subtree)
    assert [value.hex() for value in proof] == expected
    verify_consistency(old_size, new_size, bytes.fromhex(CT_ROOTS[old_size]), bytes.fromhex(CT_ROOTS[new_size]), proof)


# --- Every size up to 300 ---


def test_root_of_is_the_rfc_tree_hash_for_every_size_up_to_300() -> None:
    for size in range(N + 1):
        assert root_of(HASHES[:size]) == root(size), size


def test_generated_proofs_are_the_rfc_recursions_for_every_size_up_to_300() -> None:
    for size in range(1, N + 1):
        for index in range(size):
            assert inclusion_proof(index, size, mth) == rfc_path(index, 0, size), (index, size)
        for old_size in range(1, size):
            assert consistency_proof(old_size, size, mth) == rfc_subproof(old_size, 0, size, True), (old_size, size)


def test_accepts_every_valid_inclusion_proof_up_to_300() -> None:
    checked = 0
    for size in range(1, N + 1):
        tree_root = root(size)
        for index in range(size):
            verify_inclusion(HASHES[index], index, size, inclusion_proof(index, size, mth), tree_root)
            checked += 1
    assert checked == N * (N + 1) // 2


def test_accepts_every_valid_consistency_proof_up_to_300() -> None:
    checked = 0
    for size in range(N + 1):
        new_root = root(size)
        for old_size in range(size + 1):
            verify_consistency(old_size, size, root(old_size), new_root, consistency_proof(old_size, size, mth))
            checked += 1
    assert checked == (N + 1) * (N + 2) // 2


def proof_ranges_up_to_300() -> set[tuple[int, int]]:
    ranges: set[tuple[int, int]] = set()
    for size in range(1, N + 1):
        for index in range(size):
            ranges.update(inclusion_ranges(index, size))
        for old_size in range(size + 1):
            ranges.update(consistency_ranges(old_size, size))
    return ranges


def test_every_proof_range_folds_from_its_aligned_pieces() -> None:
    for start, end in proof_ranges_up_to_300():
        pieces = aligned_pieces(start, end)
        levels = [level for level, _ in pieces]
        assert levels == sorted(set(levels), reverse=True), (start, end)  # shrinking: the RFC's left-heavy split
        assert fold_pieces([mth(index << level, (index + 1) << level) for level, index in pieces]) == mth(start, end)


def test_aligned_pieces_are_perfect_aligned_subtrees_covering_the_range() -> None:
    for start in range(70):
        for end in range(start, 70):
            position = start
            for level, index in aligned_pieces(start, end):
                assert index << level == position, (start, end)
                position += 1 << level
            assert position == end


def test_the_empty_range_folds_to_the_empty_root() -> None:
    assert aligned_pieces(5, 5) == []
    assert fold_pieces([]) == EMPTY_ROOT


def test_aligned_pieces_refuses_a_reversed_range() -> None:
    with pytest.raises(ValueError):
        aligned_pieces(3, 2)


# --- An independent implementation: pymerkle 7 ---
# pymerkle hashes as RFC 9162 does (0x00 / 0x01 prefixes, split at the largest power of two below the size) and
# its inclusion path is the RFC's PATH preceded by the leaf hash. Its consistency proofs are not RFC 9162 PROOFs
# (an inclusion path of a boundary leaf with a mask marking the old tree's subtrees), so for those we compare the
# hash of every range we send with the root pymerkle computes for the same leaves.

SAMPLED_SIZES = sorted({*range(1, 33), 63, 64, 65, 128, 129, 255, 256, 257, 300})


@functools.cache
def pymerkle_tree(offset: int) -> pymerkle.InmemoryTree:
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for leaf in LEAVES[offset:]:
        tree.append_entry(leaf)
    return tree


def test_roots_equal_pymerkles_for_every_size_up_to_300() -> None:
    for size in range(1, N + 1):
        assert root_of(HASHES[:size]) == pymerkle_tree(0).get_root(size), size


def test_inclusion_proofs_equal_pymerkles_hash_for_hash() -> None:
    for size in SAMPLED_SIZES:
        for index in range(size):
            theirs = pymerkle_tree(0).prove_inclusion(index + 1, size).path  # pymerkle counts leaves from one
            assert theirs[0] == HASHES[index]
            assert inclusion_proof(index, size, mth) == theirs[1:], (index, size)


def test_consistency_proof_hashes_are_pymerkles_roots_of_the_same_leaves() -> None:
    def pymerkle_subtree(start: int, end: int) -> bytes:
        return bytes(pymerkle_tree(start).get_root(end - start))

    for size in SAMPLED_SIZES:
        for old_size in range(1, size):
            proof = consistency_proof(old_size, size, pymerkle_subtree)
            assert proof == consistency_proof(old_size, size, mth), (old_size, size)
            verify_consistency(
                old_size, size, pymerkle_tree(0).get_root(old_size), pymerkle_tree(0).get_root(size), proof
            )


# --- Mutations: every class rejected, across many (size, index) pairs ---

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
RANDOM = random.Random(17)


def flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8 % len(changed)] ^= 1 << (bit % 8)
    return bytes(changed)


InclusionVerifier = Callable[[bytes, int, int, Sequence[bytes], bytes], None]
ConsistencyVerifier = Callable[[int, int, bytes, bytes, Sequence[bytes]], None]


def inclusion_mutations(
    index: int, size: int, proof: list[bytes], tree_root: bytes
) -> list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]]:
    leaf = HASHES[index]
    cases: list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]] = [
        ("wrong leaf", (HASHES[(index + 1) % N], index, size, proof, tree_root)),
        ("unhashed leaf", (LEAVES[index], index, size, proof, tree_root)),
        ("leaf flipped", (flip(leaf, 0), index, size, proof, tree_root)),
        ("index + 1", (leaf, index + 1, size, proof, tree_root)),
        ("index - 1", (leaf, index - 1, size, proof, tree_root)),
        ("index ^ 2", (leaf, index ^ 2, size, proof, tree_root)),
        ("size * 2", (leaf, index, size * 2, proof, tree_root)),
        ("size // 2", (leaf, index, size // 2, proof, tree_root)),
        ("size + 1", (leaf, index, size + 1, proof, tree_root)),
        ("size - 1", (leaf, index, size - 1, proof, tree_root)),
        ("empty root", (leaf, index, size, proof, b"")),
        ("root of the empty tree", (leaf, index, size, proof, EMPTY_ROOT)),
        ("random root", (leaf, index, size, proof, RANDOM.randbytes(32))),
        ("root of another size", (leaf, index, size, proof, root(size % N + 1))),
        ("appended random hash", (leaf, index, size, [*proof, RANDOM.randbytes(32)], tree_root)),
        ("appended root", (leaf, index, size, [*proof, tree_root], tree_root)),
        ("appended empty element", (leaf, index, size, [*proof, b""], tree_root)),
        ("prepended random hash", (leaf, index, size, [SOME_HASH, *proof], tree_root)),
        ("prepended leaf", (leaf, index, size, [leaf, *proof], tree_root)),
        ("prepended empty element", (leaf, index, size, [b"", *proof], tree_root)),
    ]
    for position in range(len(proof)):
        for bit in (0, 8 * position + 3, 255):
            flipped = [*proof[:position], flip(proof[position], bit), *proof[position + 1 :]]
            cases.append((f"proof[{position}] bit {bit} flipped", (leaf, index, size, flipped, tree_root)))
        missing = proof[:position] + proof[position + 1 :]
        cases.append((f"proof[{position}] missing", (leaf, index, size, missing, tree_root)))
        cases.append(
            (f"proof[{position}] truncated", (leaf, index, size, [*proof[:position], proof[position][:31]], tree_root))
        )
    if len(proof) > 1:
        cases.append(("two elements swapped", (leaf, index, size, [proof[1], proof[0], *proof[2:]], tree_root)))
    return cases


def accepted_inclusion_mutations(verify: InclusionVerifier, index: int, size: int) -> list[str]:
    """The mutations of the valid proof of (index, size) that `verify` accepts; fails unless it accepts the proof."""
    proof, tree_root = inclusion_proof(index, size, mth), root(size)
    verify(HASHES[index], index, size, proof, tree_root)
    accepted = []
    for name, args in inclusion_mutations(index, size, proof, tree_root):
        try:
            verify(*args)
        except ProofError:
            continue
        accepted.append(name)
    return accepted


def consistency_mutations(
    old_size: int, new_size: int, proof: list[bytes]
) -> list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]]:
    old_root, new_root = root(old_size), root(new_size)
    cases: list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]] = [
        ("old size + 1", (old_size + 1, new_size, old_root, new_root, proof)),
        ("old size - 1", (old_size - 1, new_size, old_root, new_root, proof)),
        ("old size ^ 2", (old_size ^ 2, new_size, old_root, new_root, proof)),
        ("old size * 2", (old_size * 2, new_size, old_root, new_root, proof)),
        ("old size // 2", (old_size // 2, new_size, old_root, new_root, proof)),
        ("new size + 1", (old_size, new_size + 1, old_root, new_root, proof)),
        ("new size - 1", (old_size, new_size - 1, old_root, new_root, proof)),
        ("new size * 2", (old_size, new_size * 2, old_root, new_root, proof)),
        ("new size // 2", (old_size, new_size // 2, old_root, new_root, proof)),
        ("sizes swapped", (new_size, old_size, old_root, new_root, proof)),
        ("roots swapped", (old_size, new_size, new_root, old_root, proof)),
        ("empty old root", (old_size, new_size, b"", new_root, proof)),
        ("empty new root", (old_size, new_size, old_root, b"", proof)),
        ("old root of the empty tree", (old_size, new_size, EMPTY_ROOT, new_root, proof)),
        ("random old root", (old_size, new_size, RANDOM.randbytes(32), new_root, proof)),
        ("random new root", (old_size, new_size, old_root, RANDOM.randbytes(32), proof)),
        ("old root flipped", (old_size, new_size, flip(old_root, 7), new_root, proof)),
        ("new root flipped", (old_size, new_size, old_root, flip(new_root, 7), proof)),
        ("empty proof", (old_size, new_size, old_root, new_root, [])),
        ("appended random hash", (old_size, new_size, old_root, new_root, [*proof, SOME_HASH])),
        ("appended old root", (old_size, new_size, old_root, new_root, [*proof, old_root])),
        ("appended new root", (old_size, new_size, old_root, new_root, [*proof, new_root])),
        ("appended empty element", (old_size, new_size, old_root, new_root, [*proof, b""])),
        ("prepended random hash", (old_size, new_size, old_root, new_root, [SOME_HASH, *proof])),
        ("prepended old root", (old_size, new_size, old_root, new_root, [old_root, *proof])),
        ("prepended new root", (old_size, new_size, old_root, new_root, [new_root, *proof])),
        ("prepended proof[0]", (old_size, new_size, old_root, new_root, [proof[0], *proof])),
        ("prepended empty element", (old_size, new_size, old_root, new_root, [b"", *proof])),
    ]
    for position in range(len(proof)):
        for bit in (0, 8 * position + 4, 255):
            flipped = [*proof[:position], flip(proof[position], bit), *proof[position + 1 :]]
            cases.append((f"proof[{position}] bit {bit} flipped", (old_size, new_size, old_root, new_root, flipped)))
        missing = proof[:position] + proof[position + 1 :]
        cases.append((f"proof[{position}] missing", (old_size, new_size, old_root, new_root, missing)))
    if len(proof) > 1:
        swapped = [proof[1], proof[0], *proof[2:]]
        cases.append(("two elements swapped", (old_size, new_size, old_root, new_root, swapped)))
    return cases


def accepted_consistency_mutations(verify: ConsistencyVerifier, old_size: int, new_size: int) -> list[str]:
    """The mutations of the valid proof from old_size to new_size that `verify` accepts (it must accept the proof)."""
    proof = consistency_proof(old_size, new_size, mth)
    verify(old_size, new_size, root(old_size), root(new_size), proof)
    accepted = []
    for name, args in consistency_mutations(old_size, new_size, proof):
        try:
            verify(*args)
        except ProofError:
            continue
        accepted.append(name)
    return accepted


def sampled_indexes(size: int) -> list[int]:
    """Every index of the small trees; the edges and two random ones elsewhere."""
    if size <= 16:
        return list(range(size))
    return sorted({0, 1, size // 2, size - 2, size - 1, *RANDOM.sample(range(size), 2)})


# A proof binds a leaf to a root, not to a size: when the tree of size +/- 1 combines the same sibling hashes in the
# same left/right order, the RFC verifier computes the same root and must accept (nothing in the hashes tells the
# sizes apart); the signed checkpoint is what binds a size to its root. Those cases, and only those, are expected
# through; every other mutation is rejected.


def inclusion_shape(index: int, size: int) -> list[bool] | None:
    """Left/right for each sibling the verifier folds in, or None when there is no such leaf."""
    if not 0 <= index < size:
        return None
    return [start < index for start, _ in inclusion_ranges(index, size)]


def consistency_shape(old_size: int, new_size: int) -> tuple[bool, list[bool]] | None:
    """Whether the old root seeds the path, and for each hash whether it is part of the old tree."""
    if not 0 < old_size < new_size:
        return None
    return old_size & (old_size - 1) == 0, [end <= old_size for _, end in consistency_ranges(old_size, new_size)]


def indistinguishable_sizes(shape: Callable[[int, int], object], first: int, size: int, prefix: str) -> set[str]:
    return {
        f"{prefix}size {sign} 1"
        for sign, other in (("+", size + 1), ("-", size - 1))
        if shape(first, other) == shape(first, size)
    }


def test_inclusion_verifier_rejects_every_mutation() -> None:
    wrong: dict[tuple[int, int], set[str]] = {}
    checked = 0
    for size in range(1, N + 1):
        for index in sampled_indexes(size):
            accepted = set(accepted_inclusion_mutations(verify_inclusion, index, size))
            if accepted != indistinguishable_sizes(inclusion_shape, index, size, ""):
                wrong[index, size] = accepted
            checked += 1
    assert wrong == {}
    assert checked > 3 * N


def test_consistency_verifier_rejects_every_mutation() -> None:
    wrong: dict[tuple[int, int], set[str]] = {}
    checked = 0
    for size in range(2, N + 1):
        for old_size in sampled_indexes(size):
            if old_size == 0:
                continue
            accepted = set(accepted_consistency_mutations(verify_consistency, old_size, size))
            if accepted != indistinguishable_sizes(consistency_shape, old_size, size, "new "):
                wrong[old_size, size] = accepted
            checked += 1
    assert wrong == {}
    assert checked > 3 * N


def test_a_size_off_by_one_gets_through_only_where_the_proof_cannot_tell() -> None:
    # Leaf 0 folds [right, right] in trees of 3 and of 4 leaves; leaf 4 folds [left] in 5 but [right, left] in 6,
    # and leaf 6 folds [right, left, left] in 8 but [left, left] in 7.
    assert "size + 1" in accepted_inclusion_mutations(verify_inclusion, 0, 3)
    assert "size + 1" not in accepted_inclusion_mutations(verify_inclusion, 4, 5)
    assert "size - 1" not in accepted_inclusion_mutations(verify_inclusion, 6, 8)


# The mutation checks themselves catch planted weaknesses: each lax verifier below accepts valid proofs, and the
# helpers must name the mutations it lets through.


def test_the_inclusion_mutations_catch_a_verifier_that_checks_only_the_proof_length() -> None:
    def length_only(leaf: bytes, index: int, size: int, proof: Sequence[bytes], tree_root: bytes) -> None:
        if not (0 <= index < size and len(proof) == len(inclusion_ranges(index, size))):
            raise ProofError("no")

    accepted = set(accepted_inclusion_mutations(length_only, 5, 12))
    assert {"wrong leaf", "random root", "proof[0] bit 0 flipped", "two elements swapped"} <= accepted


def test_the_inclusion_mutations_catch_a_verifier_that_assumes_a_perfect_tree() -> None:
    def perfect_tree(leaf: bytes, index: int, size: int, proof: Sequence[bytes], tree_root: bytes) -> None:
        del size  # the classic bug: the index bits alone say left or right, whatever the size
        value = leaf
        for position, sibling in enumerate(proof):
            value = node_hash(sibling, value) if index >> position & 1 else node_hash(value, sibling)
        if value != tree_root:
            raise ProofError("no")

    accepted = set(accepted_inclusion_mutations(perfect_tree, 5, 16))
    assert {"size * 2", "size + 1", "size - 1"} <= accepted


def test_the_consistency_mutations_catch_a_verifier_that_ignores_the_old_root() -> None:
    def new_root_only(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
        del old_root
        verify_consistency(old_size, new_size, root(old_size), new_root, proof)

    accepted = accepted_consistency_mutations(new_root_only, 6, 13)
    assert {"random old root", "old root flipped", "old root of the empty tree"} <= set(accepted)


# --- Edge cases ---


def test_a_tree_of_one_leaf_has_an_empty_path_and_the_leaf_hash_as_root() -> None:
    assert inclusion_ranges(0, 1) == []
    assert root_of([HASHES[0]]) == HASHES[0]
    verify_inclusion(HASHES[0], 0, 1, [], HASHES[0])


@pytest.mark.parametrize(("index", "size"), [(0, 0), (3, 3), (4, 3), (-1, 3)])
def test_there_is_no_inclusion_proof_for_a_leaf_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="is not in a tree"):
        inclusion_ranges(index, size)
    with pytest.raises(ProofError, match="is not in a tree"):
        verify_inclusion(HASHES[0], index, size, [], EMPTY_ROOT)


@pytest.mark.parametrize(("old_size", "new_size"), [(3, 2), (1, 0), (-1, 4)])
def test_there_is_no_consistency_proof_to_a_smaller_tree(old_size: int, new_size: int) -> None:
    with pytest.raises(ValueError, match="cannot be a prefix"):
        consistency_ranges(old_size, new_size)
    with pytest.raises(ProofError, match="cannot be a prefix"):
        verify_consistency(old_size, new_size, root(max(old_size, 0)), root(max(new_size, 0)), [])


def test_a_tree_is_consistent_with_itself_by_an_empty_proof_only_when_the_roots_agree() -> None:
    assert consistency_ranges(7, 7) == []
    verify_consistency(7, 7, root(7), root(7), [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="different roots"):
        verify_consistency(7, 7, root(7), root(6), [])
    with pytest.raises(ProofError, match="needs exactly 0"):
        verify_consistency(7, 7, root(7), root(7), [root(7)])
    with pytest.raises(ProofError, match="root of the empty tree"):
        verify_consistency(0, 0, SOME_HASH, SOME_HASH, [])


def test_every_tree_extends_the_empty_one_by_an_empty_proof() -> None:
    assert consistency_ranges(0, 9) == []
    verify_consistency(0, 9, EMPTY_ROOT, root(9), [])
    with pytest.raises(ProofError, match="root of the empty tree"):
        verify_consistency(0, 9, root(1), root(9), [])
    with pytest.raises(ProofError, match="needs exactly 0"):
        verify_consistency(0, 9, EMPTY_ROOT, root(9), [EMPTY_ROOT])
    with pytest.raises(ProofError, match="not a 32-byte"):
        verify_consistency(0, 9, EMPTY_ROOT, b"", [])


def test_failures_say_what_failed() -> None:
    proof = inclusion_proof(5, 12, mth)
    with pytest.raises(ProofError, match=r"inclusion proof of leaf 5 in a tree of 12 leaves leads to root [0-9a-f]+"):
        verify_inclusion(HASHES[6], 5, 12, proof, root(12))
    with pytest.raises(ProofError, match=r"has 5 hashes; it needs exactly 4"):
        verify_inclusion(HASHES[5], 5, 12, [*proof, SOME_HASH], root(12))
    with pytest.raises(ProofError, match=r"hash 1 of the inclusion proof .* is not a 32-byte"):
        verify_inclusion(HASHES[5], 5, 12, [proof[0], b"x", *proof[2:]], root(12))
    with pytest.raises(ProofError, match=r"leads to old root"):
        verify_consistency(5, 12, root(4), root(12), consistency_proof(5, 12, mth))
    with pytest.raises(ProofError, match=r"leads to new root"):
        verify_consistency(5, 12, root(5), root(11), consistency_proof(5, 12, mth))


# --- Large trees: generation is O(log n) ---


@pytest.mark.parametrize("size", [1_000_000, 2**20, 2**20 + 1, 2**40 + 12345, 2**62 - 1])
def test_proofs_of_large_trees_ask_for_a_logarithmic_number_of_subtrees(size: int) -> None:
    calls: list[tuple[int, int]] = []

    def subtree(start: int, end: int) -> bytes:
        assert 0 <= start < end <= size
        levels = [level for level, _ in aligned_pieces(start, end)]
        assert levels == sorted(set(levels), reverse=True)
        calls.append((start, end))
        return SOME_HASH

    depth = (size - 1).bit_length()
    for index in (0, 1, size // 3, size - 2, size - 1):
        calls.clear()
        assert len(inclusion_proof(index, size, subtree)) == len(calls) <= depth
    for old_size in (1, 2, size // 3, size - 2, size - 1):
        calls.clear()
        assert len(consistency_proof(old_size, size, subtree)) == len(calls) <= 2 * depth


def test_verifies_proofs_in_a_tree_of_a_million_leaves() -> None:
    # The leaves repeat with a period of 256, so an aligned perfect subtree's hash depends on its level and its
    # position within the period only: every subtree of the million-leaf tree is cheap to compute.
    size, period = 1_000_000, 256

    @functools.cache
    def perfect(level: int, index: int) -> bytes:
        if level == 0:
            return HASHES[index % period]
        index %= max(1, period >> level)
        return node_hash(perfect(level - 1, 2 * index), perfect(level - 1, 2 * index + 1))

    def subtree(start: int, end: int) -> bytes:
        return fold_pieces([perfect(level, index) for level, index in aligned_pieces(start, end)])

    tree_root = subtree(0, size)
    for index in (0, 123_456, size - 1):
        verify_inclusion(HASHES[index % period], index, size, inclusion_proof(index, size, subtree), tree_root)
    verify_consistency(654_321, size, subtree(0, 654_321), tree_root, consistency_proof(654_321, size, subtree))
    with pytest.raises(ProofError):
        verify_inclusion(HASHES[1], 123_456, size, inclusion_proof(123_456, size, subtree), tree_root)
