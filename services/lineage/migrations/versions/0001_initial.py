"""Initial lineage schema: types, versions, edges, status and health (+ histories), idempotency keys.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

from alembic import op

from services.common.db import make_immutable
from services.lineage import tables

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    # The schema as of this revision; later revisions alter it with explicit operations.
    tables.metadata.create_all(connection)
    for table in tables.IMMUTABLE_TABLES:
        make_immutable(connection, table)


def downgrade() -> None:
    raise NotImplementedError("lineage history is immutable; restore from a backup instead of downgrading")
