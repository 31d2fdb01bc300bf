"""`custody ledger audit ai_gateway`: the shared audit (services/common/ledger/audit.py) over the gateway database,
plus what a leaf cannot see: that each call's record_sha256 is the digest of its record_json, the document GetCall
and replays read back. A leaf covers both columns as they were written, so this finds a record that was stored
inconsistent in the first place, which its leaf would faithfully preserve."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from services.ai_gateway import tables
from services.ai_gateway.config import AiGatewaySettings
from services.ai_gateway.domain.model import CALL_NAME_PREFIX
from services.ai_gateway.ledger_records import SOURCES
from services.common.hashing import sha256_bytes
from services.common.ledger.audit import UNPLACED, AuditReport, ExtraCheck, Finding, audit_configured
from services.common.ledger.store import LedgerRows


def audit(settings: AiGatewaySettings, verifier_key: str | None = None) -> AuditReport:
    def checks(engine: sa.Engine) -> Sequence[ExtraCheck]:
        return (record_digests,)

    return audit_configured(settings, tables.ledger, SOURCES, checks, verifier_key)


def record_digests(connection: sa.Connection) -> Iterator[Finding]:
    """Every call whose record_sha256 is not the sha256 of its record_json, placed at the call's leaf."""
    c = tables.ai_calls.c
    query = sa.select(c.id, c.record_json, c.record_sha256).order_by(c.created_at_us, c.id)
    bad = [
        CALL_NAME_PREFIX + row.id
        for row in connection.execute(query)
        if sha256_bytes(row.record_json.encode("utf-8")) != row.record_sha256
    ]
    leaves = LedgerRows(tables.ledger).indexes(connection, bad)
    for name in bad:
        index = leaves.get(name)
        yield Finding(
            UNPLACED if index is None else index,
            name if index is None else f"leaf {index} ({name})",
            "record_sha256 is not the sha256 of record_json",
        )
