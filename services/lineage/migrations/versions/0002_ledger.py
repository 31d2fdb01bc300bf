"""The ledger's leaves: one per lineage record (services/lineage/ledger_records.py), immutable like the records.

Revision ID: 0002_ledger
Revises: 0001_initial

The table is spelled out as services/common/ledger/store.py declared it when this revision was written, frozen
here (a later change to the declaration needs its own revision). Records written before this revision get their
leaves when the service first starts with a ledger (Ledger.adopt_existing).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.db import make_immutable

revision = "0002_ledger"
down_revision = "0001_initial"
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
    raise NotImplementedError("the ledger is immutable; restore from a backup instead of downgrading")
