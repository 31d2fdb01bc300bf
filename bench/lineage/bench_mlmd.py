"""MLMD (ml-metadata 1.17.1) peer for the lineage benchmark: the same 10,000-deep chain and its downstream query.

Runs in its own venv (ml-metadata pins protobuf < 5):
    python3.11 -m venv bench/.peers/mlmd && bench/.peers/mlmd/bin/pip install ml-metadata==1.17.1
    bench/.peers/mlmd/bin/python bench/lineage/bench_mlmd.py [--chain 10000] [--repeat 5]

The wheel has no server: MLMD runs in-process on SQLite. Its chain is artifact -> execution -> artifact, so one
Custody edge is two MLMD hops. get_lineage_subgraph caps max_num_hops at 100 and returns what it reached without an
error; we ask for the whole chain and report how many artifacts came back next to the time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

ROOT = Path(__file__).resolve().parents[2]


def build_chain(store: metadata_store.MetadataStore, n: int) -> int:
    """n artifacts, each produced by an execution that consumed the previous one; returns the first's id."""
    artifact_type = store.put_artifact_type(mlmd.ArtifactType(name="node"))
    execution_type = store.put_execution_type(mlmd.ExecutionType(name="derive"))
    [first] = store.put_artifacts([mlmd.Artifact(type_id=artifact_type, uri="n0")])
    previous = mlmd.Artifact(id=first, type_id=artifact_type, uri="n0")
    for i in range(1, n):
        _, ids, _ = store.put_execution(
            mlmd.Execution(type_id=execution_type),
            [
                (previous, mlmd.Event(type=mlmd.Event.INPUT)),
                (mlmd.Artifact(type_id=artifact_type, uri=f"n{i}"), mlmd.Event(type=mlmd.Event.OUTPUT)),
            ],
            [],
        )
        previous = mlmd.Artifact(id=ids[1], type_id=artifact_type, uri=f"n{i}")
    return first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chain", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "lineage-mlmd.json"))
    args = parser.parse_args()
    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = f"{tempfile.mkdtemp()}/mlmd.db"
    config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    start = time.perf_counter()
    first = build_chain(store, args.chain)
    build_s = time.perf_counter() - start
    options = mlmd.LineageSubgraphQueryOptions(
        starting_artifacts=mlmd.LineageSubgraphQueryOptions.StartingNodes(filter_query=f"id = {first}"),
        max_num_hops=2 * args.chain,
        direction=mlmd.LineageSubgraphQueryOptions.DOWNSTREAM,
    )
    times, returned = [], 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        graph = store.get_lineage_subgraph(options)
        times.append((time.perf_counter() - t0) * 1000)
        returned = len(graph.artifacts) - 1  # minus the starting artifact
    result = {
        "peer": "ml-metadata 1.17.1 (in-process, SQLite)",
        "graph": "chain",
        "nodes": args.chain,
        "build_s": round(build_s, 1),
        "puts_per_s": round((args.chain - 1) / build_s, 1),
        "query_ms": round(statistics.median(times), 1),
        "requested_hops": 2 * args.chain,
        "downstream_expected": args.chain - 1,
        "downstream_returned": returned,
        "complete": returned == args.chain - 1,
        "error_raised": False,
    }
    document = {
        "benchmark": "lineage-mlmd",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "results": [result],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(result))
    print(
        f"MLMD chain n={args.chain}: query {result['query_ms']} ms, returned {returned} of {args.chain - 1} "
        f"downstream artifacts ({'complete' if result['complete'] else 'INCOMPLETE, no error'})"
    )


if __name__ == "__main__":
    main()
