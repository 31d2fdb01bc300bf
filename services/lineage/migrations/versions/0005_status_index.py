"""The review queue: ListVersions filtered by current status finds the matching versions by index.

Revision ID: 0005_status_index
Revises: 0004_requested_by

An index on lineage_status (status, version_id): a queue of DRAFT and FLAGGED_FOR_REVIEW versions is read from its
own entries, in version order within each status, however many versions were decided before it. Creating it
changes no row and needs no grant (the runtime role reads through it with the SELECT it has). On PostgreSQL the
build holds a lock that blocks status changes (not reads) while it runs: one row per version, so seconds even for
millions of versions; run the migration in a quiet moment.
"""

from __future__ import annotations

from alembic import op

revision = "0005_status_index"
down_revision = "0004_requested_by"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_lineage_status_status_version", "lineage_status", ["status", "version_id"])


def downgrade() -> None:
    raise NotImplementedError("lineage data is immutable; restore from a backup instead of downgrading")
