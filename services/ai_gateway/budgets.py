"""Per-caller limits: requests per minute (sliding window), tokens and USD per UTC day (hard limits), shared by every
gateway replica on one database.

A call is admitted only if its worst case fits: the prompt's estimated tokens plus max_tokens (and their price)
are reserved up front, so 256 concurrent calls cannot jointly overshoot a budget; the reservation is replaced by
the provider's reported usage when the call ends. The totals live in the database, not here (`BudgetStore`,
implemented by services/ai_gateway/budget_store.py): a call's rate admission and reservation are decided in one
transaction that holds the caller's rows locked, granted only if spent + reserved + this call fits, so replicas
cannot jointly overshoot either. Calls arriving together share that transaction (group commit,
services/common/group_commit.py): their caller's day is locked once and they are granted in order while they fit.
A day's totals are seeded from the audit store the first time a caller reserves on it, so a day under way before
an upgrade keeps its spend.

Settling is off the call's path: the call answers once its audit record is durable, and its settlement is queued
(at most MAX_PENDING_SETTLES; a call waits for room beyond that) and committed in the background, batched like
reservations. A settlement can only lower a reservation (to the usage reported), so while it is pending the
budget is under-granted, never over-granted; a reservation refused here first waits for this replica's pending
settlements and asks again. `flush()` waits for those queued so far; `close()` (at shutdown) for all of them.

A reservation lives until its call's deadline plus HOLD_GRACE_S. One that was never settled (its replica crashed,
or could not reach the database when the call ended) is then reclaimed: charged at the usage its call's audit
record reports, or at the whole reservation when the call left no record (the provider may have answered before
the crash), never refunded unseen. Reclaiming happens when a caller would be refused, and beside the replay purge
(services/ai_gateway/main.py, every REPLAY_PURGE_INTERVAL_S).

The only in-process shortcut is a refusal: a caller's spend only grows during a day and the window's requests
stay in it until they age out, so a refusal seen here stays true until then and is repeated without asking the
database. Nothing is ever granted from memory. A database failure during admission propagates (the call fails
closed as UNAVAILABLE, services/common/outage_errors.py); one during settlement is logged, and the reservation is
reclaimed on expiry. Windows and days use each replica's clock: keep the replicas' clocks synchronised (NTP).

Metrics (services/common/metrics.py): refusals by caller and limit, and what each caller has left today under each
daily limit, read from the shared totals. Only callers who reserved today are reported: they are authenticated
principals from the credentials file, so the label's values are as few as the principals.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from services.ai_gateway.config import Budget
from services.common.clock import to_us
from services.common.errors import FailedPrecondition, ResourceExhausted
from services.common.group_commit import GroupCommit
from services.common.metrics import (
    BUDGET_TOKENS_REMAINING,
    BUDGET_USD_REMAINING,
    GATEWAY_BUDGET_REFUSALS,
    Reading,
)

WINDOW_S = 60.0
DEFAULT_KEY = "*"
# How long a reservation outlives its call's deadline before it may be reclaimed.
HOLD_GRACE_S = 300.0
# Settlements queued and not yet committed, at most; a call settling beyond that waits for room.
MAX_PENDING_SETTLES = 1024
# How long a gauge read waits for this replica's pending settlements before reading the totals.
GAUGE_SETTLE_WAIT_S = 5.0

log = logging.getLogger("custody.ai_gateway.budgets")


@dataclass(frozen=True)
class DayTotals:
    """One caller's day: what settled calls used, and what calls in flight reserved."""

    spent_tokens: int = 0
    spent_usd: Decimal = Decimal(0)
    reserved_tokens: int = 0
    reserved_usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class DayLimits:
    tokens: int | None
    usd: Decimal | None


@dataclass(frozen=True)
class Reservation:
    """One call's worst case, held against its caller's day until settled or, after `expires_at_us`, reclaimed."""

    id: str  # the call's id (its audit record's, once recorded)
    caller: str
    day: str
    day_start_us: int
    tokens: int
    usd: Decimal
    expires_at_us: int


NO_RESERVATION = Reservation("", "", "", 0, 0, Decimal(0), 0)


@dataclass(frozen=True)
class RateAsk:
    """One request to count in its caller's window of `window_us` ending at `now_us`, if fewer than `limit`."""

    caller: str
    request_id: str
    now_us: int
    window_us: int
    limit: int


@dataclass(frozen=True)
class Ask:
    """One call's admission: its rate request and/or its reservation (with the day's limits), decided together."""

    rate: RateAsk | None
    hold: Reservation | None
    limits: DayLimits | None


