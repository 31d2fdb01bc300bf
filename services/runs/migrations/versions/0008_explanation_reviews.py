"""Explanation reviews: a human reviewer's decision (APPROVED or REJECTED, with a rationale) on an explanation.

Revision ID: 0008_explanation_reviews
Revises: 0007_run_withdrawals

Nullable columns only. On run_explanations (mutable, compare-and-set) the decision, its rationale and its
reviewer; on run_explanation_history (immutable) the decision and rationale of the version that recorded it, whose
reviewer is its changed_by, and the advisory id of every version from now on, so that the mutable row's advisory id
(which a READY explanation's review status is read from until a reviewer decides) is covered by its ledgered history
too. Existing rows keep NULL (no decision yet; advisory id not recorded) and keep their ledger leaves, which leave
these columns out while NULL (services/runs/ledger_records.py EXPLANATION_DECISIONS). Adding a column changes no
row, so the history's triggers refusing UPDATE and DELETE stay as they are, on SQLite and PostgreSQL, and the runtime
role's table grants cover the new columns.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_explanation_reviews"
down_revision = "0007_run_withdrawals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run_explanations", sa.Column("review_status", sa.String(24), nullable=True))
    op.add_column("run_explanations", sa.Column("review_rationale", sa.Text, nullable=True))
    op.add_column("run_explanations", sa.Column("reviewed_by", sa.String(160), nullable=True))
    op.add_column("run_explanations", sa.Column("reviewed_by_kind", sa.String(16), nullable=True))
    op.add_column("run_explanation_history", sa.Column("advisory_id", sa.String(128), nullable=True))
    op.add_column("run_explanation_history", sa.Column("review_status", sa.String(24), nullable=True))
    op.add_column("run_explanation_history", sa.Column("review_rationale", sa.Text, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("runs data is immutable; restore from a backup instead of downgrading")
