"""RFC 9162 section 2.1 Merkle trees: hashes, proof generation and proof verification (pure, no storage).

A tree over leaves D[0:n] has root MTH(D[n]); leaf hashes are SHA256(0x00||leaf) and interior nodes
SHA256(0x01||left||right), so a leaf can never be passed off as a node (RFC 9162 section 2.1.1).

Generation works on leaf ranges rather than hashes: `inclusion_ranges` and `consistency_ranges` name the [start,
end) ranges whose MTH make up PATH(m, D[n]) and PROOF(m, D[n]) in RFC order, so the caller fetches each hash
from wherever it keeps them (`inclusion_proof` / `consistency_proof` take that lookup as a `subtree` callback).
Each range is the left-aligned subtree the RFC recursion splits off: `aligned_pieces` breaks it into perfect
aligned subtrees and `fold_pieces` rebuilds its MTH from theirs, which is how a store indexing perfect subtrees
answers. Generation walks the tree from the root once: O(log n) ranges, no recursion.

Edge cases, decided the way RFC 9162 and the transparency-dev verifiers do:
- MTH of the empty tree is SHA256() (`EMPTY_ROOT`); there is no inclusion proof in it (index >= size fails).
- A tree of one leaf has an empty inclusion path: the root is the leaf hash.
- PROOF(m, D[n]) is defined for 0 < m < n. For m == n the proof is empty and the roots must be equal; for m == 0
  the proof is empty (every tree extends the empty one) and the old root must be `EMPTY_ROOT` (transparency-dev
  ignores it; a checkpoint of the empty tree with another root is wrong); m > n or a negative size has no proof.
  The RFC verifier rejects an empty consistency path, so these cases are decided before it runs.
- Verifiers first check every hash is 32 bytes and the proof has exactly the length the sizes imply, then run
  the RFC 9162 section 2.1.3.2 / 2.1.4.2 algorithms unchanged (their own length checks included).

A proof binds a leaf (or an old root) to a root, not to a tree size: where the tree one leaf larger or smaller folds
the same sibling hashes in the same order, the same proof verifies for that size too, and no verifier can tell
(tests/unit/ledger/test_merkle.py pins down exactly when). The size is bound to the root by the signed checkpoint,
so always verify against the (size, root) pair of one verified checkpoint, never a size from elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Subtree = Callable[[int, int], bytes]
"""Returns MTH(D[start:end]) for one of the ranges a proof names."""


class ProofError(ValueError):
    """A proof that does not prove what it claims; the message says which check failed."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of a whole tree from its leaf hashes in order: the reference, O(n) time and O(log n) memory.

    Leaves are merged into perfect subtrees as they arrive (a binary counter); at the end those subtrees are
    exactly `aligned_pieces(0, n)`, largest first, and their right fold is the root.
    """
    stack: list[tuple[int, bytes]] = []
    for hashed in leaf_hashes:
        level, value = 0, hashed
        while stack and stack[-1][0] == level:
            value = node_hash(stack.pop()[1], value)
            level += 1
        stack.append((level, value))
    return fold_pieces([value for _, value in stack])


def aligned_pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect aligned subtrees covering [start, end) left to right, greedily largest, as (level, index).

    A piece (level, index) covers leaves [index * 2**level, (index + 1) * 2**level). Every range a proof names
    starts at a multiple of a power of two at least its width, so its pieces shrink left to right and
    `fold_pieces` of their hashes is its MTH. At most 2 * log2(end - start) pieces.
    """
    if not 0 <= start <= end:
        raise ValueError(f"[{start}, {end}) is not a range of leaves")
    pieces: list[tuple[int, int]] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        pieces.append((level, start >> level))
        start += 1 << level
    return pieces


