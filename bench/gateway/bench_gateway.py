"""Added latency of the ai_gateway over calling the provider directly, side by side with LiteLLM proxy.

Four clients call the same fake OpenAI-compatible server (tests/ai_gateway/fake_openai.py, its own process):
  direct   the openai SDK straight to the fake server (the baseline),
  floor    GenerateText over gRPC to bench/gateway/floor_server.py: the same proto, loop and provider class, and
           no governance at all -- what a Python gRPC hop in front of the SDK costs by itself,
  custody  GenerateText over gRPC to `custody serve ai_gateway` (its own process: auth, safety checks, pricing,
           a durable audit row in SQLite with synchronous=FULL, and a JSON log line per call),
  litellm  the openai SDK to LiteLLM proxy (bench/.peers/litellm, one worker, no database: no virtual keys,
           budgets or spend logs, so it does less work than in production).
Added latency = percentile(target) - percentile(direct) at the same concurrency, measured from the client.

Usage: .venv/bin/python -m bench.gateway.bench_gateway [--requests 500] [--no-litellm]
Writes bench/results/gateway-<time>.json and prints medians and ratios. Not a test: it asserts nothing.
Every process it starts is stopped on exit, and every loop is bounded (request counts and start-up deadlines).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import openai

from bench.harness import free_port, knobs_for, summary, write_result
from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.cli.health import check
from services.cli.state import StateLayout, initialize
from tests.support.harness import operator_token

REPO = Path(__file__).resolve().parents[2]
LITELLM_VENV = REPO / "bench" / ".peers" / "litellm"
LITELLM_VERSION = "1.106.2"
MODEL = "gpt-4o-mini"
PROMPT = "Describe a guitar rosette with twelve petals in one sentence."
BENCH_KEY = "sk-bench-" + secrets.token_hex(16)
STARTUP_DEADLINE_S = 120


@contextlib.contextmanager
def _helper_process(module: str, *args: str) -> Iterator[str]:
    """`python -m module args` in its own process; yields the first line it prints. Such helpers exit when their
    stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        _stop(process)


@contextlib.contextmanager
def fake_provider(*args: str) -> Iterator[str]:
    """The fake OpenAI-compatible server (`args` as its command line takes them); yields its base URL."""
    with _helper_process("tests.ai_gateway.fake_openai", *args) as base_url:
        yield base_url


@contextlib.contextmanager
def floor_server(base_url: str) -> Iterator[str]:
    """bench/gateway/floor_server.py forwarding to `base_url`; yields its address."""
    with _helper_process("bench.gateway.floor_server", base_url) as port:
        yield f"127.0.0.1:{port}"


@dataclass
class Gateway:
    address: str
    layout: StateLayout


