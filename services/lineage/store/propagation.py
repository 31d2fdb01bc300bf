"""Staleness propagation: in the transaction that creates an entity's new version, every version downstream of its
earlier versions that is still valid or confirmed_valid becomes stale (cause: the new version), with one history
row each, and with a ledger one leaf covering all of those rows (ledger_records.staleness_leaf).

Two implementations write the same rows and the same leaf; `Propagation` is the switch and `propagation_for` the
default (tests/lineage/test_propagation_paths.py runs both on random DAGs, on SQLite and PostgreSQL, and compares
every health row, every history row and the leaf):

- REFERENCE, every database: one recursive CTE (UNION, so cycle-safe and each version once) finds the closure in
  the database and stages the versions to mark, with the revision and health they have, in a temporary table; an
  INSERT ... SELECT writes their history rows from it, an UPDATE marks them by compare-and-set on their health,
  and with a ledger the staged rows are read back in version order for the leaf.
- CLOSURE_ARRAY, PostgreSQL's default: the closure is the project's in-memory graph (graph_cache.py) caught up
  inside this transaction, under the project's lock, to the versions below the new one, so it is the closure the
  CTE would find (no other write to the project can commit meanwhile, and this transaction's own version is left
  out). One statement then does everything else: the closure arrives as one array parameter, one UPDATE per
  staleable health marks the closure's versions still in that health (the compare-and-set; the health it matched
  is the history row's from_health), and the history rows are inserted from what those UPDATEs return. No
  temporary table, no second pass over the marked rows, and the planner knows the closure's size: hash joins for a
  big one, index lookups for a small one (the recursive CTE's estimate is a guess, a few hundred rows whatever the
  graph). With a ledger the INSERT returns the rows' per-row values, sorted here for the leaf.
  PostgreSQL only: it needs data-modifying CTEs and UPDATE ... FROM ... RETURNING inside them, which SQLite lacks.
  On the benchmark's 100,000-node DAG it marks the closure in about half the reference path's time
  (bench/results/lineage-postgresql.md).

Only versions still valid / confirmed_valid change (needs_revision and stale ones stay): the writes are a
compare-and-set on that state, which the project lock keeps from changing meanwhile.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from services.common.clock import to_us
from services.common.ledger.leaves import Leaf
from services.lineage import tables as t
from services.lineage.domain.model import STALEABLE, Health
from services.lineage.domain.names import EntityKey
from services.lineage.ledger_records import staleness_leaf
from services.lineage.store.graph_cache import GraphCache
from services.lineage.store.rows import Decision, decision_columns, entity_filter

# Above this many versions, the statement gets _WORK_MEM_MB of working memory per sort or hash.
_BIG_CLOSURE = 10_000
_WORK_MEM_MB = 64


class Propagation(enum.Enum):
    REFERENCE = "reference"
    CLOSURE_ARRAY = "closure_array"


def propagation_for(dialect: str) -> Propagation:
    """The default implementation on a database."""
    return Propagation.CLOSURE_ARRAY if dialect == "postgresql" else Propagation.REFERENCE


class Propagator:
    def __init__(self, dialect: str, cache: GraphCache, ledgered: bool, how: Propagation | None = None) -> None:
        self.how = how or propagation_for(dialect)
        if self.how is Propagation.CLOSURE_ARRAY and dialect != "postgresql":
            raise ValueError(f"{self.how.value} propagation needs PostgreSQL, not {dialect}")
        self._dialect = dialect
        self._cache = cache
        self._ledgered = ledgered

    def propagate(
        self, connection: sa.Connection, entity: EntityKey, new_id: int, new_name: str, decision: Decision
    ) -> tuple[int, Leaf | None]:
        """Marks every version downstream of the entity's versions other than `new_id` (this transaction's, whose
        edges are not written yet) stale, caused by it. Returns how many, and with a ledger the leaf recording
        every history row written (None when none was)."""
        params = {
            "stale": Health.STALE.value,
            "cause": new_id,
            "at": to_us(decision.at),
            **decision_columns(decision),
        }
        if self.how is Propagation.CLOSURE_ARRAY:
            marked, rows = self._closure_array(connection, entity, new_id, params)
        else:
            marked, rows = self._reference(connection, entity, new_id, params)
        if rows is None or not marked:
            return marked, None
        shared = {"health": params["stale"], "cause_id": new_id, "at_us": params["at"], **decision_columns(decision)}
        return marked, staleness_leaf(new_id, new_name, shared, rows)

    def _closure_array(
        self, connection: sa.Connection, entity: EntityKey, new_id: int, params: Mapping[str, Any]
    ) -> tuple[int, list[Any] | None]:
        roots = connection.execute(
            sa.select(t.versions.c.id).where(*entity_filter(entity), t.versions.c.id < new_id)
        ).scalars()
        closure = self._cache.reach(connection, entity.project, [int(r) for r in roots], new_id)
        if not closure:
            return 0, None
        if len(closure) > _BIG_CLOSURE:
            # The closure, the hash of the health rows and what the UPDATEs return stay in memory (the default 4 MB
            # spills a 100,000-version closure to temporary files); until this transaction ends.
            connection.exec_driver_sql(f"SET LOCAL work_mem = '{_WORK_MEM_MB}MB'")
        staleable = {f"h{i}": health.value for i, health in enumerate(STALEABLE)}
        marks = ", ".join(
            f"m{i} AS (UPDATE lineage_health h SET health = :stale, revision = h.revision + 1, cause_id = :cause,"
            " updated_at_us = :at, actor_id = :actor_id, actor_kind = :actor_kind, actor_roles = :actor_roles,"
            " rationale = :rationale, request_id = :request_id"
            f" FROM closure c WHERE h.version_id = c.id AND h.health = :{key} RETURNING h.version_id, h.revision)"
            for i, key in enumerate(staleable)
        )
        history = " UNION ALL ".join(
            f"SELECT m.version_id, m.revision, CAST(:{key} AS VARCHAR) AS from_health FROM m{i} m"
            for i, key in enumerate(staleable)
        )
        result = connection.execute(
            sa.text(
                # The text form of a bigint[] literal: one parameter the server parses in C, however long.
                "WITH closure AS (SELECT unnest(CAST(:ids AS BIGINT[])) AS id), "
                + marks
                + " INSERT INTO lineage_health_history (version_id, revision, from_health, health, cause_id, at_us,"
                " actor_id, actor_kind, actor_roles, rationale, request_id)"
                " SELECT s.version_id, s.revision, s.from_health, :stale, :cause, :at, :actor_id, :actor_kind,"
                f" :actor_roles, :rationale, :request_id FROM ({history}) s"
                + (" RETURNING version_id, revision, from_health" if self._ledgered else "")
            ),
            {"ids": "{" + ",".join(map(str, closure)) + "}", **staleable, **params},
        )
        if not self._ledgered:
            return int(result.rowcount), None
        rows = sorted(tuple(row) for row in result)
        return len(rows), rows

    def _reference(
        self, connection: sa.Connection, entity: EntityKey, new_id: int, params: Mapping[str, Any]
    ) -> tuple[int, list[Any] | None]:
        # The versions to mark, with the revision and health they have: what the history rows need, what the
        # update changes, and (with a ledger) what varies between the rows the propagation's leaf covers.
        if self._dialect == "sqlite":
            connection.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS lineage_scratch"
                " (id INTEGER PRIMARY KEY, revision INTEGER NOT NULL, health TEXT NOT NULL)"
            )
        else:
            connection.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS lineage_scratch"
                " (id BIGINT PRIMARY KEY, revision BIGINT NOT NULL, health VARCHAR(24) NOT NULL) ON COMMIT DELETE ROWS"
            )
        connection.exec_driver_sql("DELETE FROM lineage_scratch")
        params = {**params, "h1": STALEABLE[0].value, "h2": STALEABLE[1].value}
        connection.execute(
            sa.text(
                "WITH RECURSIVE down(id) AS ("
                " SELECT e.downstream_id FROM lineage_edges e JOIN lineage_versions v ON v.id = e.upstream_id"
                " WHERE v.project = :project AND v.artifact_type = :type AND v.entity = :entity AND v.id <> :new_id"
                " UNION"
                " SELECT e.downstream_id FROM lineage_edges e JOIN down d ON e.upstream_id = d.id"
                ") INSERT INTO lineage_scratch (id, revision, health)"
                " SELECT h.version_id, h.revision, h.health FROM down d JOIN lineage_health h ON h.version_id = d.id"
                " WHERE d.id <> :new_id AND h.health IN (:h1, :h2)"
            ),
            {
                "project": entity.project,
                "type": entity.artifact_type,
                "entity": entity.entity,
                "new_id": new_id,
                **params,
            },
        )
        connection.execute(
            sa.text(
                "INSERT INTO lineage_health_history (version_id, revision, from_health, health, cause_id, at_us,"
                " actor_id, actor_kind, actor_roles, rationale, request_id)"
                " SELECT s.id, s.revision + 1, s.health, :stale, :cause, :at, :actor_id, :actor_kind,"
                " :actor_roles, :rationale, :request_id"
                " FROM lineage_scratch s"
            ),
            params,
        )
        result = connection.execute(
            sa.text(
                "UPDATE lineage_health SET health = :stale, revision = revision + 1, cause_id = :cause,"
                " updated_at_us = :at, actor_id = :actor_id, actor_kind = :actor_kind, actor_roles = :actor_roles,"
                " rationale = :rationale, request_id = :request_id"
                " WHERE version_id IN (SELECT id FROM lineage_scratch) AND health IN (:h1, :h2)"
            ),
            params,
        )
        marked = int(result.rowcount)
        if not self._ledgered or not marked:
            return marked, None
        # The history rows just written, as their leaf digests them: what varies per row (from the scratch table,
        # in version order); the values the INSERT set for all of them are the propagation's own.
        rows = connection.execute(sa.text("SELECT id, revision + 1, health FROM lineage_scratch ORDER BY id")).all()
        return marked, list(rows)
