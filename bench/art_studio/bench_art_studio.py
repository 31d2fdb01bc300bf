"""Art studio benchmarks: compiling a 64-petal spec (in-process and through CompileSpec), and the end-to-end
GenerateCandidates -> attach (and -> bind) latency on a real stack with the offline `local` provider.

    .venv/bin/python -m bench.art_studio.bench_art_studio [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.harness import service_process, summary, write_result
from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.rosette.compiler import compile_svg
from services.rosette.spec import parse_spec

SIXTY_FOUR_PETALS: dict[str, Any] = {
    "canvas": {"diameter_mm": 100},
    "shapes": [
        {"kind": "ring", "inner_r": 46, "outer_r": 48},
        {"kind": "segmented_ring", "inner_r": 40, "outer_r": 44, "segments": 48, "gap_deg": 1.5},
        {"kind": "rope_band", "inner_r": 34, "outer_r": 38, "strands": 72, "pattern": "herringbone"},
        {"kind": "radial_petals", "inner_r": 10, "outer_r": 30, "count": 64, "petal_width_deg": 4.5},
    ],
}


def compile_in_process(repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        compile_svg(parse_spec(SIXTY_FOUR_PETALS))
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def compile_over_grpc(address: str, token: str, repeats: int) -> list[float]:
    metadata = (("authorization", f"Bearer {token}"),)
    request = art_studio_pb2.CompileSpecRequest(spec_json=json.dumps(SIXTY_FOUR_PETALS))
    samples = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = art_studio_pb2_grpc.ArtStudioServiceStub(channel)
        for index in range(repeats + 5):
            started = time.perf_counter()
            await stub.CompileSpec(request, metadata=metadata)
            if index >= 5:
                samples.append((time.perf_counter() - started) * 1000)
    return samples


async def generate_attach_bind(addresses: dict[str, str], token: str, repeats: int) -> dict[str, list[float]]:
    metadata = (("authorization", f"Bearer {token}"),)
    timings: dict[str, list[float]] = {"generate_attach": [], "generate_attach_bind": []}
    async with (
        grpc.aio.insecure_channel(addresses["art_studio"]) as studio_channel,
        grpc.aio.insecure_channel(addresses["runs"]) as runs_channel,
    ):
        studio = art_studio_pb2_grpc.ArtStudioServiceStub(studio_channel)
        runs = runs_pb2_grpc.RunsServiceStub(runs_channel)
        # Each generation gets its own design session (art_studio creates it): binding seals a session's geometry,
        # so a session is the unit of one decision, as in the operator's flow.
        for index in range(repeats + 3):
            started = time.perf_counter()
            answer = await studio.GenerateCandidates(
                art_studio_pb2.GenerateCandidatesRequest(
                    prompt="a rosette with 12 petals and a rope band",
                    diameter_mm=100,
                    count=1,
                    new_session=True,
                    variant_seed=f"bench-{index}",
                ),
                metadata=metadata,
            )
            attached = time.perf_counter()
            (candidate,) = answer.candidates
            if not candidate.ok:
                raise RuntimeError(f"candidate failed: {candidate.failure.reason} {candidate.failure.message}")
            await runs.BindCandidate(
                runs_pb2.BindCandidateRequest(
                    run=answer.run, attachments=[candidate.svg_attachment, candidate.spec_attachment]
                ),
                metadata=metadata,
            )
            bound = time.perf_counter()
            if index >= 3:
                timings["generate_attach"].append((attached - started) * 1000)
                timings["generate_attach_bind"].append((bound - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 20 if args.quick else 300
    result: dict[str, Any] = {"compile_64_petals_in_process": summary(compile_in_process(repeats))}
    with tempfile.TemporaryDirectory(prefix="custody-bench-studio-") as tmp:
        state = Path(tmp) / "var"
        with (
            service_process("ai_gateway", state) as gateway,
            service_process("runs", state) as runs,
            service_process(
                "art_studio", state, ai_gateway_address=gateway.address, runs_address=runs.address
            ) as studio,
        ):
            token = studio.layout.operator_token.read_text().strip()
            result["compile_64_petals_grpc"] = summary(asyncio.run(compile_over_grpc(studio.address, token, repeats)))
            addresses = {"art_studio": studio.address, "runs": runs.address}
            timings = asyncio.run(generate_attach_bind(addresses, token, max(10, repeats // 5)))
            result["end_to_end"] = {name: summary(samples) for name, samples in timings.items()}
    path = write_result("art_studio-quick" if args.quick else "art_studio", result)
    compiled = result["compile_64_petals_in_process"]
    over_grpc = result["compile_64_petals_grpc"]
    print(f"compile 64 petals: in-process p50 {compiled['p50_ms']} ms; CompileSpec p50 {over_grpc['p50_ms']} ms")
    for name, figures in result["end_to_end"].items():
        print(f"{name}: p50 {figures['p50_ms']} ms p99 {figures['p99_ms']} ms (n={figures['n']})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
