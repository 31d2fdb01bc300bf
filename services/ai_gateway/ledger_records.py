"""The gateway's records as its ledger sees them: one leaf per audited AI call, named by the call (`calls/<id>`).

The leaf digests every column of the call's `ai_calls` row (row_sha256) and names its record_sha256, the digest
of the canonical record JSON a verifier compares with the envelope it holds. Those rows are every row of every
immutable table the gateway has besides the ledger itself (tables.IMMUTABLE_TABLES).

`ai_call_replays` is not a record: it is a cache of successful answers kept for the replay window so a repeated
request_id is answered without calling a provider again, and it is purged when that window ends. Its rows point
at audited calls, which carry the leaves; a replayed answer is the original call's record, with its leaf.
"""

from __future__ import annotations

from services.ai_gateway import tables
from services.ai_gateway.domain.model import CALL_NAME_PREFIX
from services.common.ledger.leaves import RecordSource, TableRecords

CALLS = TableRecords(
    kind="call",
    table=tables.ai_calls,
    name=lambda row: CALL_NAME_PREFIX + str(row["id"]),
    time_column="created_at_us",
    principal_column="caller_id",
    request_id_column="request_id",
    digest_columns=("record_sha256",),
)

SOURCES: tuple[RecordSource, ...] = (CALLS,)
