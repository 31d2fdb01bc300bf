"""Content credentials: the credentialed asset (the bytes with the C2PA manifest runs signed) of an attachment.

Revision ID: 0006_signed_assets
Revises: 0005_ledger

Two nullable columns on attachments; existing rows keep NULL (attached without credentials) and keep their ledger
leaves, which leave a NULL signed asset out (services/runs/ledger_records.py ATTACHMENTS). Adding a column changes
no row, so the table's triggers refusing UPDATE and DELETE stay as they are, on SQLite and PostgreSQL. The signed
asset's bytes are a blob like any other (a `blobs` row and its own leaf).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_signed_assets"
down_revision = "0005_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attachments", sa.Column("signed_sha256", sa.String(64), nullable=True))
    op.add_column("attachments", sa.Column("signed_size_bytes", sa.BigInteger, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("runs data is immutable; restore from a backup instead of downgrading")
