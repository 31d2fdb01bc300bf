"""Shared benchmark plumbing: start a service process on a free port with fresh state, time things, report medians.

Benchmarks are not tests: they print figures and write JSON under bench/results/; they assert nothing.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from custody.runs.v1 import runs_pb2
from services.cli.health import check
from services.cli.state import StateLayout, initialize
from services.common.catalog import SERVICES
from services.common.config import env_prefix
from services.common.db import normalize_url
from services.common.hashing import sha256_canonical
from services.common.protomap import dict_to_struct

RESULTS = Path(__file__).resolve().parent / "results"
# Where a benchmark finds PostgreSQL: its --postgres flag, else the first of these that is set (CI sets the second).
POSTGRES_ENV = ("CUSTODY_BENCH_POSTGRES_DSN", "CUSTODY_TEST_POSTGRES_DSN")


def postgres_dsn(flag: str | None, disabled: bool, default: str = "") -> str:
    """The PostgreSQL DSN a benchmark measures against ("" for none): flag, environment, then `default`."""
    if disabled:
        return ""
    return flag or next((os.environ[name] for name in POSTGRES_ENV if os.environ.get(name)), default)


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningService:
    address: str
    layout: StateLayout
    process: subprocess.Popen[bytes]


def knobs_for(service: str) -> dict[str, str]:
    """Settings an A/B run asks for through BENCH_SERVICE_SETTINGS, e.g. `runs:keep_freed_memory=false;
    ai_gateway:gil_switch_interval_s=0.005` (the services' own CUSTODY_* variables are not passed through)."""
    found: dict[str, str] = {}
    for entry in filter(None, os.environ.get("BENCH_SERVICE_SETTINGS", "").split(";")):
        name, _, assignment = entry.partition(":")
        key, _, value = assignment.partition("=")
        if name.strip() == service and key.strip():
            found[key.strip()] = value.strip()
    return found


@contextmanager
def service_process(service: str, state: Path, port: int = 0, **settings: str) -> Iterator[RunningService]:
    """`custody serve SERVICE` with its own state directory (on `port`, or a free one); stopped on exit.
    The stack tests use it too: one way to start a single service process."""
    layout = StateLayout(state)
    initialize(layout)
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    prefix = env_prefix(service)
    env.update({prefix + "PORT": str(port), prefix + "STATE_DIR": str(state), prefix + "LOG_LEVEL": "WARNING"})
    env.update({prefix + key.upper(): value for key, value in {**settings, **knobs_for(service)}.items()})
    command = [sys.executable, "-m", "services.cli", "serve", service, "--config", str(layout.service_config(service))]
    process = subprocess.Popen(command, env=env)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while check(address, SERVICES[service].full_name, 0.5) != "SERVING":
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{service} did not start (exit {process.poll()})")
            time.sleep(0.1)
        yield RunningService(address, layout, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def small_run(mode: str, label: object, meta: dict[str, Any] | None = None) -> runs_pb2.RunInput:
    """A small valid run for load: its feasibility (and so its hash) tells one `label` from another under `mode`."""
    feasibility = {mode: label}
    return runs_pb2.RunInput(
        mode=mode,
        tool_id="router-0.5mm",
        status=runs_pb2.RUN_STATUS_OK,
        decision=runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_GREEN, score=0.9),
        hashes=runs_pb2.Hashes(feasibility_sha256=sha256_canonical(feasibility)),
        meta=dict_to_struct(meta) if meta else None,
    )


@contextmanager
def fresh_schema(dsn: str, label: str = "bench") -> Iterator[str]:
    """A new schema in the PostgreSQL database `dsn` names, as a URL whose search_path selects it; dropped after."""
    schema = f"{label}_{secrets.token_hex(6)}"
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


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50_ms": round(statistics.median(samples_ms), 3),
        "p99_ms": round(percentile(samples_ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
    }


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps({"benchmark": name, "at": stamp, "machine": machine(), **result}, indent=2) + "\n")
    return path
