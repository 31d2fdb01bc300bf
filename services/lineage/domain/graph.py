"""Breadth-first pages over a lineage closure.

The store gives the closure's depths (breadth-first over the project's adjacency); this module orders the nodes by
(shortest depth, creation order) and cuts pages by size and by levels, so a page never ends silently: whatever is
left is announced with truncated=true and a cursor.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence

from services.common.errors import FieldViolation, InvalidArgument

DEFAULT_NODES = 1000
MAX_NODES = 10_000


def adjacency_of(edges: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    adjacency: dict[int, list[int]] = {}
    for source, target in edges:
        adjacency.setdefault(source, []).append(target)
    return adjacency


def bfs_depths(root: int, adjacency: Mapping[int, Sequence[int]]) -> dict[int, int]:
    """Shortest hop count from root for every node reachable in `adjacency` (node -> next nodes); root excluded.
    Each node is visited once, so diamonds count once and a cycle could not loop. Level by level: each level's
    nodes are found from the previous level's, all at one depth."""
    depths = {root: 0}
    level, depth = [root], 0
    get = adjacency.get
    while level:
        depth += 1
        found = []
        for node in level:
            for target in get(node, ()):
                if target not in depths:
                    depths[target] = depth
                    found.append(target)
        level = found
    del depths[root]
    return depths


def page_limits(page_size: int, max_depth: int) -> tuple[int, int]:
    problems = []
    if page_size < 0:
        problems.append(FieldViolation("page_size", "must be >= 0"))
    if max_depth < 0:
        problems.append(FieldViolation("max_depth", "must be >= 0 (0 = no limit)"))
    if problems:
        reason = "PAGE_SIZE_INVALID" if page_size < 0 else "MAX_DEPTH_INVALID"
        raise InvalidArgument(reason, "page_size and max_depth must not be negative", violations=problems)
    return min(page_size or DEFAULT_NODES, MAX_NODES), max_depth


def cut_page(
    depths: Mapping[int, int], after: tuple[int, int], page_size: int, max_depth: int
) -> tuple[list[tuple[int, int]], bool, tuple[int, int] | None]:
    """(depth, node) pairs of one page, whether more remain, and the cursor of the last pair returned.

    Pairs are ordered as one integer each, depth << 64 | node (nodes are database ids, 0 <= id < 2**63, so the
    integers order as the pairs do): a closure can hold 100,000 nodes, and integers sort about twice as fast as
    tuples and give the garbage collector nothing to trace. A small page picks its smallest keys without sorting
    all of them."""
    bound = (after[0] << _NODE_BITS) | after[1]
    remaining = [key for node, depth in depths.items() if (key := (depth << _NODE_BITS) | node) > bound]
    if page_size * 16 < len(remaining):
        ordered = heapq.nsmallest(page_size, remaining)
    else:
        remaining.sort()
        ordered = remaining
    level_limit = after[0] + max_depth if max_depth else None
    page: list[tuple[int, int]] = []
    for key in ordered:
        pair = (key >> _NODE_BITS, key & _NODE_MASK)
        if len(page) == page_size or (level_limit is not None and pair[0] > level_limit):
            break
        page.append(pair)
    truncated = len(page) < len(remaining)
    cursor = page[-1] if page else after
    return page, truncated, cursor if truncated else None


_NODE_BITS = 64
_NODE_MASK = (1 << _NODE_BITS) - 1
