"""Blob bytes in the database, for the `database` blob backend shared by several runs replicas.

Revision ID: 0002_blob_chunks
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.db import make_immutable

revision = "0002_blob_chunks"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_chunks",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    make_immutable(op.get_bind(), "blob_chunks")


def downgrade() -> None:
    raise NotImplementedError("blob bytes are immutable; restore from a backup instead of downgrading")
