"""Four eyes: who requested a version a service recorded on their behalf (runs: the caller of BindCandidate).

Revision ID: 0004_requested_by
Revises: 0003_witness

Two nullable columns on lineage_versions; existing rows keep NULL (recorded without a requester) and keep their
ledger leaves, which leave a NULL requester out (services/lineage/ledger_records.py VERSIONS). Adding a column
changes no row, so the table's triggers refusing UPDATE and DELETE stay as they are, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_requested_by"
down_revision = "0003_witness"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("lineage_versions", sa.Column("requested_by_id", sa.String(200), nullable=True))
    op.add_column("lineage_versions", sa.Column("requested_by_kind", sa.String(16), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("lineage data is immutable; restore from a backup instead of downgrading")
