"""Ledger benchmark (issue 17): what tamper evidence costs, measured side by side in one run.

1. Mints/s with the ledger on and off: two `custody serve runs` processes (`ledger_enabled=true|false`), each on
   its own fresh database, minted into by 8 concurrent clients (bench.runs.bench_runs.mints_per_second), in
   alternating rounds (on/off, then off/on, ...) so both see the same machine; also create + 4 KiB attach per s
   (bench_runs.create_attach_per_second: an attachment and a blob leaf each). Medians of the rounds and their
   ratio (target: on/off >= 0.8), on SQLite and on PostgreSQL when a DSN is available.
2. Proofs at scale: a runs database whose ledger holds --leaves leaves (default 1M), appended directly with
   LedgerRows.append in large batches; the tree's catch-up from the database (what a start costs), the first signed
   checkpoint, then Ledger.inclusion by record name for random leaves in process (target: p50 < 5 ms) and
   GetInclusionProof through a runs process started on that database, and that process's start time with the
   ledger on and off.
3. `custody ledger audit runs` over the ledger-on database of part 1 (every run, attachment and blob minted
   there): leaves/s of the audit in process (services.runs.ledger_audit.audit) and the command's wall time.

    .venv/bin/python -m bench.ledger.bench_ledger [--quick] [--leaves N] [--rounds R] [--mints M] [--proofs P]
                                                  [--postgres DSN | --no-postgres] [--parts mints,proofs]

PostgreSQL: --postgres, else CUSTODY_BENCH_POSTGRES_DSN, else CUSTODY_TEST_POSTGRES_DSN (what CI sets); each database
used is a fresh schema in it, dropped afterwards. Writes bench/results/ledger-<time>.json (ledger-quick-... with
--quick) and prints a line per figure. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa

from bench.harness import fresh_schema, postgres_dsn, service_process, summary, write_result
from bench.runs.bench_runs import create_attach_per_second, mints_per_second
from custody.common.v1 import ledger_pb2
from custody.runs.v1 import runs_pb2_grpc
from services.cli.state import StateLayout, initialize
from services.common import migrations
from services.common.config import env_prefix
from services.common.db import create_engine
from services.common.ledger.leaves import Leaf
from services.common.ledger.ledger import Ledger
from services.common.ledger.store import LedgerRows
from services.common.ledger.tree import LedgerTree
from services.runs import ledger_audit, tables
from services.runs.config import RunsSettings
from services.runs.ledger_records import SOURCES
from services.runs.model import run_name

TARGETS = {"mints_on_off_ratio": 0.8, "inclusion_p50_ms": 5.0}
SIDES = {"on": "true", "off": "false"}
APPEND_BATCH = 10_000
TRANSACTION_LEAVES = 250_000
BASE_TIME_US = 1_800_000_000_000_000


def runs_settings(state: Path, database_url: str = "") -> RunsSettings:
    """The settings a runs process on `state` loads (and `custody ledger audit runs` with them)."""
    prefix = env_prefix("runs")
    environ = {prefix + "STATE_DIR": str(state)} | ({prefix + "DATABASE_URL": database_url} if database_url else {})
    return RunsSettings.load(StateLayout(state).service_config("runs"), environ)


def medians(samples: dict[str, list[float]]) -> dict[str, Any]:
    """Median of each side's rounds, the ratio of the medians and the median of the per-round ratios."""
    on, off = samples["on"], samples["off"]
    return {
        "on": {"median": round(statistics.median(on), 1), "runs": [round(v, 1) for v in on]},
        "off": {"median": round(statistics.median(off), 1), "runs": [round(v, 1) for v in off]},
        "ratio": round(statistics.median(on) / statistics.median(off), 3),
        "paired_ratio_median": round(statistics.median(a / b for a, b in zip(on, off, strict=True)), 3),
    }


# ---- 1. mints with the ledger on and off ---------------------------------------------------------------------------


