"""Run seals: a decided run takes no attachments, a bound-from run no new geometry; enforced by triggers.

Revision ID: 0004_run_seals
Revises: 0003_outbox
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.db import make_immutable

revision = "0004_run_seals"
down_revision = "0003_outbox"
branch_labels = None
depends_on = None

# The geometry kinds as of this revision, spelled out: a migration must not change when the model does.
_GEOMETRY = "('geometry_svg', 'geometry_spec_json')"
_REFUSED = "run is sealed by a decision: it takes no such attachment (RUN_SEALED)"

SQLITE = [
    f"""CREATE TRIGGER attachments_sealed BEFORE INSERT ON attachments
    WHEN EXISTS (SELECT 1 FROM run_seals s WHERE s.run_id = NEW.run_id
                 AND (s.scope = 'all' OR NEW.kind IN {_GEOMETRY}))
    BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END""",
]

# PostgreSQL: both sides take one transaction-scoped advisory lock per run, so an attachment and a seal of the same
# run are serialised and the later one sees the earlier (each statement in the function reads a fresh snapshot).
POSTGRESQL = [
    """CREATE FUNCTION run_seal_lock(run_id text) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_advisory_xact_lock(hashtextextended('custody.run_seal/' || run_id, 0)); END $$""",
    f"""CREATE FUNCTION attachments_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM run_seal_lock(NEW.run_id);
      IF EXISTS (SELECT 1 FROM run_seals s WHERE s.run_id = NEW.run_id
                 AND (s.scope = 'all' OR NEW.kind IN {_GEOMETRY})) THEN
        RAISE EXCEPTION '{_REFUSED}' USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NEW;
    END $$""",
    "CREATE TRIGGER attachments_sealed BEFORE INSERT ON attachments FOR EACH ROW EXECUTE FUNCTION attachments_sealed()",
    """CREATE FUNCTION run_seals_lock() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM run_seal_lock(NEW.run_id); RETURN NEW; END $$""",
    "CREATE TRIGGER run_seals_lock BEFORE INSERT ON run_seals FOR EACH ROW EXECUTE FUNCTION run_seals_lock()",
]


def upgrade() -> None:
    op.create_table(
        "run_seals",
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("sealed_by", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    connection = op.get_bind()
    for statement in POSTGRESQL if connection.dialect.name == "postgresql" else SQLITE:
        op.execute(statement)
    make_immutable(connection, "run_seals")


def downgrade() -> None:
    raise NotImplementedError("runs data is immutable; restore from a backup instead of downgrading")
