"""Initial lineage schema: types, versions, edges, status and health (+ histories), idempotency keys.

Revision ID: 0001_initial
Revises:

Every table, column and index is spelled out rather than taken from services/lineage/tables.py: a revision records
the schema it created once, so a column later added to the model needs its own revision (a fresh database and an
upgraded one then agree; tests/contract/test_schema_matches_models.py checks it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.db import make_immutable

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

# Ids are 64-bit integers on PostgreSQL; SQLite needs INTEGER PRIMARY KEY for its rowid alias.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The tables of this revision whose rows the database refuses to UPDATE or DELETE.
IMMUTABLE = (
    "lineage_types",
    "lineage_versions",
    "lineage_edges",
    "lineage_status_history",
    "lineage_health_history",
    "lineage_idempotency",
)


def _decision_columns() -> list[sa.Column[str]]:
    """Who decided, why and under which request (status and health rows and their histories)."""
    return [
        sa.Column("actor_id", sa.String(200), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_roles", sa.String(400), nullable=False),
        sa.Column("rationale", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "lineage_types",
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

    op.create_table(
        "lineage_versions",
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
        sa.UniqueConstraint("project", "artifact_type", "entity", "number", name="uq_lineage_versions_number"),
    )
    op.create_index("ix_lineage_versions_project_id", "lineage_versions", ["project", "id"])

    # No foreign keys on the health history: propagation appends up to one row per version in one statement.
    op.create_table(
        "lineage_health_history",
        sa.Column("version_id", BigId, primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("from_health", sa.String(24), nullable=True),
        sa.Column("health", sa.String(24), nullable=False),
        sa.Column("cause_id", BigId, nullable=True),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        *_decision_columns(),
    )

    op.create_table(
        "lineage_idempotency",
        sa.Column("principal_id", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("result", sa.String(400), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )

    op.create_table(
        "lineage_edges",
        sa.Column("downstream_id", BigId, sa.ForeignKey("lineage_versions.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("upstream_id", BigId, sa.ForeignKey("lineage_versions.id"), nullable=False),
    )
    op.create_index("ix_lineage_edges_upstream", "lineage_edges", ["upstream_id", "downstream_id"])

    op.create_table(
        "lineage_status",
        sa.Column("version_id", BigId, sa.ForeignKey("lineage_versions.id"), primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        *_decision_columns(),
    )

    op.create_table(
        "lineage_status_history",
        sa.Column("version_id", BigId, sa.ForeignKey("lineage_versions.id"), primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("from_status", sa.String(24), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        *_decision_columns(),
    )

    op.create_table(
        "lineage_health",
        sa.Column("version_id", BigId, sa.ForeignKey("lineage_versions.id"), primary_key=True, autoincrement=False),
        sa.Column("health", sa.String(24), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("cause_id", BigId, nullable=True),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        *_decision_columns(),
        # Propagation rewrites `health` on up to every row: leave room for in-place (HOT) updates.
        postgresql_with={"fillfactor": 70},
    )

    connection = op.get_bind()
    for table in IMMUTABLE:
        make_immutable(connection, table)


def downgrade() -> None:
    raise NotImplementedError("lineage history is immutable; restore from a backup instead of downgrading")
