"""Added latency of shared budgets: what a budgeted call spends being admitted, reserved and settled, side by side
for the per-replica in-memory path they replaced and the shared ledger on SQLite and PostgreSQL.

One budgeted call = admission (requests_per_minute) + reservation (tokens_per_day) + settlement, with limits no
call reaches, timed until the call could answer:
  memory            bench/gateway/inmemory_budgets.py, the per-replica code (each replica granted the whole budget),
  sqlite-3commits   the first shared ledger's path: admit, reserve and settle as three transactions, each awaited
                    (services/ai_gateway/budget_store.py's single-call methods, in worker threads),
  sqlite            services/ai_gateway/budgets.py as the pipeline calls it: admission and reservation in one
                    transaction, batched with the calls asking together; the settlement queued (committed in the
                    background, so it still competes for the database while later calls are timed),
  postgresql(-3commits)  the same two on a fresh schema of --postgres (skipped without it).
Measured sequentially (one call at a time) and with --concurrency calls in flight on one event loop (one caller,
so every call contends for the same day row, the worst case). Medians and p99 per call, in ms.

Usage: .venv/bin/python -m bench.gateway.bench_budgets [--calls 400] [--concurrency 16] [--postgres DSN]
Writes bench/results/budgets-<time>.json and prints the medians and the added latency. Not a test: it asserts
nothing. The schema it creates on PostgreSQL is dropped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.gateway.inmemory_budgets import Budgets as MemoryBudgets
from bench.harness import fresh_schema, summary, write_result
from services.ai_gateway.budget_store import BudgetLedger
from services.ai_gateway.budgets import WINDOW_S, Budgets, DayLimits, Reservation, to_us_f
from services.ai_gateway.config import Budget
from services.common import migrations
from services.common.clock import to_us
from services.common.db import create_engine
from services.common.ids import new_id

CALLER = "service:runs"
LIMITS = {CALLER: Budget(requests_per_minute=10**9, tokens_per_day=10**15)}
WORST_TOKENS, USED_TOKENS = 1_050, 320

OneCall = Callable[[], Awaitable[None]]
Drain = Callable[[], Awaitable[object]]


async def nothing() -> None:
    return None


def memory_call() -> tuple[OneCall, Drain]:
    async def usage(_caller: str, _since_us: int) -> tuple[int, Decimal]:
        return 0, Decimal(0)

    budgets = MemoryBudgets(LIMITS, usage)

    async def call() -> None:
        budgets.admit_request(CALLER)
        reservation = await budgets.reserve(CALLER, WORST_TOKENS, None)
        budgets.settle(reservation, USED_TOKENS, None)

    return call, nothing


def three_commits_call(engine: sa.Engine) -> tuple[OneCall, Drain]:
    ledger, limit = BudgetLedger(engine), LIMITS[CALLER]
    per_minute = limit.requests_per_minute
    assert per_minute is not None
    limits = DayLimits(limit.tokens_per_day, None)

    async def call() -> None:
        call_id, now = new_id("call"), time.time()
        oldest = await asyncio.to_thread(
            ledger.admit_request, CALLER, call_id, to_us_f(now), to_us_f(WINDOW_S), per_minute
        )
        assert oldest is None
        start = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        hold = Reservation(
            call_id, CALLER, start.date().isoformat(), to_us(start), WORST_TOKENS, Decimal(0), to_us_f(now + 330)
        )
        granted, _ = await asyncio.to_thread(ledger.reserve, hold, limits)
        assert granted
        await asyncio.to_thread(ledger.settle, hold, USED_TOKENS, Decimal(0))

    return call, nothing


def shared_call(engine: sa.Engine) -> tuple[OneCall, Drain]:
    budgets = Budgets(LIMITS, BudgetLedger(engine))

    async def call() -> None:
        reservation = await budgets.admit(CALLER, new_id("call"), 30, lambda: (WORST_TOKENS, None))
        await budgets.settle(reservation, USED_TOKENS, None)

    return call, budgets.flush


async def timed(call: OneCall) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def measure(shape: tuple[OneCall, Drain], calls: int, concurrency: int) -> dict[str, Any]:
    call, drain = shape
    for _ in range(20):  # warm-up: pools, prepared statements, the day row
        await call()
    await drain()
    sequential = [await timed(call) for _ in range(calls)]
    await drain()
    concurrent: list[float] = []
    for _ in range(max(1, calls // concurrency)):
        concurrent += await asyncio.gather(*(timed(call) for _ in range(concurrency)))
    await drain()
    return {"sequential": summary(sequential), "concurrent": summary(concurrent)}


def run(calls: int, concurrency: int, postgres: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {"memory": asyncio.run(measure(memory_call(), calls, concurrency))}
    with contextlib.ExitStack() as stack:
        urls = {"sqlite": f"sqlite:///{Path(stack.enter_context(tempfile.TemporaryDirectory())) / 'gateway.db'}"}
        if postgres:
            urls["postgresql"] = stack.enter_context(fresh_schema(postgres, "bench_budgets"))
        for name, url in urls.items():
            for suffix, shape in (("-3commits", three_commits_call), ("", shared_call)):
                engine = create_engine(url)
                try:
                    migrations.upgrade(engine, "ai_gateway")
                    results[name + suffix] = asyncio.run(measure(shape(engine), calls, concurrency))
                finally:
                    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--postgres", help="a PostgreSQL DSN to bench on (a fresh schema, dropped after)")
    args = parser.parse_args()
    results = run(args.calls, args.concurrency, args.postgres)
    added = {
        name: {
            shape: round(figures[shape]["p50_ms"] - results["memory"][shape]["p50_ms"], 3)
            for shape in ("sequential", "concurrent")
        }
        for name, figures in results.items()
        if name != "memory"
    }
    path = write_result(
        "budgets", {"calls": args.calls, "concurrency": args.concurrency, "results": results, "added_p50_ms": added}
    )
    print(f"{'backend':<22}{'seq p50':>10}{'seq p99':>10}{'conc p50':>10}{'conc p99':>10}   (ms per budgeted call)")
    for name, figures in results.items():
        seq, conc = figures["sequential"], figures["concurrent"]
        print(f"{name:<22}{seq['p50_ms']:>10.3f}{seq['p99_ms']:>10.3f}{conc['p50_ms']:>10.3f}{conc['p99_ms']:>10.3f}")
    for name, shapes in added.items():
        print(
            f"added by shared budgets on {name}: {shapes['sequential']:.3f} ms sequential, "
            f"{shapes['concurrent']:.3f} ms at concurrency {args.concurrency} (p50)"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
