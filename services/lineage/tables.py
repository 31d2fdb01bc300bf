"""The lineage schema (declarations only; the services/lineage/store/ package is the only code that reads or writes it).

Immutable tables (database triggers refuse UPDATE and DELETE): type registrations, version snapshots, their
upstream edges, status and health histories, idempotency keys, and the ledger's leaves recording all of them
(services/lineage/ledger_records.py). Mutable rows, changed only by compare-and-set on
`revision`: the current status and the current health of each version.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from services.common.ledger.store import ledger_table
from services.common.roles import RuntimeAccess

metadata = sa.MetaData()

# Every id is a 64-bit integer on PostgreSQL; SQLite needs INTEGER PRIMARY KEY for its rowid alias.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def decision_columns() -> list[sa.Column[Any]]:
    """Who decided, why and under which request: the columns status and health rows and their histories share
    (the store fills them with one _decision_columns(decision))."""
    return [
        sa.Column("actor_id", sa.String(200), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_roles", sa.String(400), nullable=False),
        sa.Column("rationale", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
    ]


types = sa.Table(
    "lineage_types",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("artifact_type", sa.String(63), nullable=False),
    sa.Column("schema_version", sa.String(32), nullable=False),
    sa.Column("policy", sa.String(63), nullable=False),
    sa.Column("definition_json", sa.Text, nullable=False),
    sa.Column("definition_sha256", sa.String(64), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("registered_at_us", sa.BigInteger, nullable=False),
    sa.Column("registered_by_id", sa.String(200), nullable=False),
    sa.Column("registered_by_kind", sa.String(16), nullable=False),
    sa.UniqueConstraint("artifact_type", "schema_version", name="uq_lineage_types_version"),
)

versions = sa.Table(
    "lineage_versions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(400), nullable=False, unique=True),
    sa.Column("project", sa.String(63), nullable=False),
    sa.Column("artifact_type", sa.String(63), nullable=False),
    sa.Column("entity", sa.String(128), nullable=False),
    sa.Column("number", sa.BigInteger, nullable=False),
    sa.Column("schema_version", sa.String(32), nullable=False),
    sa.Column("data_json", sa.Text, nullable=False),
    sa.Column("data_sha256", sa.String(64), nullable=False),
    sa.Column("metadata_json", sa.Text, nullable=False),
    sa.Column("upstream_json", sa.Text, nullable=False),
    sa.Column("snapshot_sha256", sa.String(64), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("created_by_id", sa.String(200), nullable=False),
    sa.Column("created_by_kind", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    # Four eyes: on whose request a service recorded the version (runs: the BindCandidate caller); NULL when none.
    # Added after rows were first ledgered, so a NULL is left out of the row's leaf (ledger_records.VERSIONS).
    sa.Column("requested_by_id", sa.String(200), nullable=True),
    sa.Column("requested_by_kind", sa.String(16), nullable=True),
    # Numbers are unique per entity: concurrent creates cannot both take one (the loser retries).
    sa.UniqueConstraint("project", "artifact_type", "entity", "number", name="uq_lineage_versions_number"),
    # A project's versions in creation order: lists, ListStale, and catching up the in-memory adjacency.
    sa.Index("ix_lineage_versions_project_id", "project", "id"),
)

edges = sa.Table(
    "lineage_edges",
    metadata,
    sa.Column("downstream_id", BigId, sa.ForeignKey("lineage_versions.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("upstream_id", BigId, sa.ForeignKey("lineage_versions.id"), nullable=False),
    sa.Index("ix_lineage_edges_upstream", "upstream_id", "downstream_id"),
)

status = sa.Table(
    "lineage_status",
    metadata,
    sa.Column("version_id", BigId, sa.ForeignKey("lineage_versions.id"), primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    *decision_columns(),
    # ListVersions by status (the review queue: DRAFT and FLAGGED_FOR_REVIEW) reads the matching rows only, in
    # version order within each status. A status changes at most twice per version, so the index costs little.
    sa.Index("ix_lineage_status_status_version", "status", "version_id"),
)

status_history = sa.Table(
    "lineage_status_history",
    metadata,
    sa.Column("version_id", BigId, sa.ForeignKey("lineage_versions.id"), primary_key=True, autoincrement=False),
    sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("from_status", sa.String(24), nullable=True),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("at_us", sa.BigInteger, nullable=False),
    *decision_columns(),
)

health = sa.Table(
    "lineage_health",
    metadata,
    sa.Column("version_id", BigId, sa.ForeignKey("lineage_versions.id"), primary_key=True, autoincrement=False),
    sa.Column("health", sa.String(24), nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("cause_id", BigId, nullable=True),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    *decision_columns(),
    # No index on `health`: propagation rewrites it on up to every row; ListStale scans by project instead.
    postgresql_with={"fillfactor": 70},
)

# Histories are keyed by (version, revision): one index, no sequence, a revision can be recorded once. They carry
# no foreign keys: propagation appends up to one row per version in a single statement, and per-row foreign-key
# checks would dominate its cost; the store writes them in the same transaction as the rows they describe.
health_history = sa.Table(
    "lineage_health_history",
    metadata,
    sa.Column("version_id", BigId, primary_key=True, autoincrement=False),
    sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("from_health", sa.String(24), nullable=True),
    sa.Column("health", sa.String(24), nullable=False),
    sa.Column("cause_id", BigId, nullable=True),
    sa.Column("at_us", sa.BigInteger, nullable=False),
    *decision_columns(),
)

idempotency = sa.Table(
    "lineage_idempotency",
    metadata,
    sa.Column("principal_id", sa.String(200), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("result", sa.String(400), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

# One leaf per record (services/common/ledger/store.py), appended in the transaction that writes the record.
ledger = ledger_table(metadata)

# Witnessing: the latest checkpoint of each peer authority (runs) lineage has checked and kept (one mutable row per
# origin, moved forward by compare-and-set on tree_size), every checkpoint it kept, and every one it refused as
# inconsistent with what it had seen, kept as the evidence of a rewritten history.
witnessed = sa.Table(
    "lineage_witnessed",
    metadata,
    sa.Column("origin", sa.String(256), primary_key=True),
    sa.Column("tree_size", sa.BigInteger, nullable=False),
    sa.Column("root_hash", sa.String(64), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("witnessed_at_us", sa.BigInteger, nullable=False),
)

witness_history = sa.Table(
    "lineage_witness_history",
    metadata,
    sa.Column("origin", sa.String(256), primary_key=True),
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.String(64), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("witnessed_at_us", sa.BigInteger, nullable=False),
    sa.Column("presented_by", sa.String(200), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
)

witness_refusals = sa.Table(
    "lineage_witness_refusals",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("origin", sa.String(256), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("refused_at_us", sa.BigInteger, nullable=False),
    sa.Column("presented_by", sa.String(200), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
)

IMMUTABLE_TABLES = (
    "lineage_types",
    "lineage_versions",
    "lineage_edges",
    "lineage_status_history",
    "lineage_health_history",
    "lineage_idempotency",
    "lineage_witness_history",
    "lineage_witness_refusals",
    "ledger_leaves",
)

# The runtime role's privileges beyond SELECT and INSERT (services/common/roles.py; the migrations grant them):
# UPDATE on the compare-and-set state (current status, current health, the latest witnessed checkpoint of each
# peer); no DELETE; TEMPORARY on the database, as staleness propagation stages its rows in a temporary table.
RUNTIME_ACCESS = RuntimeAccess(
    metadata,
    IMMUTABLE_TABLES,
    update=frozenset({"lineage_status", "lineage_health", "lineage_witnessed"}),
    temporary=True,
)
