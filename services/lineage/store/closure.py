"""Closure queries: the depths of a version's downstream or upstream closure, and display data for a page of it."""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa

from services.lineage import tables as t
from services.lineage.domain.model import Health, LineageNodeInfo, Status
from services.lineage.domain.names import VersionName
from services.lineage.store.graph_cache import GraphCache
from services.lineage.store.reads import version_id
from services.lineage.store.rows import principal, version_query
from services.lineage.store.transactions import Transactions


class ClosureStore:
    def __init__(self, tx: Transactions, cache: GraphCache) -> None:
        self._tx = tx
        self._cache = cache

    def closure_depths(self, name: VersionName, downstream: bool) -> tuple[int, dict[int, int]]:
        """The root's id and the shortest depth of every version in its downstream (or upstream) closure,
        traversed on the in-memory graph (graph_cache.py says why that is exact)."""
        with self._tx.read() as connection:
            root = version_id(connection, name)
            return root, self._cache.depths(connection, name.project, root, downstream)

    def closure_ids_by_cte(self, name: VersionName, downstream: bool) -> set[int]:
        """The same closure found by recursive CTE in the database (what propagation uses); for cross-checks."""
        step_from, step_to = ("upstream_id", "downstream_id") if downstream else ("downstream_id", "upstream_id")
        with self._tx.read() as connection:
            root = version_id(connection, name)
            rows = connection.execute(
                sa.text(
                    f"WITH RECURSIVE reach(id) AS (SELECT CAST(:root AS BIGINT) UNION"
                    f" SELECT e.{step_to} FROM lineage_edges e JOIN reach r ON e.{step_from} = r.id)"
                    " SELECT id FROM reach"
                ),
                {"root": root},
            ).scalars()
            return {int(r) for r in rows} - {root}

    def node_infos(self, ids_and_depths: Sequence[tuple[int, int]]) -> list[LineageNodeInfo]:
        """Display data of a page of closure nodes, in the order given."""
        if not ids_and_depths:
            return []
        ids = [node for _, node in ids_and_depths]
        with self._tx.read() as connection:
            rows = {
                r.id: r
                for r in connection.execute(version_query(with_data=False).where(t.versions.c.id.in_(ids))).all()
            }
        infos = []
        for depth, node in ids_and_depths:
            row = rows[node]
            infos.append(
                LineageNodeInfo(
                    row.name,
                    depth,
                    Status(row.status),
                    Health(row.health),
                    tuple(json.loads(row.upstream_json)),
                    int(row.latest_number) == int(row.number),
                    principal(row.created_by_id, row.created_by_kind),
                )
            )
        return infos
