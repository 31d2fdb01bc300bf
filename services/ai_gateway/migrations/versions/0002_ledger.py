"""The gateway's tamper-evident ledger: one immutable leaf per audited call (services/common/ledger/store.py).

Revision ID: 0002_ledger
Revises: 0001_ai_calls
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.db import make_immutable

revision: str = "0002_ledger"
down_revision: str | Sequence[str] | None = "0001_ai_calls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_leaves",
        sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("record_name", sa.String(512), nullable=False, unique=True),
        # The leaf exactly as hashed (RFC 8785 canonical JSON) and its RFC 9162 leaf hash, hex.
        sa.Column("leaf_json", sa.Text, nullable=False),
        sa.Column("leaf_sha256", sa.String(64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    make_immutable(op.get_bind(), "ledger_leaves")


def downgrade() -> None:
    op.drop_table("ledger_leaves")
