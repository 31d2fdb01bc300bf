"""`custody ledger audit runs`: the shared audit (services/common/ledger/audit.py) over the runs database, plus what
leaves cannot see:
- the bytes of every blob, re-hashed against the sha256 its row names, and stray chunks;
- the mutable explanation rows: each run's explanation (run_explanations, changed by compare-and-set) is not
  ledgered, its history is, so it must equal the last row of its history (status, summary, error, version, time,
  advisory id where the history records it, a reviewer's decision and who made it), and every run has both."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from services.common.ledger.audit import UNPLACED, AuditReport, ExtraCheck, Finding, audit_configured
from services.runs import tables
from services.runs.config import RunsSettings
from services.runs.ledger_records import SOURCES
from services.runs.main import blob_store
from services.runs.model import run_name

# Columns of the current explanation and the history column each must equal.
_EXPLANATION_COLUMNS = (
    ("status", "status"),
    ("summary", "summary"),
    ("error", "error"),
    ("version", "version"),
    ("updated_at_us", "changed_at_us"),
    ("review_status", "review_status"),
    ("review_rationale", "review_rationale"),
)


def audit(settings: RunsSettings, verifier_key: str | None = None) -> AuditReport:
    def checks(engine: sa.Engine) -> Sequence[ExtraCheck]:
        blobs = blob_store(settings, engine)

        def blob_bytes(connection: sa.Connection) -> Iterator[Finding]:
            for row in connection.execute(sa.select(tables.blobs).order_by(tables.blobs.c.sha256)):
                problem = blobs.verify(row.sha256, row.size_bytes)
                if problem is not None:
                    yield Finding(UNPLACED, f"blobs/{row.sha256}", f"{problem}: the stored bytes do not match")

        def orphan_chunks(connection: sa.Connection) -> Iterator[Finding]:
            chunks, known = tables.blob_chunks, sa.select(tables.blobs.c.sha256)
            for (sha256,) in connection.execute(
                sa.select(chunks.c.sha256).where(chunks.c.sha256.not_in(known)).distinct().order_by(chunks.c.sha256)
            ):
                yield Finding(UNPLACED, f"blob_chunks {sha256}", "chunks of a blob no record names")

        return (blob_bytes, orphan_chunks, current_explanations)

    return audit_configured(settings, tables.ledger, SOURCES, checks, verifier_key)


def current_explanations(connection: sa.Connection) -> Iterator[Finding]:
    """Each run's explanation equals the last row of its history; a reviewer's decision names its history row's
    author; no explanation row belongs to no run."""
    current, history, runs = tables.run_explanations, tables.run_explanation_history, tables.runs
    last_version = (
        sa.select(history.c.run_id, sa.func.max(history.c.version).label("version"))
        .group_by(history.c.run_id)
        .subquery("last_version")
    )
    last = (
        sa.select(history)
        .join(
            last_version,
            sa.and_(last_version.c.run_id == history.c.run_id, last_version.c.version == history.c.version),
        )
        .subquery("last")
    )
    rows = connection.execute(
        sa.select(
            runs.c.id,
            current.c.run_id.label("current_row"),
            *(current.c[c].label(f"current_{c}") for c, _ in _EXPLANATION_COLUMNS),
            current.c.advisory_id.label("current_advisory_id"),
            current.c.reviewed_by.label("current_reviewed_by"),
            current.c.reviewed_by_kind.label("current_reviewed_by_kind"),
            last.c.run_id.label("last_row"),
            *(last.c[h].label(f"last_{h}") for _, h in _EXPLANATION_COLUMNS),
            last.c.advisory_id.label("last_advisory_id"),
            last.c.changed_by.label("last_changed_by"),
            last.c.changed_by_kind.label("last_changed_by_kind"),
        )
        .select_from(runs)
        .outerjoin(current, current.c.run_id == runs.c.id)
        .outerjoin(last, last.c.run_id == runs.c.id)
        .order_by(runs.c.id)
    ).mappings()
    for row in rows:
        where = f"{run_name(row['id'])}/explanation"
        if row["current_row"] is None or row["last_row"] is None:
            missing = "current row" if row["current_row"] is None else "history"
            yield Finding(UNPLACED, where, f"the run has no explanation {missing}")
            continue
        changed = [c for c, h in _EXPLANATION_COLUMNS if row[f"current_{c}"] != row[f"last_{h}"]]
        # Versions recorded before migration 0008 did not record the advisory id.
        if row["last_advisory_id"] is not None and row["current_advisory_id"] != row["last_advisory_id"]:
            changed.append("advisory_id")
        reviewer = (row["current_reviewed_by"], row["current_reviewed_by_kind"])
        author = (row["last_changed_by"], row["last_changed_by_kind"]) if row["last_review_status"] else (None, None)
        if reviewer != author:
            changed.append("reviewed_by")
        if changed:
            yield Finding(
                UNPLACED,
                where,
                f"the current explanation is not the last row of its history (version {row['last_version']}): "
                + ", ".join(changed)
                + " differ",
            )
    orphans = connection.execute(
        sa.select(current.c.run_id)
        .outerjoin(runs, runs.c.id == current.c.run_id)
        .where(runs.c.id.is_(None))
        .order_by(current.c.run_id)
    ).scalars()
    for run_id in orphans:
        yield Finding(UNPLACED, f"run_explanations {run_id}", "an explanation of no run")
