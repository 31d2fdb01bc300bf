"""MLflow tracking server peer for the runs benchmark: create run + 4 KiB artifact + terminate, 1 and 8 clients.

Runs in MLflow's own venv (never the project's):
    python3.11 -m venv bench/.peers/mlflow && bench/.peers/mlflow/bin/pip install mlflow==3.17.2 psycopg2-binary
    bench/.peers/mlflow/bin/python bench/runs/bench_mlflow.py --mode gunicorn --runs 200
Starts `mlflow server` (SQLite backend, served artifacts) on a free loopback port, measures from the client, stops
the server, and prints one JSON object. Its default uvicorn mode and the faster gunicorn mode are both measured.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(tmp: Path, mode: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp}/mlflow.db",
        "--artifacts-destination",
        str(tmp / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    if mode == "gunicorn":
        command += ["--gunicorn-opts", "--log-level warning"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("mlflow server did not become healthy in 180 s")


def measure(url: str, clients: int, total: int, payload: Path) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment(f"bench-{clients}-{time.time_ns()}")
    latencies: list[float] = []

    def one(_: int) -> None:
        started = time.perf_counter()
        run = client.create_run(experiment)
        client.log_artifact(run.info.run_id, str(payload))
        client.set_terminated(run.info.run_id)
        latencies.append((time.perf_counter() - started) * 1000)

    for index in range(3):  # warm-up
        one(index)
    latencies.clear()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(total)))
    elapsed = time.perf_counter() - started
    return {
        "runs_per_s": round(total / elapsed, 2),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(sorted(latencies)[int(0.99 * (len(latencies) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["default", "gunicorn"], default="gunicorn")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as name:
        tmp = Path(name)
        payload = tmp / "artifact.bin"
        payload.write_bytes(os.urandom(4096))
        process, url = start_server(tmp, args.mode)
        try:
            result = {str(c): measure(url, c, args.runs, payload) for c in (1, 8)}
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    import mlflow

    print(json.dumps({"peer": f"mlflow {mlflow.__version__} tracking server ({args.mode}, SQLite)", "clients": result}))


if __name__ == "__main__":
    main()
