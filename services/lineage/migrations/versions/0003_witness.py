"""Witnessing: the latest checkpoint of each peer authority lineage has checked, every one it kept (immutable), and
every one it refused as inconsistent (immutable).

Revision ID: 0003_witness
Revises: 0002_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.db import make_immutable

revision = "0003_witness"
down_revision = "0002_ledger"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lineage_witnessed",
        sa.Column("origin", sa.String(256), primary_key=True),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("witnessed_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "lineage_witness_history",
        sa.Column("origin", sa.String(256), primary_key=True),
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("witnessed_at_us", sa.BigInteger, nullable=False),
        sa.Column("presented_by", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
    )
    op.create_table(
        "lineage_witness_refusals",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("origin", sa.String(256), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("refused_at_us", sa.BigInteger, nullable=False),
        sa.Column("presented_by", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
    )
    connection = op.get_bind()
    make_immutable(connection, "lineage_witness_history")
    make_immutable(connection, "lineage_witness_refusals")


def downgrade() -> None:
    raise NotImplementedError("lineage data is immutable; restore from a backup instead of downgrading")