def mints_side_by_side(root: Path, urls: dict[str, str], rounds: int, total: int) -> dict[str, Any]:
    """Both processes run throughout; each round measures one then the other, the order flipping every round."""
    mints: dict[str, list[float]] = {"on": [], "off": []}
    pairs: dict[str, list[float]] = {"on": [], "off": []}
    with ExitStack() as stack:
        processes = {
            side: stack.enter_context(
                service_process(
                    "runs",
                    root / side,
                    0,
                    ledger_enabled=enabled,
                    **({"database_url": urls[side]} if urls[side] else {}),
                )
            )
            for side, enabled in SIDES.items()
        }
        tokens = {side: p.layout.operator_token.read_text().strip() for side, p in processes.items()}
        for side, process in processes.items():  # warm-up, not measured
            asyncio.run(mints_per_second(process.address, tokens[side], 8, max(8, total // 4)))
        for round_ in range(rounds):
            for side in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                address = processes[side].address
                mints[side].append(asyncio.run(mints_per_second(address, tokens[side], 8, total)))
                pairs[side].append(asyncio.run(create_attach_per_second(address, tokens[side], 8, total // 4)))
            print(
                f"  round {round_ + 1}: mints/s on {mints['on'][-1]:.1f} off {mints['off'][-1]:.1f} | "
                f"create+attach/s on {pairs['on'][-1]:.1f} off {pairs['off'][-1]:.1f}",
                flush=True,
            )
        signer = asyncio.run(checkpoint_state(processes["on"].address, tokens["on"]))
    return {
        "mints_per_s_8_clients": medians(mints),
        "create_plus_4kib_attach_per_s_8_clients": medians(pairs),
        "ledger_on_signer": signer,
    }


async def checkpoint_state(address: str, token: str) -> dict[str, Any]:
    """Whether the ledger-on process still signs after the load (its latest checkpoint), or the error it answers:
    a ratio measured after the signer stopped leaves out the signing it should include."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            checkpoint = await runs_pb2_grpc.RunsServiceStub(channel).GetCheckpoint(
                ledger_pb2.GetCheckpointRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
        except grpc.aio.AioRpcError as exc:
            return {"signing": False, "error": f"{exc.code().name}: {exc.details()}"}
    return {"signing": True, "tree_size": checkpoint.tree_size}


# ---- 3. the audit --------------------------------------------------------------------------------------------------


def audit_figures(state: Path, database_url: str, repeats: int) -> dict[str, Any]:
    """The audit of a stopped ledger-on runs database: in process (median of `repeats`) and as the command."""
    settings = runs_settings(state, database_url)
    seconds, report = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        report = ledger_audit.audit(settings)
        seconds.append(time.perf_counter() - started)
    assert report is not None
    prefix = env_prefix("runs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    env |= {prefix + "DATABASE_URL": database_url} if database_url else {}
    started = time.perf_counter()
    command = subprocess.run(
        [sys.executable, "-m", "services.cli", "ledger", "audit", "runs", "--state-dir", str(state)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    command_s = time.perf_counter() - started
    median_s = statistics.median(seconds)
    return {
        "ok": report.ok,
        "first_findings": [str(f) for f in report.findings[:3]],
        "leaves": report.leaves,
        "records": report.records,
        "checkpoints": report.checkpoints,
        "audit_s": {"median": round(median_s, 3), "runs": [round(s, 3) for s in seconds]},
        "leaves_per_s": round(report.leaves / median_s, 1),
        "command": {"wall_s": round(command_s, 3), "exit": command.returncode, "stdout": command.stdout.strip()},
    }


# ---- 2. proofs at scale --------------------------------------------------------------------------------------------


def bench_leaf(index: int) -> Leaf:
    """Leaf `index` of the synthetic ledger: shaped like a run's (random-looking name, two digests, principal,
    request id), derived from the index so a proof's record name can be recomputed instead of kept."""
    digest = hashlib.sha256(f"bench-ledger-{index}".encode()).hexdigest()
    return Leaf(
        kind="run",
        name=run_name(f"run_{digest[:32]}"),
        time_us=BASE_TIME_US + index * 1000,
        digests={"artifact_sha256": hashlib.sha256(digest.encode()).hexdigest(), "row_sha256": digest},
        principal="human:bench",
        request_id=f"req-{digest[32:]}",
    )


def fill(engine: sa.Engine, rows: LedgerRows, leaves: int) -> float:
    """Appends `leaves` leaves in batches of APPEND_BATCH, TRANSACTION_LEAVES per transaction; returns seconds."""
    started = time.perf_counter()
    for first in range(0, leaves, TRANSACTION_LEAVES):
        with engine.begin() as connection:
            for start in range(first, min(leaves, first + TRANSACTION_LEAVES), APPEND_BATCH):
                rows.append(connection, [bench_leaf(i) for i in range(start, min(leaves, start + APPEND_BATCH))])
    return time.perf_counter() - started


async def grpc_proofs(address: str, token: str, names: list[str], warmup: int) -> list[float]:
    metadata = (("authorization", f"Bearer {token}"),)
    samples = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runs_pb2_grpc.RunsServiceStub(channel)
        for index, name in enumerate(names):
            started = time.perf_counter()
            proof = await stub.GetInclusionProof(
                ledger_pb2.GetInclusionProofRequest(record_name=name), metadata=metadata
            )
            if index >= warmup:
                samples.append((time.perf_counter() - started) * 1000)
            assert proof.record_name == name
    return samples


def proofs_at_scale(root: Path, leaves: int, proofs: int, start_rounds: int) -> dict[str, Any]:
    state = root / "proofs"
    layout = StateLayout(state)
    initialize(layout)  # a throwaway ledger key; the runs process started below signs with the same one
    settings = runs_settings(state)
    engine = create_engine(settings.resolved_database_url)
    rows = LedgerRows(tables.ledger)
    rng = random.Random(17)
    warmup = min(50, proofs)
    picks = [rng.randrange(leaves) for _ in range(proofs + warmup)]
    names = [bench_leaf(i).name for i in picks]
    try:
        migrations.upgrade(engine, "runs")
        build_s = fill(engine, rows, leaves)
        catch_up_s = []
        for _ in range(3):
            started = time.perf_counter()
            LedgerTree(engine, rows).catch_up()
            catch_up_s.append(time.perf_counter() - started)
        ledger = Ledger.configured(engine, tables.ledger, settings, SOURCES)
        assert ledger is not None
        started = time.perf_counter()
        signed = ledger.checkpointer.tick()  # what a start does: catch up, check, sign the first checkpoint
        first_tick_s = time.perf_counter() - started
        assert signed is not None and signed.checkpoint.size == leaves
        in_process = []
        for index, name in enumerate(names):
            started = time.perf_counter()
            ledger.inclusion(name, None, 0)
            if index >= warmup:
                in_process.append((time.perf_counter() - started) * 1000)
        database_mb = Path(settings.resolved_database_url.removeprefix("sqlite:///")).stat().st_size / 1e6
    finally:
        engine.dispose()
    starts: dict[str, list[float]] = {"on": [], "off": []}
    over_grpc: list[float] = []
    for round_ in range(start_rounds):
        for side in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
            started = time.perf_counter()
            with service_process("runs", state, ledger_enabled=SIDES[side]) as service:
                starts[side].append(time.perf_counter() - started)
                if side == "on" and not over_grpc:
                    token = layout.operator_token.read_text().strip()
                    over_grpc = asyncio.run(grpc_proofs(service.address, token, names, warmup))
    return {
        "leaves": leaves,
        "database_mb": round(database_mb, 1),
        "build_s": round(build_s, 1),
        "build_leaves_per_s": round(leaves / build_s, 1),
        "catch_up_s": {"median": round(statistics.median(catch_up_s), 3), "runs": [round(s, 3) for s in catch_up_s]},
        "first_checkpoint_s": round(first_tick_s, 3),
        "inclusion_in_process": summary(in_process),
        "inclusion_grpc": summary(over_grpc),
        "process_start_s": {
            side: {"median": round(statistics.median(v), 3), "runs": [round(s, 3) for s in v]}
            for side, v in starts.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (tiny sizes)")
    parser.add_argument("--leaves", type=int, help="leaves in the proof ledger (default 1,000,000; quick 3,000)")
    parser.add_argument("--rounds", type=int, help="alternating on/off rounds of mints (default 5; quick 1)")
    parser.add_argument("--mints", type=int, help="mints per round and side (default 4,000; quick 200)")
    parser.add_argument("--proofs", type=int, help="inclusion proofs timed (default 2,000; quick 100)")
    parser.add_argument("--postgres", help="PostgreSQL DSN (default: $CUSTODY_BENCH_POSTGRES_DSN, $CUSTODY_TEST_...)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--parts", default="mints,proofs", help="mints (with the audit), proofs, or both")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    leaves = args.leaves or (3_000 if args.quick else 1_000_000)
    rounds = args.rounds or (1 if args.quick else 5)
    total = args.mints or (200 if args.quick else 4_000)
    proofs = args.proofs or (100 if args.quick else 2_000)
    dsn = postgres_dsn(args.postgres, args.no_postgres)
    results: dict[str, Any] = {
        "targets": TARGETS,
        "sizes": {"leaves": leaves, "rounds": rounds, "mints_per_round": total, "proofs": proofs},
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="custody-bench-ledger-") as tmp, ExitStack() as schemas:
        backends = ["sqlite", *(["postgresql"] if dsn else [])] if "mints" in parts else []
        for backend in backends:
            print(f"[{backend}] mints/s, ledger on vs off, {rounds} rounds of {total}", flush=True)
            urls = {
                side: schemas.enter_context(fresh_schema(dsn, "bench_ledger"))
                if dsn and backend == "postgresql"
                else ""
                for side in SIDES
            }
            figures = mints_side_by_side(Path(tmp) / backend, urls, rounds, total)
            print(f"[{backend}] custody ledger audit runs", flush=True)
            figures["audit"] = audit_figures(Path(tmp) / backend / "on", urls["on"], 1 if args.quick else 3)
            results["backends"][backend] = figures
        if "proofs" in parts:
            print(f"[sqlite] proofs at {leaves} leaves", flush=True)
            results["proofs"] = proofs_at_scale(Path(tmp), leaves, proofs, 1 if args.quick else 3)
    path = write_result("ledger-quick" if args.quick else "ledger", results)
    for backend, figures in results["backends"].items():
        mints, pairs, audit = (
            figures["mints_per_s_8_clients"],
            figures["create_plus_4kib_attach_per_s_8_clients"],
            figures["audit"],
        )
        print(
            f"[{backend}] mints/s (8 clients) ledger on {mints['on']['median']} off {mints['off']['median']} "
            f"(ratio {mints['ratio']}, target >= {TARGETS['mints_on_off_ratio']})  |  create+4KiB attach/s on "
            f"{pairs['on']['median']} off {pairs['off']['median']} (ratio {pairs['ratio']})  |  audit "
            f"{audit['leaves']} leaves in {audit['audit_s']['median']} s = {audit['leaves_per_s']} leaves/s "
            f"({'ok' if audit['ok'] else 'FINDINGS'}; command {audit['command']['wall_s']} s)"
        )
        if not figures["ledger_on_signer"]["signing"]:
            print(f"[{backend}] !! the ledger-on process stopped signing: {figures['ledger_on_signer']['error']}")
    proof = results.get("proofs")
    if proof is None:
        print(f"wrote {path}")
        return
    print(
        f"[sqlite] {proof['leaves']} leaves: inclusion p50 {proof['inclusion_in_process']['p50_ms']} ms p99 "
        f"{proof['inclusion_in_process']['p99_ms']} ms in process (target p50 < {TARGETS['inclusion_p50_ms']}), "
        f"gRPC p50 {proof['inclusion_grpc']['p50_ms']} ms p99 {proof['inclusion_grpc']['p99_ms']} ms  |  catch-up "
        f"{proof['catch_up_s']['median']} s, first checkpoint {proof['first_checkpoint_s']} s, process start on "
        f"{proof['process_start_s']['on']['median']} s off {proof['process_start_s']['off']['median']} s"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
