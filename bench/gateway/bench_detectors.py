"""The ai_gateway's safety detectors on adversarial texts: time per KiB from 1 KiB to 1 MiB, and the event-loop
stall a gateway shows while it scans large adversarial responses.

1. In process: each detector and the default policy's blocked pattern are fed texts of 1 KiB..1 MiB made of one
   fragment repeated: every pattern's prefix (what makes a backtracking engine try, and fail, at each position) and
   near misses. For each, the median time per KiB at every size; linear time shows as a flat curve, so the ratio
   per-KiB(1 MiB) / per-KiB(1 KiB) stays near 1 (or below: fixed costs weigh on small texts). Quadratic time would
   make it about 1024. Also: the backtracking pattern the secrets detector replaced, on the input that made it
   quadratic, for comparison; and the cost of a policy check of INLINE_CHECK_CHARS against a worker-thread hop.
2. Over gRPC: `custody serve ai_gateway` (its own process) against the fake provider answering every call with a
   31,000-character adversarial response (under the 32,000-character output limit). A probe calls GetServiceInfo
   back to back while 4 clients keep calling GenerateText (then StreamText, one big chunk and 4-character chunks);
   the probe's latency, against its latency alone and against a control run answering as much ordinary text
   (full run only), is the stall the scans cause.

Usage: .venv/bin/python -m bench.gateway.bench_detectors [--quick]
Writes bench/results/detectors-<time>.json (detectors-quick-... with --quick) and prints medians. Not a test: it
asserts nothing. Every process it starts is stopped on exit, and every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from bench.gateway.bench_gateway import fake_provider, gateway_process
from bench.harness import summary, write_result
from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.ai_gateway.config import DEFAULT_POLICY_FILE
from services.ai_gateway.detectors import BUILTIN_DETECTORS, Encoded
from services.ai_gateway.policy import INLINE_CHECK_CHARS, Direction, load_policy
from tests.support.harness import operator_token

KIB = 1024
# Fragments repeated to fill a text: each pattern's prefixes and near misses.
FRAGMENTS: dict[str, tuple[str, ...]] = {
    "secrets": (
        "eyJ-",  # the JWT branch: the input that was quadratic on the backtracking engine
        "eyJaaaaaaaa.eyJ-",
        "sk-",
        "AKIA",
        "ghp_",
        "github_pat_",
        "xoxb-",
        "cst_",
        "AIza",
        "GOCSPX-",
        "ya29.",
        "AccountKey=",
        "&sig=",
        "-----BEGIN ",
        "-----BEGIN RSA PRIVATE KEY-----",
        "password",
        "password: '",
        "Authorization: Basic ",
        "bearer ",
        "a://b:",
        "a-",
    ),
    "email": ("a@", "a.", "a@b.", "a@b-"),
    "card_number": ("1 ", "1-", "4111 1111 1111 111", "12"),
    "prompt_injection": ("ignore ", "ignore all the ", "<|", "you are now ", "new system ", "reveal me "),
    "pattern:weapons_instructions": ("build ", "make a ", "nerve ", "synthesize an "),
}
# The secrets pattern before RE2 (its JWT branch alone: that is what backtracks).
BACKTRACKING_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")
RESPONSE_CHARS = 31_000
CLIENTS = 4


def _median_s(function: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _text(fragment: str, size: int) -> str:
    return (fragment * (size // len(fragment) + 1))[:size]


def per_kib(sizes: list[int], repeat: int, repeat_1mib: int) -> dict[str, Any]:
    """Median µs per KiB of each detector (deciding, and finding every span for redaction) at each size (`repeat`
    runs each, `repeat_1mib` at 1 MiB)."""
    policy = load_policy(DEFAULT_POLICY_FILE)
    (pattern,) = {regex for rules in policy._compiled.values() for _, regex in rules.patterns}
    out: dict[str, Any] = {}
    for name, fragments in FRAGMENTS.items():
        if name.startswith("pattern:"):
            modes: dict[str, Callable[[str], object]] = {"decide": lambda t: pattern.search(Encoded(t).data)}
        else:
            detector = BUILTIN_DETECTORS[name]
            modes = {"decide": detector.found, "redact": detector.find}
        rows = {}
        for fragment in fragments:
            row: dict[str, Any] = {}
            for mode, function in modes.items():
                curve = {}
                for size in sizes:
                    text, runs = _text(fragment, size), repeat if size < KIB * KIB else repeat_1mib
                    curve[size] = _median_s(lambda f=function, t=text: f(t), runs)
                row[mode] = {
                    "us_per_kib": {f"{s // KIB}KiB": round(curve[s] * 1e6 / (s / KIB), 3) for s in sizes},
                    "ratio_1mib_vs_1kib": round((curve[sizes[-1]] / sizes[-1]) / (curve[sizes[0]] / sizes[0]), 3),
                }
            rows[fragment] = row
        worst = max(rows, key=lambda f: max(rows[f][m]["us_per_kib"][f"{sizes[-1] // KIB}KiB"] for m in rows[f]))
        out[name] = {"fragments": rows, "slowest_fragment_at_1mib": worst}
        print(f"  {name:30} slowest at 1 MiB: {worst!r} {rows[worst]}", flush=True)
    return out


def inline_threshold(repeat: int) -> dict[str, Any]:
    """The slowest whole input check of INLINE_CHECK_CHARS characters, against a hop to a worker thread and back."""
    policy = load_policy(DEFAULT_POLICY_FILE)
    fragments = {f for group in FRAGMENTS.values() for f in group}
    worst_s, worst = 0.0, ""
    for fragment in fragments:
        text = _text(fragment, INLINE_CHECK_CHARS)
        spent = _median_s(lambda t=text: policy.scan("ROSETTE_DESIGN", Direction.INPUT, t, "prompt"), repeat)
        if spent > worst_s:
            worst_s, worst = spent, fragment

    async def hops() -> float:
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            await asyncio.to_thread(lambda: None)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    return {
        "inline_check_chars": INLINE_CHECK_CHARS,
        "slowest_inline_check_us": round(worst_s * 1e6, 1),
        "slowest_inline_fragment": worst,
        "thread_hop_us": round(asyncio.run(hops()) * 1e6, 1),
    }


def backtracking_reference() -> dict[str, Any]:
    """The replaced backtracking JWT pattern on "eyJ-" repeated: what the detector cost before RE2."""
    out = {}
    for size in (8 * KIB, 16 * KIB, 32 * KIB):
        text = _text("eyJ-", size)
        out[f"{size // KIB}KiB_ms"] = round(_median_s(lambda t=text: BACKTRACKING_JWT.search(t), 3) * 1000, 2)
    re2_ms = _median_s(lambda: BUILTIN_DETECTORS["secrets"].found(_text("eyJ-", 32 * KIB)), 5) * 1000
    return {"python_re": out, "re2_secrets_detector_32KiB_ms": round(re2_ms, 3)}


# --- the event loop of a real gateway -----------------------------------------------------------------------------


def probe_latency(stub: Any, metadata: Any, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        stub.GetServiceInfo(gateway_pb2.GetServiceInfoRequest(), metadata=metadata, timeout=30)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def under_load(stub: Any, metadata: Any, rpc: str, probes: int) -> dict[str, Any]:
    """Probe latency while CLIENTS client threads keep calling `rpc` (each answered with the adversarial text)."""
    stop = threading.Event()
    done: list[int] = []

    def client() -> None:
        while not stop.is_set():
            if rpc == "GenerateText":
                request = gateway_pb2.GenerateTextRequest(operation="general_text", prompt="Describe a rosette")
                reply = stub.GenerateText(request, metadata=metadata, timeout=60)
                if len(reply.content) != RESPONSE_CHARS:
                    raise RuntimeError("the adversarial response was not passed through")
            else:
                request = gateway_pb2.StreamTextRequest(operation="general_text", prompt="Describe a rosette")
                stream = stub.StreamText(request, metadata=metadata, timeout=60)
                for _ in stream:
                    if stop.is_set():  # the probe is done: a stream of 4-character chunks takes seconds to finish
                        stream.cancel()
                        return
            done.append(1)

    with ThreadPoolExecutor(CLIENTS) as pool:
        workers = [pool.submit(client) for _ in range(CLIENTS)]
        try:
            time.sleep(0.5)  # the clients are in full swing
            samples = probe_latency(stub, metadata, probes)
        finally:
            stop.set()
        for worker in workers:
            worker.result(timeout=120)
    return {**summary(samples), "max_ms": round(max(samples), 3), "rpc_calls_completed": len(done)}


def stalls(base_dir: Path, fragment: str, chunk_chars: int, probes: int, rpcs: tuple[str, ...]) -> dict[str, Any]:
    content = base_dir / f"response-{chunk_chars}-{len(fragment)}.txt"
    content.write_text(_text(fragment, RESPONSE_CHARS), encoding="utf-8")
    args = ("--content-file", str(content), "--chunk-chars", str(chunk_chars))
    state = base_dir / f"custody-{chunk_chars}-{len(fragment)}"
    with fake_provider(*args) as base_url, gateway_process(state, base_url) as gateway:
        channel = grpc.insecure_channel(gateway.address)
        stub = gateway_pb2_grpc.AiGatewayServiceStub(channel)
        metadata = (("authorization", f"Bearer {operator_token(gateway.layout)}"),)
        probe_latency(stub, metadata, 20)  # warm-up
        idle = probe_latency(stub, metadata, probes)
        out: dict[str, Any] = {"idle": {**summary(idle), "max_ms": round(max(idle), 3)}}
        for rpc in rpcs:
            out[rpc] = under_load(stub, metadata, rpc, probes)
            print(f"  {fragment!r} chunks of {chunk_chars}: {rpc:12} {out[rpc]}  (idle {out['idle']})", flush=True)
        channel.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (two sizes, few probes)")
    args = parser.parse_args()
    sizes = [KIB, KIB * KIB] if args.quick else [KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, KIB * KIB]
    # quick: one run at 1 MiB and 30 probes keep the smoke run (and `make test`) short; no figure of it is used.
    repeat, repeat_1mib, probes = (3, 1, 30) if args.quick else (9, 3, 1000)
    print("time per KiB (µs), decide and redact:", flush=True)
    results: dict[str, Any] = {"sizes_bytes": sizes, "per_kib": per_kib(sizes, repeat, repeat_1mib)}
    results["inline_threshold"] = inline_threshold(repeat * 10)
    results["backtracking_reference"] = backtracking_reference()
    print(f"  inline threshold: {results['inline_threshold']}", flush=True)
    print(f"  backtracking reference: {results['backtracking_reference']}", flush=True)
    worst = max(
        (figures[mode]["ratio_1mib_vs_1kib"], f"{name} {fragment!r} {mode}")
        for name, group in results["per_kib"].items()
        for fragment, figures in group["fragments"].items()
        for mode in figures
    )
    results["worst_ratio_1mib_vs_1kib"] = {"ratio": worst[0], "where": worst[1]}
    # The control answers with as much ordinary text: what the load costs the probe without adversarial scans.
    contents = {"adversarial": "eyJ-"} if args.quick else {"adversarial": "eyJ-", "control": "Twelve petals. "}
    with tempfile.TemporaryDirectory(prefix="custody-bench-detectors-") as scratch:
        results["event_loop"] = {
            name: {
                f"chunks_of_{chunk}": stalls(
                    Path(scratch),
                    fragment,
                    chunk,
                    probes,
                    ("GenerateText", "StreamText") if chunk == 4 else ("StreamText",),
                )
                for chunk in (4, RESPONSE_CHARS)
            }
            for name, fragment in contents.items()
        }
    results["notes"] = [
        "us_per_kib: median over repeats of one detector call on a text of one fragment repeated",
        "ratio_1mib_vs_1kib: per-KiB time at 1 MiB over per-KiB time at 1 KiB (1 = linear; quadratic ~ 1024)",
        f"event_loop: GetServiceInfo back to back while {CLIENTS} clients call GenerateText/StreamText answered "
        f"with {RESPONSE_CHARS} characters of 'eyJ-' repeated (control: ordinary text); chunks_of_N: the "
        "stream's chunk size; idle: the probe alone against the same gateway",
    ]
    path = write_result("detectors-quick" if args.quick else "detectors", results)
    print(f"worst per-KiB ratio 1 MiB vs 1 KiB: {results['worst_ratio_1mib_vs_1kib']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