@contextlib.contextmanager
def gateway_process(state: Path, base_url: str) -> Iterator[Gateway]:
    """`custody serve ai_gateway` at log level INFO (so each call's audit log line is written, to a file)."""
    layout = StateLayout(state)
    initialize(layout)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    env.update(
        {
            "CUSTODY_AI_GATEWAY_PORT": str(port),
            "CUSTODY_AI_GATEWAY_STATE_DIR": str(state),
            "CUSTODY_AI_GATEWAY_LOG_LEVEL": "INFO",
            "CUSTODY_AI_GATEWAY_OPENAI_BASE_URL": base_url,
            "CUSTODY_AI_GATEWAY_DEFAULT_PROVIDER": "openai",
            "OPENAI_API_KEY": BENCH_KEY,  # read by the gateway's transport only
        }
    )
    env.update({f"CUSTODY_AI_GATEWAY_{key.upper()}": value for key, value in knobs_for("ai_gateway").items()})
    config = layout.service_config("ai_gateway")
    log = (state.parent / "gateway.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "ai_gateway", "--config", str(config)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while check(address, "custody.ai_gateway.v1.AiGatewayService", 0.5) != "SERVING":
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ai_gateway did not start (exit {process.poll()}); see {log.name}")
            time.sleep(0.1)
        yield Gateway(address, layout)
    finally:
        _stop(process)
        log.close()


@contextlib.contextmanager
def litellm_proxy(base_url: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """LiteLLM proxy, pinned release from its own venv, offline; yields (base URL, master key)."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        raise RuntimeError(f"{binary} missing: python3.11 -m venv {LITELLM_VENV} && "
                           f"{LITELLM_VENV}/bin/pip install 'litellm[proxy]=={LITELLM_VERSION}'")  # fmt: skip
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {base_url}\n"
        "      api_key: sk-dummy-not-used\n"
        "litellm_settings:\n"
        "  num_retries: 0\n"
        "  request_timeout: 30\n"
    )
    port = free_port()
    master = "sk-" + secrets.token_hex(24)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": master,
        "LITELLM_LOG": "ERROR",
        "NO_PROXY": "*",
    }
    log = (workdir / "litellm.log").open("w")
    command = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"litellm exited with {process.returncode}; see {workdir / 'litellm.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"litellm not ready after {STARTUP_DEADLINE_S} s")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", master
    finally:
        _stop(process, group=True)
        log.close()


def _stop(process: subprocess.Popen[Any], group: bool = False) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM) if group else process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL) if group else process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


async def measure(call: Callable[[], Awaitable[Any]], requests: int, concurrency: int) -> list[float]:
    """`requests` calls spread over `concurrency` workers; latency of each, in ms (after a warm-up)."""
    for _ in range(max(20, concurrency * 2)):
        await call()
    samples: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()
            samples.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"requests_per_point": args.requests, "concurrency": [1, 16], "targets": {}}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="custody-bench-gateway-") as scratch, fake_provider() as base_url:
        workdir = Path(scratch)
        direct = openai.AsyncOpenAI(api_key="sk-dummy", base_url=base_url, max_retries=0)
        targets: dict[str, Callable[[], Awaitable[Any]]] = {
            "direct": lambda: direct.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": PROMPT}]
            )
        }
        with contextlib.ExitStack() as stack:
            request = gateway_pb2.GenerateTextRequest(operation="general_text", prompt=PROMPT, model=MODEL)
            floor_channel = grpc.aio.insecure_channel(stack.enter_context(floor_server(base_url)))
            floor_stub = gateway_pb2_grpc.AiGatewayServiceStub(floor_channel)
            targets["floor"] = lambda: floor_stub.GenerateText(request, timeout=30)
            gateway = stack.enter_context(gateway_process(workdir / "custody", base_url))
            channel = grpc.aio.insecure_channel(gateway.address)
            stub = gateway_pb2_grpc.AiGatewayServiceStub(channel)
            metadata = (("authorization", f"Bearer {operator_token(gateway.layout)}"),)
            targets["custody"] = lambda: stub.GenerateText(request, metadata=metadata, timeout=30)
            if not args.no_litellm:
                try:
                    proxy_url, master = stack.enter_context(litellm_proxy(base_url, workdir))
                    proxied = openai.AsyncOpenAI(api_key=master, base_url=proxy_url + "/v1", max_retries=0)
                    targets["litellm"] = lambda: proxied.chat.completions.create(
                        model=MODEL, messages=[{"role": "user", "content": PROMPT}]
                    )
                except RuntimeError as exc:
                    notes.append(f"LiteLLM not measured: {exc}")
            for concurrency in (1, 16):
                for name, call in targets.items():
                    samples = await measure(call, args.requests, concurrency)
                    results["targets"].setdefault(name, {})[f"c{concurrency}"] = summary(samples)
                    print(f"  c={concurrency:<2} {name:8} {summary(samples)}", flush=True)
            await channel.close()
            await floor_channel.close()
        await direct.close()
    results["added"] = added(results["targets"])
    results["notes"] = [
        *notes,
        "floor: a bare gRPC server that only forwards through the gateway's provider class (no auth, checks, "
        "pricing, audit or log): custody minus floor is what governance costs",
        "custody: one gateway process; every call authenticated, safety-checked, priced, audited durably in SQLite "
        "(synchronous=FULL, group commit) and logged as one JSON line (log level INFO, to a file)",
        f"litellm {LITELLM_VERSION}: one worker, no database (no virtual keys, budgets or spend logs), num_retries 0",
        "added = target percentile - direct percentile at the same concurrency, measured from the client",
    ]
    return results


def added(targets: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for point in ("c1", "c16"):
        base = targets["direct"][point]
        row: dict[str, Any] = {}
        for name in ("floor", "custody", "litellm"):
            if name in targets:
                row[name] = {q: round(targets[name][point][f"{q}_ms"] - base[f"{q}_ms"], 3) for q in ("p50", "p99")}
        for name in ("floor", "custody"):
            if name in row and "litellm" in row:
                row[f"{name}_over_litellm"] = {
                    q: round(row[name][q] / row["litellm"][q], 4) if row["litellm"][q] > 0 else None
                    for q in ("p50", "p99")
                }
        out[point] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="timed requests per target and concurrency")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (60 requests a point)")
    args = parser.parse_args()
    args.requests = 60 if args.quick else max(16, min(args.requests, 20_000))
    results = asyncio.run(run(args))
    path = write_result("gateway-quick" if args.quick else "gateway", results)
    print("\nadded latency over the direct call (ms):")
    for point, row in results["added"].items():
        for name, values in row.items():
            print(f"  {point:4} {name:22} p50 {values['p50']}  p99 {values['p99']}")
    for note in results["notes"]:
        print(f"note: {note}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
