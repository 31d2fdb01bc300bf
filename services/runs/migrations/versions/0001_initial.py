"""Initial runs schema: runs, explanations (+ history), advisories, blobs, attachments; immutability triggers.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

from alembic import op

from services.common.db import make_immutable
from services.runs import tables

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


INITIAL_TABLES = ("runs", "run_explanations", "run_explanation_history", "advisories", "blobs", "attachments")


def upgrade() -> None:
    connection = op.get_bind()
    # The tables as of this revision; later revisions add theirs with explicit operations (see 0002).
    tables.metadata.create_all(connection, tables=[tables.metadata.tables[name] for name in INITIAL_TABLES])
    for table in INITIAL_TABLES:
        if table in tables.IMMUTABLE_TABLES:
            make_immutable(connection, table)


def downgrade() -> None:
    raise NotImplementedError("runs data is immutable; restore from a backup instead of downgrading")
