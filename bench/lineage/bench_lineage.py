"""Lineage benchmark (not a test): complete downstream query and staleness propagation on a 10,000-deep chain and
a 100,000-node DAG, next to an in-memory BFS over the same graph.

    .venv/bin/python bench/lineage/bench_lineage.py [--postgres DSN | --no-postgres] [--repeat 5] [--dag-nodes 100000]

Both backends in the same run, side by side: SQLite (a fresh file per graph) and PostgreSQL (a fresh schema per
graph in the database the DSN names, dropped after: --postgres, else $CUSTODY_BENCH_POSTGRES_DSN, else
$CUSTODY_TEST_POSTGRES_DSN as CI sets it, else postgresql://root@127.0.0.1:5432/test). An unreachable PostgreSQL is
reported as skipped, with the reason, next to SQLite's figures. lineage.json (in --out) holds both, and for each
graph the PostgreSQL/SQLite ratio of the closure query and of propagation (targets: 250 / 500 ms on either).

The graph is bulk-loaded straight into the lineage tables (creating 100,000 versions through the API would only
measure set-up); what is measured goes through the service's own code paths:
  query        Lineage.closure() warm: the complete closure with shortest depths, as GetDownstream computes it before
               cutting a page (catch up the project's in-memory adjacency with one indexed query, BFS, order)
  query_cold   the same on a fresh store: the first query of a process loads the project's adjacency
  query_cte    the closure's version ids by recursive CTE in the database (what propagation traverses)
  query_paged  the complete closure through GetDownstream over real gRPC, every page (page_size 10,000)
  propagate    Lineage.create_version() of a new version of the root entity: one transaction that inserts it, finds
               every downstream version by recursive CTE and marks it stale with a history row each
  memory_bfs   collections.deque BFS over an in-memory adjacency dict of the same graph
Every figure is the median of --repeat runs. Before each propagation run after the first, every node's health is
set back to confirmed_valid in bulk (untimed), so every run marks the whole closure stale again.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.harness import POSTGRES_ENV, postgres_dsn  # noqa: E402
from services.common import call_context, migrations  # noqa: E402
from services.common.db import create_engine, describe  # noqa: E402
from services.common.identity import SYSTEM, Principal, PrincipalKind  # noqa: E402
from services.lineage import tables as t  # noqa: E402
from services.lineage.domain.model import Metadata, Source, TypeDefinition  # noqa: E402
from services.lineage.domain.registration import check_registration  # noqa: E402
from services.lineage.domain.service import Lineage  # noqa: E402
from services.lineage.store import LineageStore  # noqa: E402

PROJECT = "bench"
TYPE = "node"
OPERATOR = Principal("human:bench", PrincipalKind.HUMAN, frozenset({"operator"}))


def chain_edges(n: int) -> list[tuple[int, int]]:
    """(downstream, upstream) pairs, node i derived from node i-1."""
    return [(i, i - 1) for i in range(1, n)]


def dag_edges(n: int, seed: int = 7) -> list[tuple[int, int]]:
    """Each node i > 0 derives from 1-3 distinct earlier nodes, mostly recent ones (so the graph is deep and
    wide, with many diamonds); every node is reachable from node 0."""
    rng = random.Random(seed)
    edges = []
    for i in range(1, n):
        k = min(i, rng.choice((1, 2, 2, 3)))
        ups = {i - 1 - int(rng.expovariate(1 / 50)) % i for _ in range(k)}
        edges.extend((i, u) for u in sorted(ups))
    return edges


def load(engine: sa.Engine, n: int, edges: list[tuple[int, int]]) -> None:
    """Bulk-loads n versions (one entity each, version 1) and the edges, with status and health rows."""
    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    meta = json.dumps(Metadata("bench", "bench", 1.0, Source.AI, schema_version="1").to_json())
    ups: dict[int, list[int]] = {}
    for d, u in edges:
        ups.setdefault(d, []).append(u)
    name = lambda i: f"projects/{PROJECT}/artifacts/{TYPE}/n{i}/versions/1"  # noqa: E731
    with engine.begin() as c:
        batch = 20_000
        for start in range(0, n, batch):
            ids = range(start, min(n, start + batch))
            c.execute(
                t.versions.insert(),
                [
                    dict(
                        id=i + 1,
                        name=name(i),
                        project=PROJECT,
                        artifact_type=TYPE,
                        entity=f"n{i}",
                        number=1,
                        schema_version="1",
                        data_json="{}",
                        data_sha256="0" * 64,
                        metadata_json=meta,
                        upstream_json=json.dumps([name(u) for u in ups.get(i, [])]),
                        snapshot_sha256="0" * 64,
                        created_at_us=now,
                        created_by_id="human:bench",
                        created_by_kind="human",
                        request_id="bench",
                    )
                    for i in ids
                ],
            )
            state = dict(revision=1, actor_id="human:bench", actor_kind="human", actor_roles="", request_id="bench")
            c.execute(
                t.status.insert(),
                [dict(version_id=i + 1, status="DRAFT", updated_at_us=now, rationale="", **state) for i in ids],
            )
            c.execute(
                t.health.insert(),
                [
                    dict(version_id=i + 1, health="valid", cause_id=None, updated_at_us=now, rationale="", **state)
                    for i in ids
                ],
            )
        positions: dict[int, int] = {}
        rows = []
        for d, u in edges:
            p = positions.get(d, 0)
            positions[d] = p + 1
            rows.append(dict(downstream_id=d + 1, position=p, upstream_id=u + 1))
        for start in range(0, len(rows), 50_000):
            c.execute(t.edges.insert(), rows[start : start + 50_000])
    if engine.dialect.name == "postgresql":
        with engine.begin() as c:  # explicit ids were loaded: move the id sequence past them
            c.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('lineage_versions', 'id'),"
                " (SELECT max(id) FROM lineage_versions))"
            )
        with engine.connect() as c:
            c.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as c:
            c.exec_driver_sql("ANALYZE")


def memory_bfs(edges: list[tuple[int, int]], root: int = 0) -> int:
    adjacency: dict[int, list[int]] = {}
    for d, u in edges:
        adjacency.setdefault(u, []).append(d)
    seen = {root}
    queue = deque([root])
    while queue:
        for nxt in adjacency.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return len(seen) - 1


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def bench_graph(url: str, label: str, n: int, edges: list[tuple[int, int]], repeat: int, paged: bool) -> dict[str, Any]:
    engine = create_engine(url)
    migrations.upgrade(engine, "lineage")
    store = LineageStore(engine)
    store.ensure_types(
        [TypeDefinition(TYPE, "bench", "1", {"type": "object"})], SYSTEM, datetime.now(UTC), check_registration
    )
    t0 = time.perf_counter()
    load(engine, n, edges)
    load_s = time.perf_counter() - t0
    lineage = Lineage(store, {})
    root = f"projects/{PROJECT}/artifacts/{TYPE}/n0/versions/1"
    out: dict[str, Any] = {"graph": label, "nodes": n, "edges": len(edges), "load_s": round(load_s, 1)}

    expected = memory_bfs(edges)
    mem = [timed(lambda: memory_bfs(edges))[0] for _ in range(repeat)]
    out["memory_bfs_ms"] = round(statistics.median(mem), 1)

    cold = []
    for _ in range(repeat):
        fresh = Lineage(LineageStore(engine), {})
        ms, (page, _) = timed(lambda: fresh.closure(root, True, 0, 1, ""))  # noqa: B023
        assert page.total_size == expected, (page.total_size, expected)
        cold.append(ms)
    out["query_cold_ms"] = round(statistics.median(cold), 1)
    lineage.closure(root, True, 0, 1, "")
    query = []
    for _ in range(repeat):
        ms, (page, _) = timed(lambda: lineage.closure(root, True, 0, 1, ""))
        assert page.total_size == expected, (page.total_size, expected)
        query.append(ms)
    out["query_ms"] = round(statistics.median(query), 1)
    out["query_complete"] = True
    out["closure_size"] = expected
    from services.lineage.domain.names import parse_version_name

    cte = []
    for _ in range(repeat):
        ms, ids = timed(lambda: store.closure_ids_by_cte(parse_version_name(root), True))
        assert len(ids) == expected
        cte.append(ms)
    out["query_cte_ms"] = round(statistics.median(cte), 1)

    if paged:
        out["query_paged_grpc_ms"] = round(paged_walk(url, root, expected, repeat), 1)

    # The domain reads its caller from the call context, as it does inside an RPC.
    call_context.bind(request_id="bench", principal=OPERATOR, time_remaining=None)
    prop = []
    for r in range(repeat):
        # Each run first confirms every node valid again (bulk, untimed), so each propagation marks all of them.
        if r:
            with engine.begin() as c:
                c.execute(t.health.update().values(health="confirmed_valid"))
        ms, created = timed(
            lambda: lineage.create_version(
                f"projects/{PROJECT}/artifacts/{TYPE}/n0",
                {},
                Metadata("bench", "bench", 1.0, Source.AI),
                [],
                "",
            )
        )
        assert created.marked_stale == expected, (created.marked_stale, expected)
        prop.append(ms)
    out["propagate_ms"] = round(statistics.median(prop), 1)
    out["propagate_marked"] = expected
    engine.dispose()
    return out


def paged_walk(url: str, root: str, expected: int, repeat: int) -> float:
    """The complete closure through GetDownstream over real gRPC, every page."""
    from custody.lineage.v1 import lineage_pb2 as pb
    from custody.lineage.v1 import lineage_pb2_grpc
    from tests.support.harness import ServiceHarness, bearer, operator_token, state_layout

    layout = state_layout(Path(tempfile.mkdtemp()) / "var")
    with ServiceHarness("lineage", layout, settings={"database_url": url}) as harness:
        stub = lineage_pb2_grpc.LineageServiceStub(harness.channel())
        auth = bearer(operator_token(layout))
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            token, seen = "", 0
            while True:
                page = stub.GetDownstream(
                    pb.GetDownstreamRequest(name=root, page_size=10_000, page_token=token), metadata=auth, timeout=120
                )
                seen += len(page.nodes)
                token = page.next_page_token
                if not page.truncated:
                    break
            assert seen == expected, (seen, expected)
            runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


DEFAULT_POSTGRES = "postgresql://root@127.0.0.1:5432/test"
COMPARED = ("query_ms", "query_cte_ms", "propagate_ms")


def postgres_unreachable(dsn: str) -> str:
    """Why PostgreSQL at `dsn` cannot be measured ("" when it can)."""
    from services.common.db import normalize_url

    engine = sa.create_engine(normalize_url(dsn))
    try:
        with engine.connect() as c:
            c.exec_driver_sql("SELECT 1")
        return ""
    except sa.exc.OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    finally:
        engine.dispose()


def side_by_side(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per graph: each compared figure on both backends and the PostgreSQL/SQLite ratio (same run)."""
    by = {(r["database"], r["graph"]): r for r in results}
    out: dict[str, Any] = {}
    for graph in dict.fromkeys(r["graph"] for r in results):
        lite, pg = by.get(("sqlite", graph)), by.get(("postgresql", graph))
        if lite is None or pg is None:
            continue
        out[graph] = {
            key: {"sqlite": lite[key], "postgresql": pg[key], "ratio": round(pg[key] / lite[key], 2)}
            for key in COMPARED
            if lite.get(key) and pg.get(key) is not None
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help=f"PostgreSQL DSN (default: {', '.join(POSTGRES_ENV)}, {DEFAULT_POSTGRES})")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chain", type=int, default=10_000)
    parser.add_argument("--dag-nodes", type=int, default=100_000)
    parser.add_argument("--no-grpc", action="store_true", help="skip the paged gRPC walk")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    dsn = postgres_dsn(args.postgres, args.no_postgres, DEFAULT_POSTGRES)
    skipped = {"postgresql": postgres_unreachable(dsn)} if dsn else {"postgresql": "--no-postgres"}
    backends = ["sqlite", *([] if skipped["postgresql"] else ["postgresql"])]
    if not skipped["postgresql"]:
        skipped = {}
    results = []
    graphs = (("chain", args.chain, chain_edges(args.chain)), ("dag", args.dag_nodes, dag_edges(args.dag_nodes)))
    for label, n, edges in graphs:
        for backend in backends:
            url = (
                fresh_pg_schema(dsn, label) if backend == "postgresql" else f"sqlite:///{tempfile.mkdtemp()}/{label}.db"
            )
            try:
                result = bench_graph(url, label, n, edges, args.repeat, not args.no_grpc)
            finally:
                if backend == "postgresql":
                    drop_pg_schema(dsn, url)
            result["database"] = describe(url).split(":")[0].split("+")[0]
            results.append(result)
            print(json.dumps(result), flush=True)
    document = {
        "benchmark": "lineage",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "targets_ms": {"query": 250, "propagate": 500},
        "backends": backends,
        "skipped": skipped,
        "results": results,
        "side_by_side": side_by_side(results),
    }
    path = Path(args.out) / "lineage.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}")
    for r in results:
        print(
            f"{r['database']:>10} {r['graph']:>5} n={r['nodes']:>6}: query {r['query_ms']} ms "
            f"(cold {r['query_cold_ms']}, CTE {r['query_cte_ms']}), paged gRPC {r.get('query_paged_grpc_ms', '-')} ms, "
            f"propagate {r['propagate_ms']} ms, in-memory BFS {r['memory_bfs_ms']} ms"
        )
    for backend, why in skipped.items():
        print(f"{backend}: skipped ({why})")


def fresh_pg_schema(dsn: str, label: str) -> str:
    from services.common.db import normalize_url

    schema = f"bench_{label}_{secrets.token_hex(6)}"
    admin = sa.create_engine(normalize_url(dsn))
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    admin.dispose()
    return (
        normalize_url(dsn)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


def drop_pg_schema(dsn: str, url: str) -> None:
    from services.common.db import normalize_url

    schema = normalize_url(url).query["options"].removeprefix("-csearch_path=")
    admin = sa.create_engine(normalize_url(dsn))
    with admin.begin() as c:
        c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


if __name__ == "__main__":
    main()
