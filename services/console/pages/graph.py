"""A version's lineage as a picture: what it was derived from on the left, what was derived from it on the right.

Nodes are laid out in columns by signed depth (upstream -k .. the version at 0 .. downstream +k), in the order
lineage returned them; edges follow each node's own upstream references. The picture is drawn by the console as
inline SVG from these numbers and names (escaped by the templates), never from artifact content.
"""

from __future__ import annotations

from dataclasses import dataclass

from custody.lineage.v1 import lineage_pb2
from services.common.resource_names import VERSION_NAME
from services.console.upstream import PersonCalls

# At most this many nodes each way; the page says when the closure is larger.
MAX_NODES = 60
NODE_WIDTH, NODE_HEIGHT = 190, 46
COLUMN_GAP, ROW_GAP, MARGIN = 60, 16, 10


@dataclass(frozen=True)
class GraphNode:
    name: str
    label: str
    sublabel: str
    status: str
    stale: bool
    root: bool
    x: int
    y: int


@dataclass(frozen=True)
class GraphEdge:
    path: str


@dataclass(frozen=True)
class LineageGraph:
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    width: int
    height: int
    node_width: int
    node_height: int
    truncated: bool
    upstream_total: int
    downstream_total: int


@dataclass(frozen=True)
class _Placed:
    node: lineage_pb2.LineageNode
    column: int


async def lineage_graph(calls: PersonCalls, version: lineage_pb2.Version) -> LineageGraph:
    up = await calls.call(
        "lineage", "GetUpstream", lineage_pb2.GetUpstreamRequest(name=version.name, page_size=MAX_NODES)
    )
    down = await calls.call(
        "lineage", "GetDownstream", lineage_pb2.GetDownstreamRequest(name=version.name, page_size=MAX_NODES)
    )
    root = lineage_pb2.LineageNode(
        name=version.name,
        depth=0,
        status=version.status.status,
        health=version.health.health,
        upstream=list(version.upstream),
        latest=version.latest,
    )
    placed = [_Placed(n, -n.depth) for n in up.nodes] + [_Placed(root, 0)] + [_Placed(n, n.depth) for n in down.nodes]
    return layout(placed, version.name, up.truncated or down.truncated, up.total_size, down.total_size)


def layout(placed: list[_Placed], root: str, truncated: bool, up_total: int, down_total: int) -> LineageGraph:
    columns = sorted({p.column for p in placed})
    first = columns[0]
    rows: dict[int, int] = {}
    positions: dict[str, tuple[int, int]] = {}
    nodes = []
    for p in placed:
        if p.node.name in positions:
            continue
        row = rows.get(p.column, 0)
        rows[p.column] = row + 1
        x = MARGIN + (p.column - first) * (NODE_WIDTH + COLUMN_GAP)
        y = MARGIN + row * (NODE_HEIGHT + ROW_GAP)
        positions[p.node.name] = (x, y)
        label, sublabel = version_label(p.node.name)
        nodes.append(
            GraphNode(
                name=p.node.name,
                label=label,
                sublabel=sublabel,
                status=lineage_pb2.Status.Name(p.node.status).removeprefix("STATUS_").lower(),
                stale=p.node.health == lineage_pb2.HEALTH_STALE,
                root=p.node.name == root,
                x=x,
                y=y,
            )
        )
    edges = []
    for p in placed:
        if p.node.name not in positions:
            continue
        tx, ty = positions[p.node.name]
        for upstream in p.node.upstream:
            if upstream in positions:
                sx, sy = positions[upstream]
                edges.append(GraphEdge(_curve(sx + NODE_WIDTH, sy + NODE_HEIGHT // 2, tx, ty + NODE_HEIGHT // 2)))
    width = 2 * MARGIN + len(columns) * NODE_WIDTH + (len(columns) - 1) * COLUMN_GAP
    height = 2 * MARGIN + max(rows.values()) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    return LineageGraph(nodes, edges, width, height, NODE_WIDTH, NODE_HEIGHT, truncated, up_total, down_total)


def version_label(name: str) -> tuple[str, str]:
    """("svg_candidate v2", "brief-candidate-1") for a version name; the name itself when it is not one."""
    match = VERSION_NAME.match(name)
    if match is None:
        return name, ""
    return f"{match['type']} v{match['number']}", match["entity"]


def _curve(x1: int, y1: int, x2: int, y2: int) -> str:
    middle = (x1 + x2) // 2
    return f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"
