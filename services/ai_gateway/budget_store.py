"""The shared budget ledger: the gateway's budgets and rate limits in its database (services/ai_gateway/budgets.py
is the domain side, `BudgetStore` the protocol this implements). With store.py, the only modules touching the
gateway's database.

Exactness rests on one rule: every transaction here starts with a write to the rows it decides on, so it holds
those rows' locks (PostgreSQL) or the database's write lock (SQLite, one writer at a time) before it reads
anything, and its decisions cannot interleave with another replica's. `decide` takes a batch of calls (those that
arrived together, services/common/group_commit.py) in one transaction: it locks each caller's rate row, then each
(caller, day) row, in sorted order (so two replicas' batches cannot deadlock), reads the totals after the lock
(PostgreSQL's READ COMMITTED reads the latest committed row in each statement), and grants the calls in order
while they fit. The day's new reservations are written by one UPDATE that still carries the condition
`spent + reserved + granted <= limit` for their total, and must match its row. A request counts in the rate window
only when its call was admitted by both limits.
Methods are synchronous: the gateway calls them in worker threads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from services.ai_gateway.budgets import Answer, Ask, DayLimits, DayTotals, RateAsk, Reservation, Settlement
from services.ai_gateway.tables import ai_budget_days, ai_budget_holds, ai_calls, ai_rate_callers, ai_rate_requests
from services.common.db import insert_if_absent

days, holds, requests = ai_budget_days.c, ai_budget_holds.c, ai_rate_requests.c


class BudgetLedger:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def decide(self, asks: Sequence[Ask]) -> list[Answer]:
        """One transaction for a batch: each call's rate admission and reservation, in order (see the docstring)."""
        with self._engine.begin() as connection:
            return _Batch(connection).decide(asks)

    def reserve(self, hold: Reservation, limits: DayLimits) -> tuple[bool, DayTotals]:
        """One reservation alone (a batch of one)."""
        answer = self.decide([Ask(None, hold, limits)])[0]
        return answer.granted, answer.totals

    def admit_request(self, caller: str, request_id: str, now_us: int, window_us: int, limit: int) -> int | None:
        """One rate admission alone (a batch of one): None when counted, else the window's oldest request."""
        return self.decide([Ask(RateAsk(caller, request_id, now_us, window_us, limit), None, None)])[0].oldest_us

    def settle(self, hold: Reservation, tokens: int, usd: Decimal) -> bool:
        return self.settle_many([Settlement(hold, tokens, usd)])[0]

    def settle_many(self, settlements: Sequence[Settlement]) -> list[bool]:
        """Settles a batch in one transaction, in (caller, day) order like `decide`; one result per settlement."""
        order = sorted(range(len(settlements)), key=lambda i: (settlements[i].hold.caller, settlements[i].hold.day))
        released = [False] * len(settlements)
        with self._engine.begin() as connection:
            for i in order:
                done = settlements[i]
                released[i] = self._release(connection, done.hold, done.tokens, done.usd)
        return released

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


