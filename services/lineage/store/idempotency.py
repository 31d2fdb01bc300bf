"""Request-id replay inside a write transaction: the stored result of an earlier identical request, or nothing.

The row is written in the same transaction as the work it answers for, so a replay never sees half a result.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from services.common.clock import to_us
from services.common.idempotency import ensure_same_request
from services.lineage import tables as t
from services.lineage.domain.model import Idempotency


def replay(connection: sa.Connection, idem: Idempotency | None) -> str | None:
    """The result recorded for this caller's request id; ALREADY_EXISTS when it came with another request."""
    if idem is None:
        return None
    row = connection.execute(
        sa.select(t.idempotency.c.fingerprint, t.idempotency.c.result).where(
            t.idempotency.c.principal_id == idem.principal_id, t.idempotency.c.request_id == idem.request_id
        )
    ).first()
    if row is None:
        return None
    ensure_same_request(idem.request_id, row.fingerprint, idem.fingerprint)
    return str(row.result)


def remember(connection: sa.Connection, idem: Idempotency | None, result: str, at: datetime) -> list[tuple[str, str]]:
    """Stores the result for this caller's request id; returns the keys of the rows written (for the ledger)."""
    if idem is None:
        return []
    connection.execute(
        t.idempotency.insert().values(
            principal_id=idem.principal_id,
            request_id=idem.request_id,
            method=idem.method,
            fingerprint=idem.fingerprint,
            result=result,
            created_at_us=to_us(at),
        )
    )
    return [(idem.principal_id, idem.request_id)]
