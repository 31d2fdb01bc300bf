"""The ledger: one leaf per record, appended in the record's transaction; immutable like the records.

Revision ID: 0005_ledger
Revises: 0004_run_seals
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.db import make_immutable

revision = "0005_ledger"
down_revision = "0004_run_seals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_leaves",
        sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("record_name", sa.String(512), nullable=False, unique=True),
        sa.Column("leaf_json", sa.Text, nullable=False),
        sa.Column("leaf_sha256", sa.String(64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    make_immutable(op.get_bind(), "ledger_leaves")


def downgrade() -> None:
    raise NotImplementedError("runs data is immutable; restore from a backup instead of downgrading")
