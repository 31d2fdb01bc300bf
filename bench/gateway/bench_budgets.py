"""Added latency of shared budgets: what a budgeted call spends being admitted, reserved and settled, side by side
for the per-replica in-memory path they replaced and the shared ledger on SQLite and PostgreSQL.

One budgeted call = admit_request (requests_per_minute) + reserve (tokens_per_day) + settle, through the domain's
Budgets exactly as the gateway's pipeline calls them, with limits no call reaches:
  memory      bench/gateway/inmemory_budgets.py, the previous code (each replica granted the whole budget),
  sqlite      services/ai_gateway/budgets.py on a SQLite file (WAL, synchronous=FULL), migrated to head,
  postgresql  the same on a fresh schema of --postgres (skipped without it).
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
import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.gateway.inmemory_budgets import Budgets as MemoryBudgets
from bench.harness import summary, write_result
from services.ai_gateway.budget_store import BudgetLedger
from services.ai_gateway.budgets import Budgets
from services.ai_gateway.config import Budget
from services.common import migrations
from services.common.db import create_engine, normalize_url
from services.common.ids import new_id

CALLER = "service:runs"
LIMITS = {CALLER: Budget(requests_per_minute=10**9, tokens_per_day=10**15)}
WORST_TOKENS, USED_TOKENS = 1_050, 320

OneCall = Callable[[], Awaitable[None]]


def memory_call() -> OneCall:
    async def usage(_caller: str, _since_us: int) -> tuple[int, Decimal]:
        return 0, Decimal(0)

    budgets = MemoryBudgets(LIMITS, usage)

    async def call() -> None:
        budgets.admit_request(CALLER)
        reservation = await budgets.reserve(CALLER, WORST_TOKENS, None)
        budgets.settle(reservation, USED_TOKENS, None)

    return call


def shared_call(engine: sa.Engine) -> OneCall:
    budgets = Budgets(LIMITS, BudgetLedger(engine))

    async def call() -> None:
        call_id = new_id("call")
        await budgets.admit_request(CALLER, call_id)
        reservation = await budgets.reserve(CALLER, WORST_TOKENS, None, call_id=call_id, lasts_s=30)
        await budgets.settle(reservation, USED_TOKENS, None)

    return call


async def timed(call: OneCall) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def measure(call: OneCall, calls: int, concurrency: int) -> dict[str, Any]:
    for _ in range(20):  # warm-up: pools, prepared statements, the day row
        await call()
    sequential = [await timed(call) for _ in range(calls)]
    concurrent: list[float] = []
    for _ in range(max(1, calls // concurrency)):
        concurrent += await asyncio.gather(*(timed(call) for _ in range(concurrency)))
    return {"sequential": summary(sequential), "concurrent": summary(concurrent)}


@contextlib.contextmanager
def postgres_schema(dsn: str) -> Iterator[str]:
    schema = f"bench_budgets_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalize_url(dsn))
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        url = normalize_url(dsn).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def run(calls: int, concurrency: int, postgres: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {"memory": asyncio.run(measure(memory_call(), calls, concurrency))}
    with contextlib.ExitStack() as stack:
        urls = {"sqlite": f"sqlite:///{Path(stack.enter_context(tempfile.TemporaryDirectory())) / 'gateway.db'}"}
        if postgres:
            urls["postgresql"] = stack.enter_context(postgres_schema(postgres))
        for name, url in urls.items():
            engine = create_engine(url)
            try:
                migrations.upgrade(engine, "ai_gateway")
                results[name] = asyncio.run(measure(shared_call(engine), calls, concurrency))
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
    print(f"{'backend':<12}{'seq p50':>10}{'seq p99':>10}{'conc p50':>10}{'conc p99':>10}   (ms per budgeted call)")
    for name, figures in results.items():
        seq, conc = figures["sequential"], figures["concurrent"]
        print(f"{name:<12}{seq['p50_ms']:>10.3f}{seq['p99_ms']:>10.3f}{conc['p50_ms']:>10.3f}{conc['p99_ms']:>10.3f}")
    for name, shapes in added.items():
        print(
            f"added by shared budgets on {name}: {shapes['sequential']:.3f} ms sequential, "
            f"{shapes['concurrent']:.3f} ms at concurrency {args.concurrency} (p50)"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
