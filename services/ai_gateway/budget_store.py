"""The shared budget ledger: the gateway's budgets and rate limits in its database (services/ai_gateway/budgets.py
is the domain side, `BudgetStore` the protocol this implements). With store.py, the only modules touching the
gateway's database.

Exactness rests on one rule: every transaction here starts with a write to the row it decides on, so it holds
that row's lock (PostgreSQL) or the database's write lock (SQLite, one writer at a time) before it reads
anything, and its decision cannot interleave with another replica's. A reservation is a single conditional
UPDATE (`reserved + spent + n <= limit`): PostgreSQL re-evaluates its WHERE on the latest committed row after
waiting for a concurrent writer, so two replicas can never both take the last tokens. A rate-limit admission
first upserts the caller's lock row, then deletes requests that left the window, counts the rest and adds one.
Methods are synchronous: the gateway calls them in worker threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from services.ai_gateway.budgets import DayLimits, DayTotals, Reservation
from services.ai_gateway.tables import ai_budget_days, ai_budget_holds, ai_calls, ai_rate_callers, ai_rate_requests
from services.common.db import insert_if_absent

days, holds = ai_budget_days.c, ai_budget_holds.c


class BudgetLedger:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def reserve(self, hold: Reservation, limits: DayLimits) -> tuple[bool, DayTotals]:
        with self._engine.begin() as connection:
            if self._take(connection, hold, limits) == 0:
                if self._totals(connection, hold.caller, hold.day) is not None:
                    return False, self._refused(connection, hold)
                self._seed(connection, hold)
                if self._take(connection, hold, limits) == 0:
                    return False, self._refused(connection, hold)
            connection.execute(
                ai_budget_holds.insert().values(
                    id=hold.id,
                    caller_id=hold.caller,
                    day=hold.day,
                    tokens=hold.tokens,
                    usd=hold.usd,
                    expires_at_us=hold.expires_at_us,
                )
            )
            return True, DayTotals()

    def _take(self, connection: sa.Connection, hold: Reservation, limits: DayLimits) -> int:
        """The conditional UPDATE: 1 when the hold fitted (and is now counted as reserved), else 0."""
        fits = [days.caller_id == hold.caller, days.day == hold.day]
        if limits.tokens is not None:
            fits.append(days.spent_tokens + days.reserved_tokens + hold.tokens <= limits.tokens)
        if limits.usd is not None:
            fits.append(days.spent_usd + days.reserved_usd + hold.usd <= limits.usd)
        return connection.execute(
            ai_budget_days.update()
            .where(*fits)
            .values(reserved_tokens=days.reserved_tokens + hold.tokens, reserved_usd=days.reserved_usd + hold.usd)
        ).rowcount

    def _seed(self, connection: sa.Connection, hold: Reservation) -> None:
        """Creates the caller's day from what its audited calls used since midnight (a concurrent creator wins)."""
        calls = ai_calls.c
        spent = sa.select(
            sa.literal(hold.caller, sa.String),
            sa.literal(hold.day, sa.String),
            sa.func.coalesce(sa.func.sum(calls.total_tokens), 0),
            sa.func.coalesce(sa.func.sum(calls.cost_usd), 0),
            sa.literal(0, sa.BigInteger),
            sa.literal(0, sa.BigInteger),
        ).where(calls.caller_id == hold.caller, calls.created_at_us >= hold.day_start_us)
        insert = insert_if_absent(connection, ai_budget_days).from_select(
            ["caller_id", "day", "spent_tokens", "spent_usd", "reserved_tokens", "reserved_usd"], spent
        )
        connection.execute(insert)

    def _refused(self, connection: sa.Connection, hold: Reservation) -> DayTotals:
        found = self._totals(connection, hold.caller, hold.day)
        assert found is not None  # days are never deleted
        return found

    def _totals(self, connection: sa.Connection, caller: str, day: str) -> DayTotals | None:
        row = connection.execute(
            sa.select(days.spent_tokens, days.spent_usd, days.reserved_tokens, days.reserved_usd).where(
                days.caller_id == caller, days.day == day
            )
        ).first()
        return None if row is None else _day(row)

    def settle(self, hold: Reservation, tokens: int, usd: Decimal) -> bool:
        with self._engine.begin() as connection:
            return self._release(connection, hold, tokens, usd)

    def _release(self, connection: sa.Connection, hold: Reservation, tokens: int, usd: Decimal) -> bool:
        """Deleting the hold first decides who releases it (its call settling, or a reclaim): one of them only."""
        if connection.execute(ai_budget_holds.delete().where(holds.id == hold.id)).rowcount == 0:
            return False
        connection.execute(
            ai_budget_days.update()
            .where(days.caller_id == hold.caller, days.day == hold.day)
            .values(
                reserved_tokens=days.reserved_tokens - hold.tokens,
                reserved_usd=days.reserved_usd - hold.usd,
                spent_tokens=days.spent_tokens + tokens,
                spent_usd=days.spent_usd + usd,
            )
        )
        return True

    def reclaim_expired(self, now_us: int, caller: str | None = None) -> int:
        calls = ai_calls.c
        query = (
            sa.select(holds.id, holds.caller_id, holds.day, holds.tokens, holds.usd, calls.total_tokens, calls.cost_usd)
            .outerjoin(ai_calls, calls.id == holds.id)
            .where(holds.expires_at_us <= now_us)
            .order_by(holds.id)
        )
        if caller is not None:
            query = query.where(holds.caller_id == caller)
        with self._engine.connect() as connection:
            expired = connection.execute(query).all()
        reclaimed = 0
        for row in expired:  # one transaction each: a settle locks its hold, then its day, and so does this
            hold = Reservation(row.id, row.caller_id, row.day, 0, row.tokens, Decimal(row.usd), 0)
            audited = row.total_tokens is not None
            tokens = row.total_tokens if audited else hold.tokens
            usd = Decimal(row.cost_usd) if audited and row.cost_usd is not None else hold.usd
            reclaimed += self.settle(hold, tokens, usd)
        return reclaimed

    def day_totals(self, day: str) -> Mapping[str, DayTotals]:
        query = sa.select(
            days.caller_id, days.spent_tokens, days.spent_usd, days.reserved_tokens, days.reserved_usd
        ).where(days.day == day)
        with self._engine.connect() as connection:
            return {row.caller_id: _day(row) for row in connection.execute(query)}

    def admit_request(self, caller: str, request_id: str, now_us: int, window_us: int, limit: int) -> int | None:
        requests = ai_rate_requests.c
        with self._engine.begin() as connection:
            connection.execute(_lock_caller(connection, caller, now_us))
            connection.execute(
                ai_rate_requests.delete().where(requests.caller_id == caller, requests.at_us <= now_us - window_us)
            )
            count, oldest = connection.execute(
                sa.select(sa.func.count(), sa.func.min(requests.at_us)).where(requests.caller_id == caller)
            ).one()
            if count >= limit:
                return int(oldest)
            connection.execute(ai_rate_requests.insert().values(caller_id=caller, at_us=now_us, id=request_id))
            return None


def _lock_caller(connection: sa.Connection, caller: str, now_us: int) -> sa.Insert:
    """INSERT ... ON CONFLICT DO UPDATE of the caller's lock row: a write either way, so the row (PostgreSQL) or
    the database (SQLite) stays locked until the admission commits."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(ai_rate_callers).values(caller_id=caller, admitted_at_us=now_us)
    upsert: sa.Insert = insert.on_conflict_do_update(
        index_elements=["caller_id"], set_={"admitted_at_us": insert.excluded.admitted_at_us}
    )
    return upsert


def _day(row: Any) -> DayTotals:
    return DayTotals(int(row.spent_tokens), Decimal(row.spent_usd), int(row.reserved_tokens), Decimal(row.reserved_usd))
