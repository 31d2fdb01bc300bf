"""`custody ledger audit lineage`: lineage's database checked against its ledger and signed checkpoints.

The shared audit (services/common/ledger/audit.py) re-derives every record's leaf from the immutable rows. What
leaves cannot see is checked here:
- the mutable rows: each version's current status and health (lineage_status, lineage_health) is not ledgered,
  its history is, so each must equal the last history row of its version, and every version must have both;
- edges outside any record: an edge belongs to its downstream version's record, so one whose version is gone
  would be covered by no leaf;
- witnessed checkpoints: the current one of each peer (lineage_witnessed, mutable) equals the last one kept in
  its history.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa

from services.common.ledger.audit import UNPLACED, AuditReport, ExtraCheck, Finding, audit_configured
from services.lineage import tables as t
from services.lineage.config import LineageSettings
from services.lineage.ledger_records import SOURCES

# Columns of a current row and the history column it must equal.
_SAME = tuple((c, c) for c in ("actor_id", "actor_kind", "actor_roles", "rationale", "request_id"))
_STATUS_COLUMNS = (("status", "status"), ("revision", "revision"), ("updated_at_us", "at_us"), *_SAME)
_HEALTH_COLUMNS = (
    ("health", "health"),
    ("revision", "revision"),
    ("cause_id", "cause_id"),
    ("updated_at_us", "at_us"),
    *_SAME,
)


def audit(settings: LineageSettings, verifier_key: str | None = None) -> AuditReport:
    """Audits the lineage database and checkpoint log the settings name, trusting only the verifier key (the one
    `custody init` wrote beside the signing key, or the auditor's own copy)."""
    return audit_configured(settings, t.ledger, SOURCES, lambda _engine: EXTRA_CHECKS, verifier_key)


def current_witnessed(connection: sa.Connection) -> Iterator[Finding]:
    """Each peer's current witnessed checkpoint equals the largest one its history kept, and every peer with a
    history has one."""
    history = t.witness_history
    largest = (
        sa.select(history.c.origin, sa.func.max(history.c.tree_size).label("tree_size"))
        .group_by(history.c.origin)
        .subquery("largest")
    )
    kept = {
        row.origin: row
        for row in connection.execute(
            sa.select(history).join(
                largest, sa.and_(largest.c.origin == history.c.origin, largest.c.tree_size == history.c.tree_size)
            )
        )
    }
    current = {row.origin: row for row in connection.execute(sa.select(t.witnessed))}
    for origin in sorted(set(kept) | set(current)):
        row, last = current.get(origin), kept.get(origin)
        columns = ("tree_size", "root_hash", "note", "witnessed_at_us")
        if row is None or last is None or any(getattr(row, c) != getattr(last, c) for c in columns):
            yield Finding(
                UNPLACED, f"witness/{origin}", "the current witnessed checkpoint is not the last one its history kept"
            )


def current_states(connection: sa.Connection) -> Iterator[Finding]:
    """Each version's current status and health equal the last row of its history."""
    yield from _current_equals_history(connection, "status", t.status, t.status_history, _STATUS_COLUMNS)
    yield from _current_equals_history(connection, "health", t.health, t.health_history, _HEALTH_COLUMNS)


def _current_equals_history(
    connection: sa.Connection,
    what: str,
    current: sa.Table,
    history: sa.Table,
    columns: tuple[tuple[str, str], ...],
) -> Iterator[Finding]:
    last_revision = (
        sa.select(history.c.version_id, sa.func.max(history.c.revision).label("revision"))
        .group_by(history.c.version_id)
        .subquery("last_revision")
    )
    last = (
        sa.select(history)
        .join(
            last_revision,
            sa.and_(last_revision.c.version_id == history.c.version_id, last_revision.c.revision == history.c.revision),
        )
        .subquery("last")
    )
    rows = connection.execute(
        sa.select(
            t.versions.c.id,
            t.versions.c.name,
            *(current.c[c].label(f"current_{c}") for c, _ in columns),
            current.c.version_id.label("current_row"),
            *(last.c[h].label(f"last_{h}") for _, h in columns),
            last.c.version_id.label("last_row"),
        )
        .select_from(t.versions)
        .outerjoin(current, current.c.version_id == t.versions.c.id)
        .outerjoin(last, last.c.version_id == t.versions.c.id)
        .order_by(t.versions.c.id)
    ).mappings()
    for row in rows:
        where = f"{row['name']} ({what})"
        if row["current_row"] is None or row["last_row"] is None:
            missing = "current row" if row["current_row"] is None else "history"
            yield Finding(UNPLACED, where, f"the version has no {what} {missing}")
            continue
        changed = [c for c, h in columns if row[f"current_{c}"] != row[f"last_{h}"]]
        if changed:
            yield Finding(
                UNPLACED,
                where,
                f"the current {what} is not the last row of its history (revision {row['last_revision']}): "
                + ", ".join(changed)
                + " differ",
            )
    orphans = connection.execute(
        sa.select(current.c.version_id)
        .outerjoin(t.versions, t.versions.c.id == current.c.version_id)
        .where(t.versions.c.id.is_(None))
        .order_by(current.c.version_id)
    ).scalars()
    for version_id in orphans:
        yield Finding(UNPLACED, f"{current.name} {version_id}", f"a current {what} of no version")


def orphan_edges(connection: sa.Connection) -> Iterator[Finding]:
    """Edges whose downstream version is gone: part of no record, so no leaf covers them."""
    rows = connection.execute(
        sa.select(t.edges)
        .outerjoin(t.versions, t.versions.c.id == t.edges.c.downstream_id)
        .where(t.versions.c.id.is_(None))
        .order_by(t.edges.c.downstream_id, t.edges.c.position)
    ).mappings()
    for row in rows:
        yield Finding(
            UNPLACED,
            f"lineage_edges ({row['downstream_id']}, {row['position']})",
            "an edge of no version: no ledger record covers it",
        )


EXTRA_CHECKS: tuple[ExtraCheck, ...] = (current_states, orphan_edges, current_witnessed)
