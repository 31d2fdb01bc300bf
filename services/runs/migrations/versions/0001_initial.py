"""Initial runs schema: runs, explanations (+ history), advisories, blobs, attachments; immutability triggers.

Revision ID: 0001_initial
Revises:

Every table, column and index is spelled out rather than taken from services/runs/tables.py: a revision records
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

# The tables of this revision whose rows the database refuses to UPDATE or DELETE.
IMMUTABLE = ("runs", "run_explanation_history", "advisories", "blobs", "attachments")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(160), nullable=False),
        sa.Column("created_by_kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(128)),
        sa.Column("request_fingerprint", sa.String(64)),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(128), nullable=False),
        sa.Column("tool_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("risk_level", sa.String(16), nullable=False),
        sa.Column("artifact_json", sa.Text, nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.UniqueConstraint("created_by", "idempotency_key", name="uq_runs_idempotency"),
    )
    op.create_index("ix_runs_status", "runs", ["status", "created_at_us", "id"])
    op.create_index("ix_runs_risk", "runs", ["risk_level", "created_at_us", "id"])
    op.create_index("ix_runs_created", "runs", ["created_at_us", "id"])
    op.create_index("ix_runs_mode", "runs", ["mode", "created_at_us", "id"])
    op.create_index("ix_runs_tool", "runs", ["tool_id", "created_at_us", "id"])
    op.create_index("ix_runs_creator", "runs", ["created_by", "created_at_us", "id"])

    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )

    op.create_table(
        "run_explanations",
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("advisory_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_run_explanations_status", "run_explanations", ["status", "run_id"])

    op.create_table(
        "run_explanation_history",
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("changed_by", sa.String(160), nullable=False),
        sa.Column("changed_by_kind", sa.String(16), nullable=False),
        sa.Column("changed_at_us", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
    )

    op.create_table(
        "advisories",
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("advisory_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("engine_id", sa.String(128), nullable=False),
        sa.Column("engine_version", sa.String(128), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("review_status", sa.String(24), nullable=False),
        sa.Column("reviewed_by", sa.String(160)),
        sa.Column("reviewed_by_kind", sa.String(16)),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(160), nullable=False),
        sa.Column("created_by_kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_advisories_run", "advisories", ["run_id", "created_at_us", "advisory_id"])

    op.create_table(
        "attachments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("metadata_json", sa.Text, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(160), nullable=False),
        sa.Column("created_by_kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(128)),
        sa.Column("idempotency_fingerprint", sa.String(64)),
        sa.Column("batch_position", sa.Integer, nullable=False),
        sa.UniqueConstraint("run_id", "created_by", "idempotency_key", "batch_position", name="uq_attachments_request"),
    )
    op.create_index("ix_attachments_run", "attachments", ["run_id", "created_at_us", "id"])
    op.create_index("ix_attachments_run_kind", "attachments", ["run_id", "kind", "created_at_us", "id"])

    connection = op.get_bind()
    for table in IMMUTABLE:
        make_immutable(connection, table)


def downgrade() -> None:
    raise NotImplementedError("runs data is immutable; restore from a backup instead of downgrading")
