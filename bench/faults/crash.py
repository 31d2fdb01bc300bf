"""Crash safety: C clients mint runs, stream attachments, create lineage versions and approve them while the harness
SIGKILLs the serving processes (runs, lineage or both) at random moments N times, restarting them each time. Then
every acknowledged write is read back and compared with the digest the server acknowledged, duplicates are counted,
the runs database and blob directory are searched for orphans and partial blobs, `custody runs verify --all` and
`custody ledger audit` run, and clients are killed mid-upload to check nothing partial is ever visible.

    python -m bench.faults.crash --backend sqlite|postgresql --kills N --clients C [--seed S] [--upload-kills K]

Prints a figures table, writes JSON to bench/results/crash-<backend>-<time>.json, and exits 1 if anything
acknowledged was lost or changed, a retry duplicated a record or was refused, a check failed, or a partial blob or
orphan row was found. Committed-but-unacknowledged writes are allowed (and counted).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.faults.crash_checks import operator_checks, read_back, storage
from bench.faults.crash_clients import GIVE_UP_S, Client, Tally
from bench.faults.crash_stack import KILLABLE, CrashStack, crash_stack
from bench.faults.upload_kill import kill_mid_upload
from bench.harness import write_result

POSTGRES_DSN_ENV = "CUSTODY_TEST_POSTGRES_DSN"
DEFAULT_POSTGRES_DSN = "postgresql://root@127.0.0.1:5432/test"
# Between a restart and the next kill: long enough for writes to land, short enough to hit them mid-flight.
KILL_DELAY_S = (0.2, 1.2)
VICTIMS = (("runs",), ("lineage",), KILLABLE)


def run_crash(
    backend: str,
    kills: int,
    clients: int,
    seed: int,
    *,
    upload_kills: int = 3,
    postgres_dsn: str = "",
    checks_in_process: bool = False,
) -> dict[str, Any]:
    """The whole harness; returns the figures (`ok` says whether every check held). `checks_in_process` runs the
    operator's commands in this interpreter (see operator_checks)."""
    rng = random.Random(seed)
    phases = _Phases()
    with (
        tempfile.TemporaryDirectory(prefix=f"custody-crash-{backend}-") as tmp,
        crash_stack(Path(tmp), backend, postgres_dsn) as stack,
    ):
        phases.end("start")
        tally = Tally()
        load = _Load(stack, clients, tally, seed)
        load.start()
        victims: Counter[str] = Counter()
        try:
            for _ in range(kills):
                time.sleep(rng.uniform(*KILL_DELAY_S))
                chosen = rng.choice(VICTIMS)
                victims["+".join(chosen)] += 1
                for service in chosen:
                    stack.kill(service)
                stack.start(*chosen)
        finally:
            load.stop()
        phases.end("load")
        # One more kill of both once the load has stopped: what was acknowledged must survive it too.
        for service in KILLABLE:
            stack.kill(service)
        stack.start(*KILLABLE)
        phases.end("final_kill")
        back = read_back(stack.addresses, stack.operator_token, tally.acked)
        stored = storage(stack.runs_settings)
        phases.end("read_back")
        checks = operator_checks(stack, in_process=checks_in_process)
        phases.end("operator_checks")
        uploads = kill_mid_upload(stack, upload_kills, rng, Path(tmp))
        phases.end("upload_kills")
        figures = _figures(backend, kills, clients, seed, stack, tally, victims, back, stored, checks, uploads)
    phases.end("stop")
    figures["phases_s"] = phases.seconds
    figures["wall_s"] = round(sum(phases.seconds.values()), 1)
    return figures


class _Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def end(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self._last, 1)
        self._last = now


class _Load:
    def __init__(self, stack: CrashStack, clients: int, tally: Tally, seed: int) -> None:
        addresses = stack.addresses
        self._stop = threading.Event()
        self._clients = [
            Client(i, addresses, stack.operator_token, stack.reviewer_token, tally, seed) for i in range(clients)
        ]
        self._threads = [threading.Thread(target=c.run, args=(self._stop,), daemon=True) for c in self._clients]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Each client finishes the operation it is in (acknowledged, or refused), then stops."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=4 * GIVE_UP_S)


