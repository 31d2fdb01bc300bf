"""`custody ledger audit ai_gateway`: the gateway's database against its ledger and its signed checkpoints.

The shared audit (services/common/ledger/audit.py) re-derives each call's leaf from its `ai_calls` row and checks
the tree against every logged checkpoint. What a leaf cannot see is added here: that each call's record_sha256
is the digest of its record_json, the document GetCall and replays read back. A leaf covers both columns as they
were written, so this finds a record stored inconsistent in the first place, which the leaf would faithfully
preserve.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa

from services.ai_gateway import tables
from services.ai_gateway.config import AiGatewaySettings
from services.ai_gateway.domain.model import CALL_NAME_PREFIX
from services.ai_gateway.ledger_records import SOURCES
from services.common.db import create_engine
from services.common.hashing import sha256_bytes
from services.common.ledger import audit as ledger_audit
from services.common.ledger.audit import UNPLACED, AuditReport, Finding
from services.common.ledger.checkpoint_log import CheckpointLog
from services.common.ledger.note import NoteVerifier
from services.common.ledger.store import LedgerRows


def audit(settings: AiGatewaySettings) -> AuditReport:
    vkey = settings.resolved_ledger_key_file.with_suffix(".vkey").read_text(encoding="utf-8").strip()
    engine = create_engine(settings.resolved_database_url)
    try:
        return ledger_audit.audit(
            engine,
            LedgerRows(tables.ledger),
            SOURCES,
            CheckpointLog(settings.resolved_ledger_checkpoint_dir),
            NoteVerifier(vkey),
            (record_digests,),
        )
    finally:
        engine.dispose()


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
