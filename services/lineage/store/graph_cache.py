"""Each project's "derived from" graph held in memory, brought up to date before every traversal.

Nothing ever invalidates an entry: the cache only grows. Before a traversal it reads, with one indexed query, the
project's versions (and their edges) with ids above the highest id it has seen, its watermark. That is exact, not
eventually consistent, because of three facts the rest of the store keeps:
- edges are immutable (triggers refuse UPDATE and DELETE) and are written in the transaction that creates their
  downstream version, so a visible version always comes with all of its edges, and never gains one later;
- edges never cross projects (the domain refuses an upstream in another project), so a project's graph is closed;
- writes to a project are serialized by a database lock (transactions.py) and ids come from the database, so a
  project's version ids become visible in increasing order: what a reader sees is a prefix, and nothing can later
  appear below the watermark.
The lock is in the database, so the same holds for a replica: another process's writes are read at the next
traversal, never missed. tests/lineage/test_graph_cache.py checks each of these.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from services.common.db import fetch_plain
from services.lineage import tables as t
from services.lineage.domain.graph import bfs_depths


@dataclass
class _Adjacency:
    """One project's graph (version ids), complete up to `watermark`."""

    children: dict[int, list[int]] = field(default_factory=dict)
    # Built on the first upstream traversal from the edges read until then (most traversals go downstream).
    parents: dict[int, list[int]] = field(default_factory=dict)
    # Flat (upstream, version, upstream, version, ...): ints only, nothing for the garbage collector to trace.
    unindexed: list[int] = field(default_factory=list)
    watermark: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class GraphCache:
    def __init__(self) -> None:
        self._graphs: dict[str, _Adjacency] = {}
        self._graphs_lock = threading.Lock()

    def depths(self, connection: sa.Connection, project: str, root: int, downstream: bool) -> dict[int, int]:
        """The shortest depth of every version in `root`'s downstream (or upstream) closure, as of now."""
        graph = self._adjacency(project)
        with graph.lock:
            self._catch_up(connection, project, graph)
            if downstream:
                return bfs_depths(root, graph.children)
            if graph.unindexed:
                parents_of = graph.parents.setdefault
                pending = graph.unindexed
                for upstream, version in zip(pending[0::2], pending[1::2], strict=True):
                    parents_of(version, []).append(upstream)
                graph.unindexed = []
            return bfs_depths(root, graph.parents)

    def reach(self, connection: sa.Connection, project: str, roots: Sequence[int], below: int) -> list[int]:
        """Every version downstream of any of `roots`, in id order (a root too when another root reaches it), as the
        database holds the project's versions with ids below `below`.

        Meant for a write transaction that holds the project's lock and has written a version with id `below`
        (whose edges it may not have written yet): the catch-up reads only ids below it, so the transaction's own
        uncommitted rows never enter the cache, where a rollback would leave a version that never existed."""
        graph = self._adjacency(project)
        with graph.lock:
            self._catch_up(connection, project, graph, below)
            children = graph.children
            seen: set[int] = set()
            frontier = list(roots)
            while frontier:
                found = []
                for node in frontier:
                    for child in children.get(node, ()):
                        if child not in seen:
                            seen.add(child)
                            found.append(child)
                frontier = found
        return sorted(seen)

    def catch_up(self, connection: sa.Connection, project: str) -> int:
        """Reads the project's versions created since the last read; returns how many there were."""
        graph = self._adjacency(project)
        with graph.lock:
            return self._catch_up(connection, project, graph)

    def watermark(self, project: str) -> int:
        return self._adjacency(project).watermark

    def _catch_up(self, connection: sa.Connection, project: str, graph: _Adjacency, below: int | None = None) -> int:
        # Two statements, each with its own snapshot on PostgreSQL: first the newest version id to read up to, then
        # the edges of the versions up to it. A version committed in between has a higher id (the project's ids
        # become visible in increasing order), so it is left for the next catch-up, with its edges.
        versions = sa.select(sa.func.count(), sa.func.max(t.versions.c.id)).where(
            t.versions.c.project == project, t.versions.c.id > graph.watermark
        )
        if below is not None:
            versions = versions.where(t.versions.c.id < below)
        count, newest = connection.execute(versions).one()
        if not count:
            return 0
        edges = fetch_plain(
            connection,
            sa.select(t.edges.c.upstream_id, t.edges.c.downstream_id)
            .join(t.versions, t.versions.c.id == t.edges.c.downstream_id)
            .where(t.versions.c.project == project, t.versions.c.id > graph.watermark, t.versions.c.id <= newest),
        )
        children_of = graph.children.setdefault
        for upstream, version in edges:
            children_of(upstream, []).append(version)
        graph.unindexed.extend(itertools.chain.from_iterable(edges))
        graph.watermark = int(newest)
        return int(count)

    def _adjacency(self, project: str) -> _Adjacency:
        with self._graphs_lock:
            return self._graphs.setdefault(project, _Adjacency())