def fold_pieces(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its `aligned_pieces`, left to right: node(p1, node(p2, ... pk)).

    No pieces is the empty range, whose MTH is `EMPTY_ROOT`.
    """
    if not hashes:
        return EMPTY_ROOT
    value = hashes[-1]
    for piece in reversed(hashes[:-1]):
        value = node_hash(piece, value)
    return value


def _split(width: int) -> int:
    """The largest power of two strictly below `width` (>= 2): where RFC 9162 splits a tree."""
    return 1 << ((width - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose MTH form PATH(index, D[size]), leaf side first (RFC 9162 section 2.1.3.1).

    Raises ValueError when there is no such leaf (index < 0 or index >= size, including size 0).
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((start, middle))
            start = middle
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The ranges whose MTH form PROOF(old_size, D[new_size]), in RFC 9162 section 2.1.4.1 order.

    Empty when old_size == new_size or old_size == 0 (nothing to prove); ValueError when old_size > new_size or
    old_size < 0.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"a tree of {old_size} leaves cannot be a prefix of one of {new_size} leaves")
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    start, end, remaining = 0, new_size, old_size  # SUBPROOF(remaining, D[start:end], whole)
    whole = True
    while remaining != end - start:
        middle = start + _split(end - start)
        if remaining <= middle - start:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((start, middle))
            remaining -= middle - start
            start = middle
            whole = False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def inclusion_proof(index: int, size: int, subtree: Subtree) -> list[bytes]:
    return [subtree(start, end) for start, end in inclusion_ranges(index, size)]


def consistency_proof(old_size: int, new_size: int, subtree: Subtree) -> list[bytes]:
    return [subtree(start, end) for start, end in consistency_ranges(old_size, new_size)]


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte SHA-256 hash")


def _check_proof_hashes(proof: Sequence[bytes], expected: int, what: str) -> None:
    if len(proof) != expected:
        raise ProofError(f"{what} has {len(proof)} hashes; it needs exactly {expected}")
    for position, value in enumerate(proof):
        _check_hash(value, f"hash {position} of the {what}")


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Checks that the leaf hashed to `leaf_hash` is leaf `index` of the tree of `size` leaves with `root`.

    RFC 9162 section 2.1.3.2; raises ProofError saying what failed.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    what = f"inclusion proof of leaf {index} in a tree of {size} leaves"
    _check_hash(leaf_hash, "the leaf hash")
    _check_hash(root, "the root")
    _check_proof_hashes(proof, len(inclusion_ranges(index, size)), what)
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError(f"{what} is longer than the path to the root")
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
        raise ProofError(f"{what} is shorter than the path to the root")
    if not hmac.compare_digest(r, root):
        raise ProofError(f"{what} leads to root {r.hex()}, not to {root.hex()}")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Checks that the tree of `new_size` leaves with `new_root` extends the one of `old_size` with `old_root`.

    RFC 9162 section 2.1.4.2 for 0 < old_size < new_size; the other cases as the module docstring says. Raises
    ProofError saying what failed.
    """
    if not 0 <= old_size <= new_size:
        raise ProofError(f"a tree of {old_size} leaves cannot be a prefix of one of {new_size} leaves")
    what = f"consistency proof from {old_size} to {new_size} leaves"
    _check_hash(old_root, "the old root")
    _check_hash(new_root, "the new root")
    _check_proof_hashes(proof, len(consistency_ranges(old_size, new_size)), what)
    if old_size == 0 and not hmac.compare_digest(old_root, EMPTY_ROOT):
        raise ProofError(f"the root of the empty tree is {EMPTY_ROOT.hex()}, not {old_root.hex()}")
    if old_size == new_size:
        if not hmac.compare_digest(old_root, new_root):
            raise ProofError(f"two trees of {old_size} leaves have different roots")
        return
    if old_size == 0:
        return
    if not proof:
        raise ProofError(f"{what} is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # the old tree is a whole subtree of the new one: its root is in the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"{what} is longer than the path to the new root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"{what} is shorter than the path to the new root")
    if not hmac.compare_digest(fr, old_root):
        raise ProofError(f"{what} leads to old root {fr.hex()}, not to {old_root.hex()}")
    if not hmac.compare_digest(sr, new_root):
        raise ProofError(f"{what} leads to new root {sr.hex()}, not to {new_root.hex()}")