@dataclass(frozen=True)
class Answer:
    """`oldest_us`: set when the window was full (its oldest request); `granted`: admitted by both limits;
    `totals`: the day's totals when the reservation was refused."""

    oldest_us: int | None
    granted: bool
    totals: DayTotals


@dataclass(frozen=True)
class Settlement:
    hold: Reservation
    tokens: int
    usd: Decimal


class BudgetStore(Protocol):
    """The shared totals. Each method is one transaction, atomic against every other replica's."""

    def decide(self, asks: Sequence[Ask]) -> list[Answer]:
        """In one transaction, in order: counts each ask's request if its window has room and records its hold
        if spent + reserved + hold fits its limits (creating the day, seeded from the audit store, if needed).
        A request counts only when its call is admitted by both; a hold is not recorded when its request is
        refused."""
        ...

    def settle_many(self, settlements: Sequence[Settlement]) -> list[bool]:
        """In one transaction, replaces each hold by the usage given; False for one reclaimed already (nothing
        changes for it then)."""
        ...

    def reclaim_expired(self, now_us: int, caller: str | None = None) -> int:
        """Charges the holds expired by `now_us` (audited usage, else the whole hold); how many."""
        ...

    def day_totals(self, day: str) -> Mapping[str, DayTotals]:
        """Every caller's totals on `day`."""
        ...