def _figures(
    backend: str,
    kills: int,
    clients: int,
    seed: int,
    stack: CrashStack,
    tally: Tally,
    victims: Counter[str],
    back: Any,
    stored: Any,
    checks: dict[str, dict[str, Any]],
    uploads: Any,
) -> dict[str, Any]:
    acked = Counter(a.kind for a in tally.acked)
    figures: dict[str, Any] = {
        "backend": backend,
        "seed": seed,
        "clients": clients,
        "kills": sum(stack.kills.values()),
        "kills_under_load": kills,
        "kills_by_process": dict(stack.kills),
        "kills_by_victim": dict(victims),
        "operations_started": tally.ops_started,
        "acknowledged": sum(acked.values()),
        "acknowledged_by_kind": dict(acked),
        "lost": len(back.lost),
        "mismatches": len(back.mismatches),
        "duplicates": len(back.duplicates),
        "refused": len(tally.refused),
        "reads_during_kills": tally.reads,
        "broken_reads": len(tally.broken_reads),
        "retries_by_code": dict(tally.retries),
        "replayed_after_kill": dict(tally.replayed),
        "unacknowledged_committed": dict(back.unacknowledged_committed),
        "orphan_rows": len(stored.orphan_rows),
        "partial_blobs": len(stored.partial_blobs),
        "unreferenced_blob_files": stored.unreferenced_blob_files,
        "staging_leftovers": stored.staging_leftovers,
        "operator_checks": checks,
        "upload_kills": asdict(uploads),
        "details": {
            "lost": back.lost[:50],
            "mismatches": back.mismatches[:50],
            "duplicates": back.duplicates[:50],
            "refused": tally.refused[:50],
            "broken_reads": tally.broken_reads[:50],
            "orphan_rows": stored.orphan_rows[:50],
            "partial_blobs": stored.partial_blobs[:50],
        },
    }
    figures["ok"] = (
        figures["lost"] == 0
        and figures["mismatches"] == 0
        and figures["duplicates"] == 0
        and figures["refused"] == 0
        and figures["broken_reads"] == 0
        and figures["orphan_rows"] == 0
        and figures["partial_blobs"] == 0
        and all(check["ok"] for check in checks.values())
        and not uploads.problems
        and uploads.reuploaded == uploads.killed
    )
    return figures


def print_figures(figures: dict[str, Any]) -> None:
    uploads = figures["upload_kills"]
    rows = [
        ("kills (SIGKILL, restarted)", f"{figures['kills']} ({figures['kills_by_process']})"),
        ("clients", figures["clients"]),
        ("acknowledged writes", f"{figures['acknowledged']} {figures['acknowledged_by_kind']}"),
        ("lost (must be 0)", figures["lost"]),
        ("hash mismatches (must be 0)", figures["mismatches"]),
        ("duplicates (must be 0)", figures["duplicates"]),
        ("refused retries (must be 0)", figures["refused"]),
        (
            "attachments read during kills / broken (must be 0)",
            f"{figures['reads_during_kills']} / {figures['broken_reads']}",
        ),
        ("committed, answer lost, retry replayed", figures["replayed_after_kill"]),
        ("committed, never acknowledged", figures["unacknowledged_committed"]),
        ("retries by status", figures["retries_by_code"]),
        ("orphan rows / partial blobs", f"{figures['orphan_rows']} / {figures['partial_blobs']}"),
        (
            "unreferenced blob files / staging leftovers",
            f"{figures['unreferenced_blob_files']} / {figures['staging_leftovers']}",
        ),
        *((f"custody {label}", "OK" if c["ok"] else f"FAILED {c}") for label, c in figures["operator_checks"].items()),
        (
            "clients killed mid-upload / partial file held",
            f"{uploads['killed']} / {uploads['killed_with_partial_file']}, re-uploaded {uploads['reuploaded']}",
        ),
        ("mid-upload problems (must be 0)", len(uploads["problems"])),
        ("time (s)", f"{figures['wall_s']} {figures['phases_s']}"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"crash safety on {figures['backend']} (seed {figures['seed']}): {'OK' if figures['ok'] else 'FAILED'}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    for kind, entries in figures["details"].items():
        for entry in entries[:10]:
            print(f"  {kind}: {entry}")
    for problem in uploads["problems"][:10]:
        print(f"  mid-upload: {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), required=True)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--upload-kills", type=int, default=5, help="clients killed mid-upload (after the kills)")
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(POSTGRES_DSN_ENV, DEFAULT_POSTGRES_DSN),
        help="database the services get fresh schemas in (default: $CUSTODY_TEST_POSTGRES_DSN, else local test)",
    )
    args = parser.parse_args(argv)
    figures = run_crash(
        args.backend,
        args.kills,
        args.clients,
        args.seed,
        upload_kills=args.upload_kills,
        postgres_dsn=args.postgres_dsn if args.backend == "postgresql" else "",
    )
    print_figures(figures)
    print(f"wrote {write_result(f'crash-{args.backend}', figures)}")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
