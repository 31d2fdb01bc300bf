"""`custody ledger audit runs`: the shared audit (services/common/ledger/audit.py) over the runs database, plus what
leaves cannot see: the bytes of every blob, re-hashed against the sha256 its row names, and stray chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from services.common.ledger.audit import UNPLACED, AuditReport, ExtraCheck, Finding, audit_configured
from services.runs import tables
from services.runs.config import RunsSettings
from services.runs.ledger_records import SOURCES
from services.runs.main import blob_store


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

        return (blob_bytes, orphan_chunks)

    return audit_configured(settings, tables.ledger, SOURCES, checks, verifier_key)
