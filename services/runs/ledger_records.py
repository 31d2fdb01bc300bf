"""What runs records in its ledger: one leaf per row of every immutable table but blob_chunks.

blob_chunks (the `database` blob backend's bytes) are covered by content addressing instead: the audit re-hashes
every blob against the sha256 its `blobs` row and its attachments name, so a changed, missing or extra chunk shows.
"""

from __future__ import annotations

from services.common.ledger.leaves import RecordSource, TableRecords
from services.runs import tables
from services.runs.model import attachment_name, explanation_name, run_name, withdrawal_name

RUNS = TableRecords(
    "run",
    tables.runs,
    lambda row: run_name(row["id"]),
    "created_at_us",
    principal_column="created_by",
    request_id_column="request_id",
    digest_columns=("artifact_sha256",),
)
ATTACHMENTS = TableRecords(
    "attachment",
    tables.attachments,
    lambda row: attachment_name(row["run_id"], row["id"]),
    "created_at_us",
    principal_column="created_by",
    request_id_column="request_id",
    digest_columns=("sha256", "signed_sha256"),
    added_columns=("signed_sha256", "signed_size_bytes"),
)
BLOBS = TableRecords(
    "blob", tables.blobs, lambda row: f"blobs/{row['sha256']}", "created_at_us", digest_columns=("sha256",)
)
ADVISORIES = TableRecords(
    "advisory",
    tables.advisories,
    lambda row: f"{run_name(row['run_id'])}/advisories/{row['advisory_id']}",
    "created_at_us",
    principal_column="created_by",
    request_id_column="request_id",
)
EXPLANATION_DECISIONS = TableRecords(
    "explanation",
    tables.run_explanation_history,
    lambda row: explanation_name(row["run_id"], row["version"]),
    "changed_at_us",
    principal_column="changed_by",
    request_id_column="request_id",
    # Migration 0008 (the advisory id, a reviewer's decision): versions recorded before it keep their leaves.
    added_columns=("advisory_id", "review_status", "review_rationale"),
)
SEALS = TableRecords(
    "seal",
    tables.run_seals,
    lambda row: f"{run_name(row['run_id'])}/seals/{row['sealed_by']}",
    "created_at_us",
)

WITHDRAWALS = TableRecords(
    "withdrawal",
    tables.run_withdrawals,
    lambda row: withdrawal_name(row["run_id"]),
    "withdrawn_at_us",
    principal_column="withdrawn_by",
    request_id_column="request_id",
)

SOURCES: tuple[RecordSource, ...] = (
    RUNS,
    BLOBS,
    ATTACHMENTS,
    ADVISORIES,
    EXPLANATION_DECISIONS,
    SEALS,
    WITHDRAWALS,
)
