"""The shared budget ledger: per-(caller, day) totals, reservations in flight, and the rate-limit window, so every
replica on this database enforces the same budgets and rate limits (services/ai_gateway/budget_store.py).

Revision ID: 0003_shared_budgets
Revises: 0002_ledger
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_shared_budgets"
down_revision: str | Sequence[str] | None = "0002_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Seeded from ai_calls the first time a caller reserves on a day, so a day already under way keeps its spend.
    op.create_table(
        "ai_budget_days",
        sa.Column("caller_id", sa.String(256), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("spent_tokens", sa.BigInteger, nullable=False),
        sa.Column("spent_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("reserved_tokens", sa.BigInteger, nullable=False),
        sa.Column("reserved_usd", sa.Numeric(20, 10), nullable=False),
    )
    op.create_table(
        "ai_budget_holds",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("caller_id", sa.String(256), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_ai_budget_holds_expires", "ai_budget_holds", ["expires_at_us"])
    op.create_table(
        "ai_rate_callers",
        sa.Column("caller_id", sa.String(256), primary_key=True),
        sa.Column("admitted_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ai_rate_requests",
        sa.Column("caller_id", sa.String(256), primary_key=True),
        sa.Column("at_us", sa.BigInteger, primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("ai_rate_requests")
    op.drop_table("ai_rate_callers")
    op.drop_index("ix_ai_budget_holds_expires", table_name="ai_budget_holds")
    op.drop_table("ai_budget_holds")
    op.drop_table("ai_budget_days")
