"""The gateway schema (declarations only; services/ai_gateway/store.py is the only module that reads or writes it).

`ai_calls` is create-only: one row per audited call (the canonical JSON record plus indexed columns), and the
database refuses UPDATE and DELETE. `ledger_leaves` holds the leaf of every call in the gateway's tamper-evident
ledger (services/common/ledger/), written in the call's own transaction, and is immutable too. `ai_call_replays`
maps (caller, request_id) to a successful call and its content for the replay window: a cache, purged on expiry.

The shared budget ledger (services/ai_gateway/budget_store.py), which every replica on this database reserves
against: `ai_budget_days` holds per (caller, UTC day) the tokens and USD spent and reserved, changed only by
conditional UPDATEs; `ai_budget_holds` holds each reservation in flight (keyed by its call id) with its expiry, so a
crashed replica's reservations are reclaimed. `ai_rate_callers` is one row per rate-limited caller, locked by each
admission; `ai_rate_requests` the admitted requests of the last minute (the sliding window), older ones deleted.
"""

from __future__ import annotations

import sqlalchemy as sa

from services.common.ledger.store import ledger_table
from services.common.roles import RuntimeAccess

metadata = sa.MetaData()

# Tables whose rows the database refuses to UPDATE or DELETE (triggers installed by the migrations).
IMMUTABLE_TABLES = ("ai_calls", "ledger_leaves")

ai_calls = sa.Table(
    "ai_calls",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("idempotency_key", sa.String(128)),
    sa.Column("caller_id", sa.String(256), nullable=False),
    sa.Column("operation", sa.String(128), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("total_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Numeric(20, 10)),
    sa.Column("record_json", sa.Text, nullable=False),
    sa.Column("record_sha256", sa.String(64), nullable=False),
    sa.Index("ix_ai_calls_created", "created_at_us", "id"),
    sa.Index("ix_ai_calls_caller_created", "caller_id", "created_at_us", "id"),
    sa.Index("ix_ai_calls_operation_created", "operation", "created_at_us", "id"),
    sa.Index("ix_ai_calls_request_id", "request_id"),
    sa.Index("ix_ai_calls_idempotency_key", "idempotency_key"),
)

ai_call_replays = sa.Table(
    "ai_call_replays",
    metadata,
    sa.Column("caller_id", sa.String(256), primary_key=True),
    sa.Column("idempotency_key", sa.String(128), primary_key=True),
    sa.Column("call_id", sa.String(64), sa.ForeignKey("ai_calls.id"), nullable=False),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("expires_at_us", sa.BigInteger, nullable=False),
    sa.Index("ix_ai_call_replays_expires", "expires_at_us"),
)

ai_budget_days = sa.Table(
    "ai_budget_days",
    metadata,
    sa.Column("caller_id", sa.String(256), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),  # UTC, ISO 8601 (2025-06-01)
    sa.Column("spent_tokens", sa.BigInteger, nullable=False),
    sa.Column("spent_usd", sa.Numeric(20, 10), nullable=False),
    sa.Column("reserved_tokens", sa.BigInteger, nullable=False),
    sa.Column("reserved_usd", sa.Numeric(20, 10), nullable=False),
)

ai_budget_holds = sa.Table(
    "ai_budget_holds",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the call's id
    sa.Column("caller_id", sa.String(256), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("tokens", sa.BigInteger, nullable=False),
    sa.Column("usd", sa.Numeric(20, 10), nullable=False),
    sa.Column("expires_at_us", sa.BigInteger, nullable=False),
    sa.Index("ix_ai_budget_holds_expires", "expires_at_us"),
)

ai_rate_callers = sa.Table(
    "ai_rate_callers",
    metadata,
    sa.Column("caller_id", sa.String(256), primary_key=True),
    sa.Column("admitted_at_us", sa.BigInteger, nullable=False),
)

ai_rate_requests = sa.Table(
    "ai_rate_requests",
    metadata,
    sa.Column("caller_id", sa.String(256), primary_key=True),
    sa.Column("at_us", sa.BigInteger, primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
)

ledger = ledger_table(metadata)

# The runtime role's privileges beyond SELECT and INSERT (services/common/roles.py; the migrations grant them):
# DELETE on the replay cache, whose expired entries the store removes (purge_replays, and before re-claiming a
# key); UPDATE on the budget days and the rate-limit lock rows (conditional reservations); DELETE on budget holds
# (settled or reclaimed) and on requests that left the rate window.
RUNTIME_ACCESS = RuntimeAccess(
    metadata,
    IMMUTABLE_TABLES,
    update=frozenset({"ai_budget_days", "ai_rate_callers"}),
    delete=frozenset({"ai_call_replays", "ai_budget_holds", "ai_rate_requests"}),
)
