"""The runs database schema (SQLAlchemy Core). Migrations create it; only store.py reads and writes it.

Immutable tables (runs, attachments, advisories, blobs, explanation history, seals, withdrawals) get database
triggers that refuse UPDATE and DELETE. The explanation (its status and a reviewer's decision) is the one mutable
row per run, changed by compare-and-set; each change is a row of its history, and the row equals the last one.
Timestamps are integer microseconds since the epoch so ordering and keyset pagination are exact on both backends.
"""

from __future__ import annotations

import sqlalchemy as sa

from services.common.ledger.store import ledger_table
from services.common.roles import RuntimeAccess

metadata = sa.MetaData()

IMMUTABLE_TABLES = (
    "runs",
    "attachments",
    "advisories",
    "blobs",
    "run_explanation_history",
    "blob_chunks",
    "run_seals",
    "run_withdrawals",
    "ledger_leaves",
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(160), nullable=False),
    sa.Column("created_by_kind", sa.String(16), nullable=False),
    # Correlation id of the request that created the run (x-request-id), and the caller's idempotency key.
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("idempotency_key", sa.String(128)),
    sa.Column("request_fingerprint", sa.String(64)),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("mode", sa.String(128), nullable=False),
    sa.Column("tool_id", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("risk_level", sa.String(16), nullable=False),
    sa.Column("artifact_json", sa.Text, nullable=False),
    sa.Column("artifact_sha256", sa.String(64), nullable=False),
    sa.UniqueConstraint("created_by", "idempotency_key", name="uq_runs_idempotency"),
    sa.Index("ix_runs_created", "created_at_us", "id"),
    sa.Index("ix_runs_status", "status", "created_at_us", "id"),
    sa.Index("ix_runs_risk", "risk_level", "created_at_us", "id"),
    sa.Index("ix_runs_mode", "mode", "created_at_us", "id"),
    sa.Index("ix_runs_tool", "tool_id", "created_at_us", "id"),
    sa.Index("ix_runs_creator", "created_by", "created_at_us", "id"),
    # The runs one command minted (migration 0007): a migration batch's are its creator's under its request id.
    sa.Index("ix_runs_request", "created_by", "request_id"),
)

run_explanations = sa.Table(
    "run_explanations",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text, nullable=False, default=""),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("advisory_id", sa.String(128), nullable=False, default=""),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    # A reviewer's decision (migration 0008), NULL until there is one: APPROVED or REJECTED, why, and by whom (at
    # updated_at_us). Until then a READY explanation's review status is its advisory's (PENDING_REVIEW, ...).
    sa.Column("review_status", sa.String(24)),
    sa.Column("review_rationale", sa.Text),
    sa.Column("reviewed_by", sa.String(160)),
    sa.Column("reviewed_by_kind", sa.String(16)),
    sa.Index("ix_run_explanations_status", "status", "run_id"),
)

run_explanation_history = sa.Table(
    "run_explanation_history",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("changed_by", sa.String(160), nullable=False),
    sa.Column("changed_by_kind", sa.String(16), nullable=False),
    sa.Column("changed_at_us", sa.BigInteger, nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    # Migration 0008: the explanation's advisory id at this version (NULL on versions recorded before it), and the
    # review decision this version recorded (NULL on every other version), whose reviewer is changed_by.
    sa.Column("advisory_id", sa.String(128)),
    sa.Column("review_status", sa.String(24)),
    sa.Column("review_rationale", sa.Text),
)

advisories = sa.Table(
    "advisories",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("advisory_id", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("engine_id", sa.String(128), nullable=False),
    sa.Column("engine_version", sa.String(128), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("review_status", sa.String(24), nullable=False),
    sa.Column("reviewed_by", sa.String(160)),
    sa.Column("reviewed_by_kind", sa.String(16)),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(160), nullable=False),
    sa.Column("created_by_kind", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Index("ix_advisories_run", "run_id", "created_at_us", "advisory_id"),
)

blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

attachments = sa.Table(
    "attachments",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("filename", sa.String(200), nullable=False),
    sa.Column("content_type", sa.String(128), nullable=False),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("metadata_json", sa.Text, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(160), nullable=False),
    sa.Column("created_by_kind", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    # Idempotency of uploads and batches: one row per (run, caller, key, position in the batch).
    sa.Column("idempotency_key", sa.String(128)),
    sa.Column("idempotency_fingerprint", sa.String(64)),
    sa.Column("batch_position", sa.Integer, nullable=False, default=0),
    # The credentialed asset (migration 0006): NULL when no content credentials were asked for.
    sa.Column("signed_sha256", sa.String(64)),
    sa.Column("signed_size_bytes", sa.BigInteger),
    sa.UniqueConstraint("run_id", "created_by", "idempotency_key", "batch_position", name="uq_attachments_request"),
    sa.Index("ix_attachments_run_kind", "run_id", "kind", "created_at_us", "id"),
    sa.Index("ix_attachments_run", "run_id", "created_at_us", "id"),
)

# Blob bytes for the `database` blob backend (1 MiB per row); unused with the filesystem backend.
blob_chunks = sa.Table(
    "blob_chunks",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

# Cross-service writes that must not be lost: a row is written in the same transaction as the run it belongs to,
# and a dispatcher delivers it (with retries and its idempotency key). Delivery state changes; it is a queue.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payload_json", sa.Text, nullable=False),
    # Idempotency key the receiver dedupes on, and the request/trace context the write belongs to.
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("traceparent", sa.String(64), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # PENDING | DELIVERED | FAILED
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at_us", sa.BigInteger, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False),
    sa.Column("result", sa.String(512), nullable=False),
    sa.Index("ix_outbox_due", "state", "next_attempt_at_us"),
    sa.Index("ix_outbox_run", "run_id"),
)

# What a decision froze: a run minted by the engine takes no attachments at all (scope "all"), and a run that has
# been bound from takes no new geometry (scope "geometry"). One row per sealing run; triggers on attachments
# refuse what a seal forbids, so the rule holds for every writer of the database, not only for this service.
run_seals = sa.Table(
    "run_seals",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("sealed_by", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

# A legacy migration taken back (migration 0007): one append-only row per withdrawn run, the batch's included, naming
# the batch, who withdrew it, why and when. A withdrawn run stays readable; a trigger refuses binding it.
run_withdrawals = sa.Table(
    "run_withdrawals",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("batch_run_id", sa.String(40), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("withdrawn_by", sa.String(160), nullable=False),
    sa.Column("withdrawn_by_kind", sa.String(16), nullable=False),
    sa.Column("withdrawn_at_us", sa.BigInteger, nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Index("ix_run_withdrawals_batch", "batch_run_id", "run_id"),
)

# Tamper evidence: one leaf per record (services/runs/ledger_records.py), in the record's own transaction.
ledger = ledger_table(metadata)

# The runtime role's privileges beyond SELECT and INSERT (services/common/roles.py; the migrations grant them):
# UPDATE on the compare-and-set state, each explanation's status and the outbox's delivery state; no DELETE.
RUNTIME_ACCESS = RuntimeAccess(metadata, IMMUTABLE_TABLES, update=frozenset({"run_explanations", "outbox"}))
