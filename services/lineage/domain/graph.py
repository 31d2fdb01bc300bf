"""Breadth-first pages over a lineage closure.

The store gives the closure's depths (breadth-first over the project's adjacency); this module orders the nodes by
(shortest depth, creation order) and cuts pages by size and by levels, so a page never ends silently: whatever is
left is announced with truncated=true and a cursor.
"""

from __future__ import annotations

from collections import deque
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
    Each node is visited once, so diamonds count once and a cycle could not loop."""
    depths = {root: 0}
    queue = deque([root])
    while queue:
        node = queue.popleft()
        next_depth = depths[node] + 1
        for target in adjacency.get(node, ()):
            if target not in depths:
                depths[target] = next_depth
                queue.append(target)
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
    """(depth, node) pairs of one page, whether more remain, and the cursor of the last pair returned."""
    ordered: Sequence[tuple[int, int]] = sorted((d, n) for n, d in depths.items() if (d, n) > after)
    level_limit = after[0] + max_depth if max_depth else None
    page: list[tuple[int, int]] = []
    for pair in ordered:
        if len(page) == page_size or (level_limit is not None and pair[0] > level_limit):
            break
        page.append(pair)
    truncated = len(page) < len(ordered)
    cursor = page[-1] if page else after
    return page, truncated, cursor if truncated else None
