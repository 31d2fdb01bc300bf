"""The whole benchmark suite, side by side with the systems users would pick instead, in one run on one machine.

    make bench          # full: peers installed into bench/.peers/ first (LiteLLM, MLflow, ml-metadata)
    make bench-smoke    # seconds-long, no peers: keeps the harness working (no thresholds)

Each benchmark runs in its own process and writes its own JSON; this collects them into
bench/results/<timestamp>.json, a markdown table (<timestamp>.md, also printed) and PNG plots. Figures are medians
over repeated runs, and every ratio compares figures measured in this same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, machine

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "bench" / ".peers"


def _python_of(peer: str) -> Path | None:
    python = PEERS / peer / "bin" / "python"
    return python if python.exists() else None


def _run(command: list[str], timeout_s: float) -> str:
    """Runs one benchmark process and returns its stdout; a failure is recorded, not fatal to the suite."""
    print(f"$ {' '.join(command)}", flush=True)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} ... exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def _latest(prefix: str, since: float) -> dict[str, Any]:
    candidates = [p for p in RESULTS.glob(f"{prefix}-*.json") if p.stat().st_mtime >= since]
    if not candidates:
        raise RuntimeError(f"no {prefix} result written")
    return json.loads(max(candidates, key=lambda p: p.stat().st_mtime).read_text())


def run_suite(smoke: bool) -> dict[str, Any]:
    started = time.time()
    python = sys.executable
    quick = ["--quick"] if smoke else []
    sections: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def section(name: str, action: Any) -> None:
        try:
            sections[name] = action()
        except Exception as exc:  # one failed benchmark must not hide the others' figures
            errors[name] = str(exc)
            print(f"!! {name}: {exc}", flush=True)

    def ceiling() -> Any:
        _run([python, "-m", "bench.ceiling.bench_echo", *quick], 600)
        return _latest("ceiling-quick" if smoke else "ceiling", started)

    def runs() -> Any:
        _run([python, "-m", "bench.runs.bench_runs", *quick], 900)
        return _latest("runs-quick" if smoke else "runs", started)

    def mlflow() -> Any:
        peer = _python_of("mlflow")
        if smoke or peer is None:
            return {"skipped": "smoke run" if smoke else "bench/.peers/mlflow missing (make bench installs it)"}
        # MLflow's client prints a line per run; the benchmark's JSON is the last line.
        return {
            mode: json.loads(
                _run([str(peer), "bench/runs/bench_mlflow.py", "--mode", mode, "--runs", "200"], 900).splitlines()[-1]
            )
            for mode in ("default", "gunicorn")
        }

    def gateway() -> Any:
        litellm = [] if (_python_of("litellm") and not smoke) else ["--no-litellm"]
        size = ["--quick"] if smoke else ["--requests", "500"]
        _run([python, "-m", "bench.gateway.bench_gateway", *size, *litellm], 1200)
        return _latest("gateway-quick" if smoke else "gateway", started)

    def detectors() -> Any:
        _run([python, "-m", "bench.gateway.bench_detectors", *quick], 1200)
        return _latest("detectors-quick" if smoke else "detectors", started)

    def lineage() -> Any:
        size = ["--chain", "500", "--dag-nodes", "2000", "--repeat", "1", "--no-grpc"] if smoke else ["--repeat", "3"]
        out = RESULTS / "suite-lineage"
        out.mkdir(parents=True, exist_ok=True)
        # SQLite and PostgreSQL side by side in one process (PostgreSQL as bench_lineage.py finds it, else skipped).
        _run([python, "bench/lineage/bench_lineage.py", *size, "--out", str(out)], 2400)
        document = json.loads((out / "lineage.json").read_text())
        peer = _python_of("mlmd")
        if peer is not None and not smoke:
            target = out / "mlmd.json"
            _run([str(peer), "bench/lineage/bench_mlmd.py", "--repeat", "3", "--out", str(target)], 900)
            document["mlmd"] = json.loads(target.read_text())
        return document

    def ledger() -> Any:
        # Side by side, ledger on and off, in alternating rounds; the full run fills a 1M-leaf ledger (minutes).
        _run([python, "-m", "bench.ledger.bench_ledger", *quick], 3600)
        return _latest("ledger-quick" if smoke else "ledger", started)

    def art_studio() -> Any:
        _run([python, "-m", "bench.art_studio.bench_art_studio", *quick], 900)
        return _latest("art_studio-quick" if smoke else "art_studio", started)

    def soak() -> Any:
        # 100k mixed RPCs against `custody up`, RSS and descriptors of each process every 10k (minutes). Its
        # smoke run is a test of its own (tests/bench/test_soak_smoke.py), so both run side by side in make test.
        if smoke:
            return {"skipped": "smoke run (tests/bench/test_soak_smoke.py runs bench.soak.bench_soak --quick)"}
        _run([python, "-m", "bench.soak.bench_soak"], 3600)
        return _latest("soak", started)

    def fuzz() -> Any:
        # Every fuzz target in its own process, a minute each; the smoke run checks the wiring with one target for a
        # second (tests/fuzz runs every target in `make test`). A crash fails the section, its figures and
        # reproducers are still reported.
        size = ["--seconds", "1", "--target", "svg_validator"] if smoke else ["--seconds", "60", "--jobs", "2"]
        try:
            _run([python, "-m", "bench.fuzz", *size], 3600)
        except RuntimeError:
            sections["fuzz"] = _latest("fuzz-quick" if smoke else "fuzz", started)
            raise
        return _latest("fuzz-quick" if smoke else "fuzz", started)

    def faults() -> Any:
        # SIGKILLs under load on both backends, then each outage; minutes. tests/faults runs them at a small size in
        # `make test`, so the smoke run leaves them out.
        if smoke:
            return {"skipped": "smoke run (tests/faults runs the crash and outage harnesses at a small size)"}
        found: dict[str, Any] = {}
        for backend in ("sqlite", "postgresql"):
            _run([python, "-m", "bench.faults.crash", "--backend", backend, "--kills", "50", "--seed", "7"], 3600)
            found[f"crash_{backend}"] = _latest(f"crash-{backend}", started)
        _run([python, "-m", "bench.faults.outages", "--scenario", "all"], 1800)
        found["outages"] = _latest("outages", started)
        return found

    for name, action in (
        ("ceiling", ceiling),
        ("runs", runs),
        ("mlflow", mlflow),
        ("gateway", gateway),
        ("detectors", detectors),
        ("lineage", lineage),
        ("ledger", ledger),
        ("art_studio", art_studio),
        ("soak", soak),
        ("fuzz", fuzz),
        ("faults", faults),
    ):
        section(name, action)
    return {
        "suite": "smoke" if smoke else "full",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "sections": sections,
        "errors": errors,
    }


def _get(document: Any, *path: Any) -> Any:
    for key in path:
        if not isinstance(document, dict | list):
            return None
        try:
            document = document[key]
        except (KeyError, IndexError, TypeError):
            return None
    return document


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if isinstance(a, int | float) and isinstance(b, int | float) and b else "n/a"


def table(result: dict[str, Any]) -> str:
    """The README's Performance table: figure, peer figure measured in the same run, ratio."""
    s = result["sections"]
    ceiling_c8 = _get(s, "ceiling", "calls_per_s", "8")
    sqlite = _get(s, "runs", "backends", "sqlite") or {}
    mints = _get(sqlite, "mints_per_s_8_clients", "median")
    pairs1, pairs8 = (
        _get(sqlite, "create_plus_4kib_attach_per_s", "1"),
        _get(sqlite, "create_plus_4kib_attach_per_s", "8"),
    )
    mlflow_best = max(
        (
            _get(s, "mlflow", mode, "clients", clients, "runs_per_s") or 0
            for mode in ("default", "gunicorn")
            for clients in ("1", "8")
        ),
        default=0,
    )
    upload = _get(sqlite, "upload") or {}
    gateway = _get(s, "gateway", "added") or {}
    rows = [
        ("gRPC ceiling: bare unary echo, 8 clients (calls/s)", ceiling_c8, "", ""),
        ("runs: durable mints/s, 8 clients", mints, f"echo {ceiling_c8}", _ratio(mints, ceiling_c8)),
        (
            "runs: create + 4 KiB attach per s, 1 / 8 clients",
            f"{pairs1} / {pairs8}",
            f"MLflow best {mlflow_best or 'n/a'}",
            _ratio(pairs8, mlflow_best),
        ),
        (
            "runs: create + 4 KiB attach p50 / p99 (ms), 1 client",
            "{p50_ms} / {p99_ms}".format(**(_get(sqlite, "create_plus_4kib_attach") or {"p50_ms": "", "p99_ms": ""})),
            "",
            "",
        ),
        (
            f"runs: {upload.get('mib')} MiB upload (MB/s)",
            upload.get("upload_mb_s"),
            f"sha256 {upload.get('sha256_mb_s')}",
            _ratio(upload.get("upload_mb_s"), upload.get("sha256_mb_s")),
        ),
    ]
    for point, figures in gateway.items():
        for system, label in (("custody", "gateway"), ("floor", "gateway floor (gRPC hop + SDK forward only)")):
            rows.append(
                (
                    f"{label}: added latency p50 / p99 (ms), concurrency {point.removeprefix('c')}",
                    f"{_get(figures, system, 'p50')} / {_get(figures, system, 'p99')}",
                    f"LiteLLM {_get(figures, 'litellm', 'p50')} / {_get(figures, 'litellm', 'p99')}",
                    " / ".join(_ratio(_get(figures, system, q), _get(figures, "litellm", q)) for q in ("p50", "p99")),
                )
            )
    detector = _get(s, "detectors") or {}
    worst = _get(detector, "worst_ratio_1mib_vs_1kib") or {}
    rows.append(
        (
            "gateway detectors: per-KiB time at 1 MiB / at 1 KiB, worst adversarial input (1 = linear)",
            worst.get("ratio"),
            worst.get("where", ""),
            "",
        )
    )
    for rpc, figures in (_get(detector, "event_loop", "adversarial", "chunks_of_4") or {}).items():
        if rpc != "idle":
            idle = _get(detector, "event_loop", "adversarial", "chunks_of_4", "idle", "p50_ms")
            rows.append(
                (
                    f"gateway: GetServiceInfo p50 / max (ms) during 4 {rpc} of 31k adversarial chars",
                    f"{figures.get('p50_ms')} / {figures.get('max_ms')}",
                    f"idle p50 {idle}",
                    _ratio(figures.get("p50_ms"), idle),
                )
            )
    for entry in _get(s, "lineage", "results") or []:
        graph, nodes, backend = entry.get("graph", "?"), entry.get("nodes", "?"), entry.get("database", "sqlite")
        query, bfs = entry.get("query_ms"), entry.get("memory_bfs_ms")
        complete = "complete" if entry.get("query_complete") else "INCOMPLETE"
        rows.append(
            (
                f"lineage ({backend}): downstream query, {graph} of {nodes} (ms, {complete})",
                query,
                f"in-memory BFS {bfs}",
                _ratio(query, bfs),
            )
        )
        rows.append(
            (f"lineage ({backend}): staleness propagation, {graph} of {nodes} (ms)", entry.get("propagate_ms"), "", "")
        )
    nodes_of = {e.get("graph"): e.get("nodes") for e in _get(s, "lineage", "results") or []}
    for graph, figures in (_get(s, "lineage", "side_by_side") or {}).items():
        for key, what in (("query_ms", "downstream query"), ("propagate_ms", "staleness propagation")):
            pair = figures.get(key) or {}
            rows.append(
                (
                    f"lineage PostgreSQL vs SQLite: {what}, {graph} of {nodes_of.get(graph)} (ms)",
                    pair.get("postgresql"),
                    f"SQLite {pair.get('sqlite')}",
                    _ratio(pair.get("postgresql"), pair.get("sqlite")),
                )
            )
    for backend, why in (_get(s, "lineage", "skipped") or {}).items():
        rows.append((f"lineage ({backend})", "skipped", why, ""))
    for entry in _get(s, "lineage", "mlmd", "results") or []:
        rows.append(
            (
                f"MLMD lineage query, chain {entry.get('nodes')} (ms; complete?)",
                f"{entry.get('query_ms')} ({entry.get('downstream_returned')}/{entry.get('downstream_expected')})",
                "",
                "",
            )
        )
    for backend, figures in (_get(s, "ledger", "backends") or {}).items():
        on, off = (
            _get(figures, "mints_per_s_8_clients", "on", "median"),
            _get(figures, "mints_per_s_8_clients", "off", "median"),
        )
        rows.append((f"runs: mints/s with the ledger, 8 clients ({backend})", on, f"ledger off {off}", _ratio(on, off)))
        audit = _get(figures, "audit") or {}
        rows.append(
            (
                f"custody ledger audit runs ({backend}): leaves/s; s for {audit.get('leaves')} leaves",
                audit.get("leaves_per_s"),
                _get(audit, "audit_s", "median"),
                "",
            )
        )
    proofs = _get(s, "ledger", "proofs") or {}
    for where in ("in_process", "grpc"):
        rows.append(
            (
                f"ledger: inclusion proof p50 / p99 (ms) at {proofs.get('leaves')} leaves, {where.replace('_', ' ')}",
                f"{_get(proofs, f'inclusion_{where}', 'p50_ms')} / {_get(proofs, f'inclusion_{where}', 'p99_ms')}",
                "",
                "",
            )
        )
    rows.append(
        (f"ledger: tree catch-up at {proofs.get('leaves')} leaves (s)", _get(proofs, "catch_up_s", "median"), "", "")
    )
    studio = _get(s, "art_studio") or {}
    rows.append(
        ("art_studio: compile 64-petal spec p50 (ms)", _get(studio, "compile_64_petals_in_process", "p50_ms"), "", "")
    )
    for name, figures in (_get(studio, "end_to_end") or {}).items():
        rows.append(
            (
                f"end to end: {name.replace('_', ' + ')} p50 / p99 (ms)",
                f"{figures['p50_ms']} / {figures['p99_ms']}",
                "",
                "",
            )
        )
    soak = _get(s, "soak") or {}
    for name, grown in (_get(soak, "growth_per_100k_calls") or {}).items():
        rows.append(
            (
                f"soak: {name} growth per 100k calls over {soak.get('calls')} mixed RPCs (RSS MiB / fds)",
                f"{grown['rss_mib']} / {grown['fds']}",
                "",
                "",
            )
        )
    for target, figures in (_get(s, "fuzz", "targets") or {}).items():
        rows.append(
            (
                f"fuzz {target}: executions in {figures.get('seconds')} s (crashes)",
                f"{figures.get('executions')} ({figures.get('crashes')})",
                "",
                "",
            )
        )
    lines = ["| measure | Custody | peer (same run) | ratio |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {value} | {peer} | {ratio} |" for name, value, peer, ratio in rows]
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any], stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(figure: Any, name: str) -> Path:
        path = stem.with_name(f"{stem.name}-{name}.png")
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path

    written = []
    s = result["sections"]
    sqlite = _get(s, "runs", "backends", "sqlite") or {}
    series = {
        "echo (gRPC ceiling)": [_get(s, "ceiling", "calls_per_s", c) for c in ("1", "8")],
        "runs create+attach": [_get(sqlite, "create_plus_4kib_attach_per_s", c) for c in ("1", "8")],
    }
    for mode in ("default", "gunicorn"):
        series[f"MLflow ({mode})"] = [_get(s, "mlflow", mode, "clients", c, "runs_per_s") for c in ("1", "8")]
    figure, axis = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        if all(isinstance(v, int | float) for v in values):
            axis.plot([1, 8], values, marker="o", label=label)
    axis.set(
        xlabel="concurrent clients", ylabel="operations per second", yscale="log", title="Throughput by concurrency"
    )
    axis.legend()
    written.append(save(figure, "throughput"))

    labels, p50, p99 = [], [], []
    for point, figures in (_get(s, "gateway", "added") or {}).items():
        for system in ("floor", "custody", "litellm"):
            if isinstance(_get(figures, system, "p50"), int | float):
                labels.append(f"{system} {point}")
                p50.append(figures[system]["p50"])
                p99.append(figures[system]["p99"])
    if labels:
        figure, axis = plt.subplots(figsize=(7, 4))
        positions = range(len(labels))
        axis.bar([p - 0.2 for p in positions], p50, width=0.4, label="p50")
        axis.bar([p + 0.2 for p in positions], p99, width=0.4, label="p99")
        axis.set_xticks(list(positions), labels, rotation=20, ha="right")
        axis.set(ylabel="added latency (ms)", title="Gateway latency added over a direct call")
        axis.legend()
        written.append(save(figure, "gateway-latency"))
    return written


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="seconds-long, no peers, no thresholds")
    args = parser.parse_args()
    result = run_suite(args.smoke)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / (("smoke-" if args.smoke else "") + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = table(result)
    stem.with_suffix(".md").write_text(markdown)
    written = plots(result, stem)
    print(markdown)
    print(f"wrote {stem}.json, {stem}.md, " + ", ".join(str(p) for p in written))
    if result["errors"]:
        print(f"benchmarks that failed: {', '.join(result['errors'])}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
