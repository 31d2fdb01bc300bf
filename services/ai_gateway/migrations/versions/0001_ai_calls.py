"""AI call audit (immutable) and the idempotent-replay table.

Revision ID: 0001_ai_calls
Revises:
Create Date: 2025-06-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.db import make_immutable

revision: str = "0001_ai_calls"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ai_calls",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("caller_id", sa.String(256), nullable=False),
        sa.Column("operation", sa.String(128), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("total_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Numeric(20, 10), nullable=True),
        # The whole record as RFC 8785 canonical JSON, and its sha256.
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Column("record_sha256", sa.String(64), nullable=False),
    )
    op.create_index("ix_ai_calls_created", "ai_calls", ["created_at_us", "id"])
    op.create_index("ix_ai_calls_caller_created", "ai_calls", ["caller_id", "created_at_us", "id"])
    op.create_index("ix_ai_calls_operation_created", "ai_calls", ["operation", "created_at_us", "id"])
    op.create_index("ix_ai_calls_request_id", "ai_calls", ["request_id"])
    op.create_index("ix_ai_calls_idempotency_key", "ai_calls", ["idempotency_key"])
    make_immutable(op.get_bind(), "ai_calls")

    # Successful results kept for replay of a repeated request_id; purged after the retention period.
    op.create_table(
        "ai_call_replays",
        sa.Column("caller_id", sa.String(256), primary_key=True),
        sa.Column("idempotency_key", sa.String(128), primary_key=True),
        sa.Column("call_id", sa.String(64), sa.ForeignKey("ai_calls.id"), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_ai_call_replays_expires", "ai_call_replays", ["expires_at_us"])


def downgrade() -> None:
    op.drop_table("ai_call_replays")
    op.drop_table("ai_calls")
