"""Outbox for cross-service writes that must not be lost (e.g. recording a minted run in lineage).

Revision ID: 0003_outbox
Revises: 0002_blob_chunks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_outbox"
down_revision = "0002_blob_chunks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload_json", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("traceparent", sa.String(64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at_us", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("result", sa.String(512), nullable=False),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "next_attempt_at_us"])
    op.create_index("ix_outbox_run", "outbox", ["run_id"])


def downgrade() -> None:
    op.drop_table("outbox")
