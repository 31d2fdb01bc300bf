"""What the ledger adds to a big staleness propagation (not a test).

    .venv/bin/python bench/lineage/bench_ledger_propagation.py [--database-url URL] [--nodes 100000] [--repeat 5]

Loads bench_lineage.py's DAG (every node downstream of node 0), then times Lineage.create_version() of a new version
of node 0, which marks the whole closure stale in one transaction, alternately with the ledger off and on (same
database, same closure; each run first confirms every node valid again, untimed). With the ledger on the same
transaction also reads back every history row the propagation wrote (through its scratch table) and digests them
into one leaf, plus the new version's own leaves. Prints the medians, the difference and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "lineage"))

from bench_lineage import OPERATOR, PROJECT, TYPE, dag_edges, drop_pg_schema, fresh_pg_schema, load  # noqa: E402

from services.common import call_context, migrations  # noqa: E402
from services.common.db import create_engine, describe  # noqa: E402
from services.common.identity import SYSTEM, write_private_file  # noqa: E402
from services.common.ledger.ledger import Ledger, LedgerSettings  # noqa: E402
from services.common.ledger.note import generate_note_key  # noqa: E402
from services.common.ledger.store import LedgerRows  # noqa: E402
from services.lineage import tables as t  # noqa: E402
from services.lineage.domain.model import Metadata, Source, TypeDefinition  # noqa: E402
from services.lineage.domain.registration import check_registration  # noqa: E402
from services.lineage.domain.service import Lineage  # noqa: E402
from services.lineage.ledger_records import SOURCES  # noqa: E402
from services.lineage.store import LineageStore  # noqa: E402


def ledger_for(engine: object) -> Ledger:
    directory = Path(tempfile.mkdtemp())
    private, _ = generate_note_key("bench/custody/lineage")
    write_private_file(directory / "key", private + "\n")
    settings = LedgerSettings(directory / "key", directory / "checkpoints", every_leaves=10**6, every_s=3600)
    return Ledger(engine, LedgerRows(t.ledger), settings, SOURCES)  # type: ignore[arg-type]


def run(url: str, nodes: int, repeat: int) -> dict[str, object]:
    engine = create_engine(url)
    migrations.upgrade(engine, "lineage")
    definition = TypeDefinition(TYPE, "bench", "1", {"type": "object"})
    LineageStore(engine).ensure_types([definition], SYSTEM, datetime.now(UTC), check_registration)
    edges = dag_edges(nodes)
    load(engine, nodes, edges)
    off = Lineage(LineageStore(engine), {})
    on = Lineage(LineageStore(engine, ledger_for(engine)), {})
    call_context.bind(request_id="bench", principal=OPERATOR, time_remaining=None)
    times: dict[str, list[float]] = {"off": [], "on": []}
    for r in range(2 * repeat):
        mode, lineage = ("off", off) if r % 2 == 0 else ("on", on)
        if r:
            with engine.begin() as c:
                c.execute(t.health.update().values(health="confirmed_valid"))
        start = time.perf_counter()
        created = lineage.create_version(
            f"projects/{PROJECT}/artifacts/{TYPE}/n0", {}, Metadata("bench", "bench", 1.0, Source.AI), [], ""
        )
        times[mode].append((time.perf_counter() - start) * 1000)
        assert created.marked_stale == nodes - 1, created.marked_stale
        assert (created.staleness is None) == (mode == "off")
    engine.dispose()
    off_ms, on_ms = statistics.median(times["off"]), statistics.median(times["on"])
    return {
        "database": describe(url).split(":")[0].split("+")[0],
        "marked": nodes - 1,
        "propagate_ledger_off_ms": round(off_ms, 1),
        "propagate_ledger_on_ms": round(on_ms, 1),
        "added_ms": round(on_ms - off_ms, 1),
        "ratio": round(on_ms / off_ms, 2),
        "runs": {k: [round(v, 1) for v in vs] for k, vs in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench-ledger.db"
    if args.database_url.startswith("postgres"):
        url = fresh_pg_schema(args.database_url, "ledger")
    try:
        print(json.dumps(run(url, args.nodes, args.repeat)))
    finally:
        if args.database_url.startswith("postgres"):
            drop_pg_schema(args.database_url, url)


if __name__ == "__main__":
    main()
