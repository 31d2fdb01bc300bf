"""The Merkle tree over an authority's leaves, for roots and proofs at any size up to the current one.

Memory holds the hashes of perfect subtrees of 256 leaves and larger (a "tile" of 256 leaves, as transparency-dev
Tessera lays out its trees), plus the leaf hashes of the last, incomplete tile: about 64 bytes per 256 leaves,
whatever the tree's size. Subtrees inside a complete tile are recomputed from its 256 leaf hashes, read from the
database in one range query. The tree only grows by catching up on leaves appended since (the database is
append-only), so a root once computed here is never recomputed from rows that may since have been rewritten:
proofs built from rewritten rows fail verification against the checkpoints this tree signed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa

from services.common.ledger import merkle
from services.common.ledger.store import LedgerRows

TILE_LEVEL = 8
TILE_WIDTH = 1 << TILE_LEVEL
_CATCH_UP_BATCH = 16 * TILE_WIDTH


class LedgerGap(Exception):
    """The database is missing a leaf index below its maximum: leaves were deleted out of band."""


class LedgerTree:
    def __init__(self, engine: sa.Engine, rows: LedgerRows) -> None:
        self._engine = engine
        self._rows = rows
        self._lock = threading.RLock()
        # _levels[k] holds the perfect subtrees of 2**(TILE_LEVEL + k) leaves, left to right.
        self._levels: list[list[bytes]] = []
        self._tail: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def catch_up(self) -> int:
        """Adds the leaves committed since the last call; returns the new size.

        The size is read first: every leaf below a committed leaf committed before it (appends hold the ledger
        lock until they commit), so a leaf missing below that size was deleted. Reading it after the leaves would
        count leaves committed in between as a gap."""
        with self._lock, self._engine.connect() as connection:
            target = self._rows.size(connection)
            while self._size < target:
                end = min(self._size + _CATCH_UP_BATCH, target)
                for digest in self._rows.hashes(connection, self._size, end):
                    self._add(digest)
                if self._size < end:
                    raise LedgerGap(f"leaf {self._size} is missing from the database but later leaves exist")
            return self._size

    def root(self, size: int) -> bytes:
        self._check_size(size)
        return self.subtree(0, size) if size else merkle.EMPTY_ROOT

    def inclusion(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        return merkle.inclusion_proof(index, size, self._reader())

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        self._check_size(new_size)
        return merkle.consistency_proof(old_size, new_size, self._reader())

    def subtree(self, start: int, end: int) -> bytes:
        return self._reader()(start, end)

    def _reader(self) -> Callable[[int, int], bytes]:
        """MTH(D[start:end]) for one proof: complete tiles are read once each, then kept for the proof."""
        tiles: dict[int, list[bytes]] = {}

        def perfect(level: int, index: int) -> bytes:
            if level >= TILE_LEVEL:
                return self._levels[level - TILE_LEVEL][index]
            first = index << level
            tile = first >> TILE_LEVEL
            hashes = self._tile(tile, tiles)
            offset = first - (tile << TILE_LEVEL)
            return merkle.root_of(hashes[offset : offset + (1 << level)])

        def subtree(start: int, end: int) -> bytes:
            with self._lock:
                return merkle.fold_pieces([perfect(level, index) for level, index in merkle.aligned_pieces(start, end)])

        return subtree

    def _tile(self, tile: int, cache: dict[int, list[bytes]]) -> list[bytes]:
        if tile == self._size >> TILE_LEVEL:
            return self._tail
        if tile not in cache:
            start = tile << TILE_LEVEL
            with self._engine.connect() as connection:
                hashes = self._rows.hashes(connection, start, start + TILE_WIDTH)
            if len(hashes) != TILE_WIDTH:
                raise LedgerGap(f"leaves {start}..{start + TILE_WIDTH - 1} are incomplete in the database")
            cache[tile] = hashes
        return cache[tile]

    def _add(self, digest: bytes) -> None:
        self._tail.append(digest)
        self._size += 1
        if len(self._tail) < TILE_WIDTH:
            return
        node = merkle.root_of(self._tail)
        self._tail = []
        level = 0
        while True:
            if level == len(self._levels):
                self._levels.append([])
            nodes = self._levels[level]
            nodes.append(node)
            if len(nodes) % 2:
                return
            node = merkle.node_hash(nodes[-2], nodes[-1])
            level += 1

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size {size} is beyond the {self._size} leaves caught up")
