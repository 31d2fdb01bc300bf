"""Graph checks over a plain mapping of node -> the nodes it points to: lineage refuses a policy whose types require
each other in a cycle, and the recipe driver refuses a recipe whose stages do, with the same finder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle in `graph`, named node by node (first node repeated at the end), or None. Nodes are tried in sorted
    order, so the same graph always names the same cycle."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None
