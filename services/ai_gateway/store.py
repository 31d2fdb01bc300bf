"""The gateway's persistence: with budget_store.py (the shared budget ledger), the only modules touching its database.

`ai_calls` is create-only: one row per audited call (the canonical JSON record plus indexed columns), and the
database refuses UPDATE and DELETE. `ai_call_replays` maps (caller, request_id) to a successful call and its
content for the replay window; its primary key makes concurrent claims converge on one winner. Every stored call
gets its leaf in the gateway's ledger in the transaction that stores it (the batch's, under group commit), so a
committed call always has its leaf and a rolled-back one never does. Methods are synchronous: the gateway runs
reads in worker threads and writes on its group-commit writer thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from services.ai_gateway.domain.model import AuditedCall, CallRecord, ListFilters
from services.ai_gateway.ledger_records import CALLS
from services.ai_gateway.tables import ai_call_replays, ai_calls
from services.common.clock import to_us
from services.common.db import insert_if_absent, insert_rows, keyset
from services.common.hashing import canonical_json, sha256_bytes
from services.common.ledger import ledger as ledgers
from services.common.ledger.leaves import LedgerPosition
from services.common.ledger.ledger import Ledger


class RecordCorrupted(Exception):
    """A stored record no longer matches its digest: it was changed outside the gateway."""


@dataclass(frozen=True)
class ReplayEntry:
    record: CallRecord
    request_sha256: str
    content: str
    ledger: LedgerPosition | None = None


@dataclass(frozen=True)
class Stored:
    """What storing one record gave: where its leaf sits (None without a ledger), and the call holding its
    request_id when another call claimed it first."""

    ledger: LedgerPosition | None
    holder: ReplayEntry | None = None


@dataclass(frozen=True)
class ReplayClaim:
    """Claim of (caller, idempotency key) for a successful call, stored with it in one transaction."""

    content: str
    now_us: int
    expires_at_us: int


class CallStore:
    def __init__(self, engine: sa.Engine, ledger: Ledger | None = None) -> None:
        self._engine = engine
        self._ledger = ledger

    def insert(self, record: CallRecord, claim: ReplayClaim | None = None) -> Stored:
        """Stores one record (and its replay claim); see insert_many."""
        return self.insert_many([(record, claim)])[0]

    def insert_many(self, items: list[tuple[CallRecord, ReplayClaim | None]]) -> list[Stored]:
        """Stores records, their replay claims and their ledger leaves in one transaction (one durable commit for
        the batch).

        A claim on a (caller, key) another call already holds is not taken: the record is stored anyway (a
        provider answered it: it is audited, with its own leaf) and the holder is returned with it, so the caller
        can answer with the original result."""
        with self._engine.begin() as connection:
            insert_rows(connection, ai_calls, [_row(call) for call, _ in items])
            holders = self._claim(connection, items)
            # Last: on PostgreSQL the append holds the ledger's lock until this transaction commits.
            placed = ledgers.record_leaves(self._ledger, connection, CALLS, [(call.call_id,) for call, _ in items])
        return [Stored(placed.get(call.envelope.call), _placed(holders.get(call.call_id), placed)) for call, _ in items]

    def _claim(
        self, connection: sa.Connection, items: list[tuple[CallRecord, ReplayClaim | None]]
    ) -> dict[str, ReplayEntry]:
        """Takes the replay claims of the successful calls among `items`; call id -> holder, for each claim that
        another call holds."""
        claimed = [(record, claim) for record, claim in items if claim is not None and record.idempotency_key]
        if not claimed:
            return {}
        replays = ai_call_replays.c
        for record, claim in claimed:  # an expired claim not yet purged must not block a new one
            connection.execute(
                ai_call_replays.delete().where(
                    replays.caller_id == record.envelope.caller.id,
                    replays.idempotency_key == record.idempotency_key,
                    replays.expires_at_us <= claim.now_us,
                )
            )
        connection.execute(
            insert_if_absent(connection, ai_call_replays),
            [
                {
                    "caller_id": record.envelope.caller.id,
                    "idempotency_key": record.idempotency_key,
                    "call_id": record.call_id,
                    "request_sha256": record.request_sha256,
                    "content": claim.content,
                    "expires_at_us": claim.expires_at_us,
                }
                for record, claim in claimed
            ],
        )
        holders: dict[str, ReplayEntry] = {}
        for record, _ in claimed:
            holder = self._replay(connection, record.envelope.caller.id, record.idempotency_key, None)
            if holder is not None and holder.record.call_id != record.call_id:
                holders[record.call_id] = holder
        return holders

    def find_replay(self, caller_id: str, idempotency_key: str, *, now_us: int) -> ReplayEntry | None:
        with self._engine.connect() as connection:
            return self._replay(connection, caller_id, idempotency_key, now_us)

    def _replay(
        self, connection: sa.Connection, caller_id: str, idempotency_key: str, now_us: int | None
    ) -> ReplayEntry | None:
        replays = ai_call_replays.c
        query = (
            sa.select(replays.request_sha256, replays.content, ai_calls.c.record_json, ai_calls.c.record_sha256)
            .join(ai_calls, ai_calls.c.id == replays.call_id)
            .where(replays.caller_id == caller_id, replays.idempotency_key == idempotency_key)
        )
        if now_us is not None:
            query = query.where(replays.expires_at_us > now_us)
        found = connection.execute(query).first()
        if found is None:
            return None
        call = _record(found.record_json, found.record_sha256)
        placed = ledgers.leaf_positions(self._ledger, connection, [call.envelope.call])
        return ReplayEntry(call, found.request_sha256, found.content, placed.get(call.envelope.call))

    def purge_replays(self, now_us: int) -> int:
        """Forgets replay content past its retention (the audit rows stay)."""
        with self._engine.begin() as connection:
            return connection.execute(
                ai_call_replays.delete().where(ai_call_replays.c.expires_at_us <= now_us)
            ).rowcount

    def get(self, call_id: str) -> AuditedCall | None:
        with self._engine.connect() as connection:
            found = connection.execute(
                sa.select(ai_calls.c.record_json, ai_calls.c.record_sha256).where(ai_calls.c.id == call_id)
            ).first()
            return None if found is None else _audited(connection, self._ledger, [found])[0]

    def list(self, filters: ListFilters, limit: int, after: tuple[int, str] | None) -> list[AuditedCall]:
        """Newest first, keyset-paginated on (created_at_us, id)."""
        c = ai_calls.c
        query = sa.select(c.record_json, c.record_sha256)
        if filters.request_id:
            query = query.where(sa.or_(c.request_id == filters.request_id, c.idempotency_key == filters.request_id))
        if filters.operation:
            query = query.where(c.operation == filters.operation)
        if filters.caller:
            query = query.where(c.caller_id == filters.caller)
        if filters.outcome is not None:
            query = query.where(c.outcome == filters.outcome.value)
        if filters.start_us is not None:
            query = query.where(c.created_at_us >= filters.start_us)
        if filters.end_us is not None:
            query = query.where(c.created_at_us < filters.end_us)
        query = keyset(query, c.created_at_us, c.id, after, limit, newest_first=True)
        with self._engine.connect() as connection:
            return _audited(connection, self._ledger, list(connection.execute(query)))


def _row(record: CallRecord) -> dict[str, object]:
    document = canonical_json(record.to_dict())
    envelope = record.envelope
    return {
        "id": record.call_id,
        "created_at_us": to_us(envelope.created_at),
        "request_id": envelope.request_id,
        "idempotency_key": record.idempotency_key or None,
        "caller_id": envelope.caller.id,
        "operation": envelope.operation,
        "category": envelope.category,
        "provider": envelope.provider,
        "model": envelope.model,
        "outcome": record.outcome.value,
        "total_tokens": envelope.usage.total_tokens if envelope.usage else 0,
        "cost_usd": None if record.cost.estimate_usd is None else Decimal(str(record.cost.estimate_usd)),
        "record_json": document.decode("utf-8"),
        "record_sha256": sha256_bytes(document),
    }


def _audited(connection: sa.Connection, ledger: Ledger | None, rows: list[Any]) -> list[AuditedCall]:
    """The records of these rows with their ledger positions (one more query, none without a ledger)."""
    calls = [_record(row.record_json, row.record_sha256) for row in rows]
    placed = ledgers.leaf_positions(ledger, connection, [call.envelope.call for call in calls])
    return [AuditedCall(call, placed.get(call.envelope.call)) for call in calls]


def _placed(holder: ReplayEntry | None, placed: dict[str, LedgerPosition]) -> ReplayEntry | None:
    """A holder stored in the same batch got its leaf only after it was read: its position is among `placed`."""
    if holder is None or holder.ledger is not None:
        return holder
    return replace(holder, ledger=placed.get(holder.record.envelope.call))


def _record(document: str, digest: str) -> CallRecord:
    if sha256_bytes(document.encode("utf-8")) != digest:
        raise RecordCorrupted("an audit record does not match its sha256")
    return CallRecord.from_dict(json.loads(document))