def _lock_caller(connection: sa.Connection, caller: str, now_us: int) -> sa.Insert:
    """INSERT ... ON CONFLICT DO UPDATE of the caller's lock row: a write either way, so the row (PostgreSQL) or
    the database (SQLite) stays locked until the admission commits."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(ai_rate_callers).values(caller_id=caller, admitted_at_us=now_us)
    upsert: sa.Insert = insert.on_conflict_do_update(
        index_elements=["caller_id"], set_={"admitted_at_us": insert.excluded.admitted_at_us}
    )
    return upsert


class _Batch:
    """One `decide` transaction: the locked rows' state, updated in memory as each call is decided in order."""

    def __init__(self, connection: sa.Connection) -> None:
        self._connection = connection

    def decide(self, asks: Sequence[Ask]) -> list[Answer]:
        rates = [a.rate for a in asks if a.rate is not None]
        windows = {
            caller: self._window(caller, [r for r in rates if r.caller == caller])
            for caller in sorted({r.caller for r in rates})
        }
        firsts: dict[tuple[str, str], Reservation] = {}
        for ask in asks:
            if ask.hold is not None:
                firsts.setdefault((ask.hold.caller, ask.hold.day), ask.hold)
        totals = {key: self._day(key, firsts[key]) for key in sorted(firsts)}
        taken: dict[tuple[str, str], list[Ask]] = defaultdict(list)
        admitted: list[RateAsk] = []
        answers = []
        for ask in asks:
            rate, hold = ask.rate, ask.hold
            if rate is not None:
                count, oldest = windows[rate.caller]
                if count >= rate.limit:
                    answers.append(Answer(oldest, False, DayTotals()))
                    continue
            if hold is not None:
                assert ask.limits is not None
                key = (hold.caller, hold.day)
                day = totals[key]
                if not _fits(day, hold, ask.limits):
                    answers.append(Answer(None, False, day))
                    continue
                totals[key] = DayTotals(
                    day.spent_tokens, day.spent_usd, day.reserved_tokens + hold.tokens, day.reserved_usd + hold.usd
                )
                taken[key].append(ask)
            if rate is not None:
                count, oldest = windows[rate.caller]
                windows[rate.caller] = (count + 1, rate.now_us if oldest is None else oldest)
                admitted.append(rate)
            answers.append(Answer(None, True, DayTotals()))
        for key, granted in taken.items():
            self._take(key, granted)
        if admitted:
            self._connection.execute(
                ai_rate_requests.insert(),
                [{"caller_id": r.caller, "at_us": r.now_us, "id": r.request_id} for r in admitted],
            )
        return answers

    def _window(self, caller: str, rates: list[RateAsk]) -> tuple[int, int | None]:
        """Locks the caller's rate row, drops the requests that left the earliest asker's window: (how many are
        left, the oldest). Later askers in the batch count those too: a few microseconds' worth of requests
        may be counted once more than needed, never once less."""
        connection = self._connection
        connection.execute(_lock_caller(connection, caller, max(r.now_us for r in rates)))
        since = min(r.now_us - r.window_us for r in rates)
        connection.execute(ai_rate_requests.delete().where(requests.caller_id == caller, requests.at_us <= since))
        count, oldest = connection.execute(
            sa.select(sa.func.count(), sa.func.min(requests.at_us)).where(requests.caller_id == caller)
        ).one()
        return int(count), None if oldest is None else int(oldest)

    def _day(self, key: tuple[str, str], first: Reservation) -> DayTotals:
        """Locks the caller's day (creating it, seeded from the audit store, if needed) and reads its totals."""
        connection = self._connection
        if not self._lock_day(key):
            _seed(connection, first)
            locked = self._lock_day(key)
            assert locked  # days are never deleted
        found = _totals(connection, *key)
        assert found is not None
        return found

    def _lock_day(self, key: tuple[str, str]) -> bool:
        """A write that changes nothing, so the row is locked before it is read; False when there is no row."""
        update = (
            ai_budget_days.update()
            .where(days.caller_id == key[0], days.day == key[1])
            .values(reserved_tokens=days.reserved_tokens)
        )
        return self._connection.execute(update).rowcount == 1

    def _take(self, key: tuple[str, str], granted: list[Ask]) -> None:
        """The day's reservations in one conditional UPDATE (for their total) and their holds."""
        tokens = sum(a.hold.tokens for a in granted if a.hold)
        usd = sum((a.hold.usd for a in granted if a.hold), Decimal(0))
        fits = [days.caller_id == key[0], days.day == key[1]]
        limits = granted[0].limits
        assert limits is not None
        if limits.tokens is not None:
            fits.append(days.spent_tokens + days.reserved_tokens + tokens <= limits.tokens)
        if limits.usd is not None:
            fits.append(days.spent_usd + days.reserved_usd + usd <= limits.usd)
        update = (
            ai_budget_days.update()
            .where(*fits)
            .values(reserved_tokens=days.reserved_tokens + tokens, reserved_usd=days.reserved_usd + usd)
        )
        if self._connection.execute(update).rowcount != 1:
            raise RuntimeError(f"budget day {key} changed under its lock")  # cannot happen: the row is locked
        self._connection.execute(
            ai_budget_holds.insert(),
            [
                {
                    "id": a.hold.id,
                    "caller_id": a.hold.caller,
                    "day": a.hold.day,
                    "tokens": a.hold.tokens,
                    "usd": a.hold.usd,
                    "expires_at_us": a.hold.expires_at_us,
                }
                for a in granted
                if a.hold
            ],
        )


def _seed(connection: sa.Connection, hold: Reservation) -> None:
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


def _totals(connection: sa.Connection, caller: str, day: str) -> DayTotals | None:
    row = connection.execute(
        sa.select(days.spent_tokens, days.spent_usd, days.reserved_tokens, days.reserved_usd).where(
            days.caller_id == caller, days.day == day
        )
    ).first()
    return None if row is None else _day(row)


def _fits(day: DayTotals, hold: Reservation, limits: DayLimits) -> bool:
    tokens_fit = limits.tokens is None or day.spent_tokens + day.reserved_tokens + hold.tokens <= limits.tokens
    return tokens_fit and (limits.usd is None or day.spent_usd + day.reserved_usd + hold.usd <= limits.usd)


def _day(row: Any) -> DayTotals:
    return DayTotals(int(row.spent_tokens), Decimal(row.spent_usd), int(row.reserved_tokens), Decimal(row.reserved_usd))