class Budgets:
    def __init__(
        self,
        limits: Mapping[str, Budget],
        store: BudgetStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = dict(limits)
        self._store = store
        self._clock = clock
        # Refusals seen, repeated without the database while they must hold (see the module docstring).
        self._spent_seen: dict[str, tuple[str, DayTotals]] = {}
        self._window_full_until: dict[str, float] = {}
        self._asks: GroupCommit[Ask, Answer] = GroupCommit(store.decide, "ai-budget-admit")
        self._settles: GroupCommit[Settlement, bool] = GroupCommit(store.settle_many, "ai-budget-settle")
        # Settlements queued and not committed yet; their futures complete on the settling thread.
        self._pending: set[Future[bool]] = set()
        self._pending_lock = threading.Lock()
        BUDGET_TOKENS_REMAINING.register(self.tokens_remaining)
        BUDGET_USD_REMAINING.register(self.usd_remaining)

    def limit_for(self, caller: str) -> Budget | None:
        return self._limits.get(caller) or self._limits.get(DEFAULT_KEY)

    async def admit(
        self, caller: str, call_id: str, lasts_s: float, worst_case: Callable[[], tuple[int, Decimal | None]]
    ) -> Reservation:
        """Counts the call against its caller's per-minute limit and reserves its worst case (`worst_case()`,
        asked only when a daily limit applies) for `lasts_s` (its deadline) plus HOLD_GRACE_S, in one
        transaction. RATE_LIMITED (with RetryInfo) when the window is full; BUDGET_EXCEEDED when the worst case
        does not fit; PRICE_UNKNOWN when a USD budget applies and the model has no price (an unenforceable budget
        is refused, not ignored)."""
        limit = self.limit_for(caller)
        if limit is None:
            return NO_RESERVATION
        now = self._clock()
        rate = self._rate_ask(caller, call_id, limit, now)
        hold, limits = None, None
        if limit.tokens_per_day is not None or limit.usd_per_day is not None:
            tokens, usd = worst_case()
            hold, limits = self._hold(caller, limit, tokens, usd, call_id, now, lasts_s)
        if rate is None and hold is None:
            return NO_RESERVATION
        await self._ask(Ask(rate, hold, limits), now)
        return NO_RESERVATION if hold is None else hold

    async def admit_request(self, caller: str, request_id: str) -> None:
        """Counts one request against the per-minute limit alone; RATE_LIMITED (with RetryInfo) when used up."""
        limit = self.limit_for(caller)
        if limit is None:
            return
        now = self._clock()
        rate = self._rate_ask(caller, request_id, limit, now)
        if rate is not None:
            await self._ask(Ask(rate, None, None), now)

    async def reserve(
        self, caller: str, tokens: int, usd: Decimal | None, *, call_id: str, lasts_s: float
    ) -> Reservation:
        """Reserves a call's worst case alone (no rate admission); refusals as `admit`'s."""
        limit = self.limit_for(caller)
        if limit is None or (limit.tokens_per_day is None and limit.usd_per_day is None):
            return NO_RESERVATION
        now = self._clock()
        hold, limits = self._hold(caller, limit, tokens, usd, call_id, now, lasts_s)
        await self._ask(Ask(None, hold, limits), now)
        return hold

    def _rate_ask(self, caller: str, request_id: str, limit: Budget, now: float) -> RateAsk | None:
        if limit.requests_per_minute is None:
            return None
        full_until = self._window_full_until.get(caller, 0.0)
        if now < full_until:
            self._rate_limited(caller, limit.requests_per_minute, full_until - now)
        return RateAsk(caller, request_id, to_us_f(now), to_us_f(WINDOW_S), limit.requests_per_minute)

    def _hold(
        self, caller: str, limit: Budget, tokens: int, usd: Decimal | None, call_id: str, now: float, lasts_s: float
    ) -> tuple[Reservation, DayLimits]:
        if limit.usd_per_day is not None and usd is None:
            raise FailedPrecondition(
                "PRICE_UNKNOWN",
                f"{caller} has a USD budget but this model has no price in the price table, so its cost cannot "
                "be bounded; choose a priced model or add it to the price table",
                metadata={"caller": caller},
            )
        start = self._day_start()
        day = start.date().isoformat()
        limits = DayLimits(limit.tokens_per_day, None if limit.usd_per_day is None else Decimal(str(limit.usd_per_day)))
        hold = Reservation(
            call_id, caller, day, to_us(start), tokens, usd or Decimal(0), to_us_f(now + lasts_s + HOLD_GRACE_S)
        )
        seen = self._spent_seen.get(caller)
        if seen is not None and seen[0] == day and _spent_exceeds(seen[1], hold, limits):
            self._exceeded(hold, limits, seen[1])
        return hold, limits

    async def _ask(self, ask: Ask, now: float) -> None:
        """Asks the shared ledger (batched with the calls asking together); raises the refusal it answers."""
        answer = await self._asks.submit_async(ask)
        hold = ask.hold
        if hold is not None and answer.oldest_us is None and not answer.granted:
            # Room this replica's pending settlements give back, or holds a crashed replica left (charged at
            # their audited usage, maybe less than they reserved): ask once more if there may be some.
            flushed = await self.flush()
            if flushed or await asyncio.to_thread(self._store.reclaim_expired, to_us_f(now), hold.caller) > 0:
                answer = await self._asks.submit_async(ask)
        if answer.oldest_us is not None:
            assert ask.rate is not None
            until = answer.oldest_us / 1_000_000 + WINDOW_S
            self._window_full_until[ask.rate.caller] = until
            self._rate_limited(ask.rate.caller, ask.rate.limit, until - now)
        if hold is not None and ask.limits is not None and not answer.granted:
            self._spent_seen[hold.caller] = (hold.day, answer.totals)
            self._exceeded(hold, ask.limits, answer.totals)

    def _rate_limited(self, caller: str, per_minute: int, retry: float) -> None:
        retry = max(0.001, retry)
        GATEWAY_BUDGET_REFUSALS.add(1, {"caller": caller, "limit": "requests_per_minute"})
        raise ResourceExhausted(
            "RATE_LIMITED",
            f"{caller} may make {per_minute} requests per minute; try again in {retry:.1f} s",
            metadata={"caller": caller, "limit": "requests_per_minute"},
            retry_after_s=retry,
        )

    def needs_usd_price(self, caller: str) -> bool:
        limit = self.limit_for(caller)
        return limit is not None and limit.usd_per_day is not None

    def _exceeded(self, hold: Reservation, limits: DayLimits, day: DayTotals) -> None:
        problems: list[tuple[str, str]] = []
        if limits.tokens is not None and day.spent_tokens + day.reserved_tokens + hold.tokens > limits.tokens:
            problems.append(
                (
                    "tokens_per_day",
                    f"tokens per day: {day.spent_tokens} used, {day.reserved_tokens} in flight, this call may "
                    f"need {hold.tokens}, limit {limits.tokens}",
                )
            )
        if limits.usd is not None and day.spent_usd + day.reserved_usd + hold.usd > limits.usd:
            problems.append(
                (
                    "usd_per_day",
                    f"USD per day: {day.spent_usd:.6f} used, {day.reserved_usd:.6f} in flight, this call may cost "
                    f"{hold.usd:.6f}, limit {limits.usd}",
                )
            )
        if not problems:  # the totals read after a refusal can already show room a settled call gave back
            limit = "tokens_per_day" if limits.tokens is not None else "usd_per_day"
            problems.append((limit, "taken by the calls in flight when it was asked"))
        exceeded = problems[0][0]
        GATEWAY_BUDGET_REFUSALS.add(1, {"caller": hold.caller, "limit": exceeded})
        raise ResourceExhausted(
            "BUDGET_EXCEEDED",
            f"{hold.caller} budget exceeded ({'; '.join(text for _, text in problems)}); it resets at 00:00 UTC",
            metadata={"caller": hold.caller, "limit": exceeded},
            retry_after_s=self._seconds_to_midnight(),
        )

    async def settle(self, reservation: Reservation, tokens: int | None, usd: Decimal | None) -> None:
        """Queues the replacement of a reservation by what the call really used (the reservation itself when
        unknown) and returns: committed in the background, waiting only when MAX_PENDING_SETTLES are queued. A
        failure is logged, not raised: the call is over, and its reservation is reclaimed once it expires."""
        if reservation is NO_RESERVATION:
            return
        while True:
            with self._pending_lock:
                waiting = list(self._pending) if len(self._pending) >= MAX_PENDING_SETTLES else []
            if not waiting:
                break
            await asyncio.wait([asyncio.wrap_future(f) for f in waiting], return_when=asyncio.FIRST_COMPLETED)
        used_tokens = reservation.tokens if tokens is None else tokens
        used_usd = reservation.usd if usd is None else usd
        future = self._settles.submit_nowait(Settlement(reservation, used_tokens, used_usd))
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(lambda done: self._settled(reservation, done))

    def _settled(self, reservation: Reservation, done: Future[bool]) -> None:
        """On the settling thread, once a settlement is committed or failed."""
        with self._pending_lock:
            self._pending.discard(done)
        error = done.exception()
        if error is not None:
            log.error(
                "settling reservation %s failed; it is reclaimed when it expires",
                reservation.id,
                exc_info=(type(error), error, error.__traceback__),
            )

    async def flush(self) -> int:
        """Waits until every settlement queued so far is committed (or failed): how many were pending."""
        with self._pending_lock:
            pending = list(self._pending)
        if pending:
            await asyncio.wait([asyncio.wrap_future(f) for f in pending])
        return len(pending)

    async def close(self) -> None:
        """At shutdown, after the server drained: every queued settlement is committed first."""
        await self.flush()
        await asyncio.to_thread(self._settles.close)
        await asyncio.to_thread(self._asks.close)

    async def reclaim(self) -> int:
        """Charges every expired reservation (services/ai_gateway/main.py runs it beside the replay purge)."""
        return await asyncio.to_thread(self._store.reclaim_expired, to_us_f(self._clock()))

    def tokens_remaining(self) -> Reading:
        """Per caller with a tokens_per_day limit and a reservation today: tokens left (in-flight reservations
        count as spent), from the shared totals once this replica's queued settlements are committed. Read on the
        metrics thread."""
        return [
            (max(0, limit.tokens_per_day - day.spent_tokens - day.reserved_tokens), {"caller": caller})
            for caller, limit, day in self._today()
            if limit.tokens_per_day is not None
        ]

    def usd_remaining(self) -> Reading:
        """Per caller with a usd_per_day limit and a reservation today: USD left, in-flight reservations spent."""
        return [
            (
                max(0.0, float(Decimal(str(limit.usd_per_day)) - day.spent_usd - day.reserved_usd)),
                {"caller": caller},
            )
            for caller, limit, day in self._today()
            if limit.usd_per_day is not None
        ]

    def _today(self) -> list[tuple[str, Budget, DayTotals]]:
        with self._pending_lock:
            pending = list(self._pending)
        wait(pending, timeout=GAUGE_SETTLE_WAIT_S)  # finished calls show what they used, not their worst case
        totals = self._store.day_totals(self._day_start().date().isoformat())
        found = []
        for caller, day in totals.items():
            limit = self.limit_for(caller)
            if limit is not None:
                found.append((caller, limit, day))
        return found

    def _day_start(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def _seconds_to_midnight(self) -> float:
        return max(1.0, math.ceil((self._day_start() + timedelta(days=1)).timestamp() - self._clock()))


def _spent_exceeds(day: DayTotals, hold: Reservation, limits: DayLimits) -> bool:
    """Whether what was already spent (which only grows during a day) leaves no room for `hold`."""
    over_tokens = limits.tokens is not None and day.spent_tokens + hold.tokens > limits.tokens
    return over_tokens or (limits.usd is not None and day.spent_usd + hold.usd > limits.usd)


def to_us_f(seconds: float) -> int:
    """Epoch (or duration) seconds as whole microseconds."""
    return round(seconds * 1_000_000)
