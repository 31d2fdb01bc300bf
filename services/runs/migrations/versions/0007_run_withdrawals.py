"""Withdrawals: a legacy migration taken back by an append-only record on its batch and every run it created.

Revision ID: 0007_run_withdrawals
Revises: 0006_signed_assets

run_withdrawals is immutable like the records it is about (one row per run, never changed or deleted; its ledger
leaf is services/runs/ledger_records.py WITHDRAWALS). A withdrawn run is never bound: a trigger refuses the seal a
binding sets on the run it binds from, so the rule holds for every writer of the database. On PostgreSQL a
withdrawal takes the run's seal lock (0004's run_seal_lock), so a binding and a withdrawal of the same run are
serialised and the later one sees the earlier. The index on runs (created_by, request_id) finds the runs a batch
created (minted by its creator under its request id); adding an index changes no row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.db import make_immutable

revision = "0007_run_withdrawals"
down_revision = "0006_signed_assets"
branch_labels = None
depends_on = None

_REFUSED = "run is withdrawn: it is never bound (RUN_WITHDRAWN)"

SQLITE = [
    f"""CREATE TRIGGER run_seals_withdrawn BEFORE INSERT ON run_seals
    WHEN EXISTS (SELECT 1 FROM run_withdrawals w WHERE w.run_id = NEW.run_id)
    BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END""",
]

POSTGRESQL = [
    f"""CREATE FUNCTION run_seals_withdrawn() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM run_seal_lock(NEW.run_id);
      IF EXISTS (SELECT 1 FROM run_withdrawals w WHERE w.run_id = NEW.run_id) THEN
        RAISE EXCEPTION '{_REFUSED}' USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NEW;
    END $$""",
    "CREATE TRIGGER run_seals_withdrawn BEFORE INSERT ON run_seals FOR EACH ROW EXECUTE FUNCTION run_seals_withdrawn()",
    """CREATE FUNCTION run_withdrawals_lock() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM run_seal_lock(NEW.run_id); RETURN NEW; END $$""",
    "CREATE TRIGGER run_withdrawals_lock BEFORE INSERT ON run_withdrawals "
    "FOR EACH ROW EXECUTE FUNCTION run_withdrawals_lock()",
]


def upgrade() -> None:
    op.create_table(
        "run_withdrawals",
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("batch_run_id", sa.String(40), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("withdrawn_by", sa.String(160), nullable=False),
        sa.Column("withdrawn_by_kind", sa.String(16), nullable=False),
        sa.Column("withdrawn_at_us", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_run_withdrawals_batch", "run_withdrawals", ["batch_run_id", "run_id"])
    op.create_index("ix_runs_request", "runs", ["created_by", "request_id"])
    connection = op.get_bind()
    for statement in POSTGRESQL if connection.dialect.name == "postgresql" else SQLITE:
        op.execute(statement)
    make_immutable(connection, "run_withdrawals")


def downgrade() -> None:
    raise NotImplementedError("runs data is immutable; restore from a backup instead of downgrading")
