"""Soak: a long stream of mixed RPCs against the whole local stack (`custody up`: four services and the console),
sampling every process's resident memory and open file descriptors at fixed call counts.

    .venv/bin/python -m bench.soak.bench_soak [--calls 100000] [--every 10000] [--clients 8]

What it shows is growth, not speed: RSS and descriptors of each process at each sample, and the growth per 100k
calls measured from the first sample (after warm-up: caches, pools and the first pages of each table are filled
by then) to the last. A leak shows as growth that keeps its slope; a bounded process levels off. Every call must
answer OK (the count of any other status is reported); writes are kept small so the figures are about the
services, not the disk. The mix below is what a busy day of the governed flow looks like, reads outnumbering
writes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil

from bench.harness import small_run, write_result
from custody.ai_gateway.v1 import gateway_pb2
from custody.art_studio.v1 import art_studio_pb2
from custody.lineage.v1 import lineage_pb2
from custody.runs.v1 import runs_pb2
from services.cli.state import StateLayout
from services.common.clients import ServiceClients
from services.common.protomap import dict_to_struct
from services.common.status import decode
from tests.art_studio.specs import simple
from tests.support.harness import operator_token
from tests.support.processes import running_stack


@dataclass
class Soak:
    """The shared state of one soak: what the workers created (so reads have targets) and what they saw."""

    clients: ServiceClients
    project: str
    runs: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    by_rpc: Counter[str] = field(default_factory=Counter)
    calls: int = 0

    def stub(self, service: str) -> Any:
        return self.clients.stub(service)


def _run_input(index: int) -> runs_pb2.RunInput:
    return small_run("soak", index)


async def create_run(soak: Soak, rng: random.Random) -> None:
    run = await soak.stub("runs").CreateRun(runs_pb2.CreateRunRequest(run=_run_input(rng.getrandbits(48))))
    soak.runs.append(run.name)


async def get_run(soak: Soak, rng: random.Random) -> None:
    await soak.stub("runs").GetRun(runs_pb2.GetRunRequest(name=rng.choice(soak.runs)))


async def list_runs(soak: Soak, rng: random.Random) -> None:
    await soak.stub("runs").ListRuns(runs_pb2.ListRunsRequest(page_size=20))


async def verify_run(soak: Soak, rng: random.Random) -> None:
    await soak.stub("runs").VerifyRun(runs_pb2.VerifyRunRequest(name=rng.choice(soak.runs)))


async def upload_attachment(soak: Soak, rng: random.Random) -> None:
    run, body = rng.choice(soak.runs), rng.randbytes(4096)

    async def messages() -> Any:
        header = runs_pb2.AttachmentHeader(run=run, kind="other", filename="soak.bin")
        yield runs_pb2.UploadAttachmentRequest(header=header)
        yield runs_pb2.UploadAttachmentRequest(chunk=body)

    await soak.stub("runs").UploadAttachment(messages())


async def create_version(soak: Soak, rng: random.Random) -> None:
    answer = await soak.stub("lineage").CreateVersion(
        lineage_pb2.CreateVersionRequest(
            parent=f"projects/{soak.project}/artifacts/design_brief/brief-{rng.randrange(50)}",
            data=dict_to_struct({"prompt": f"soak {rng.getrandbits(32)}", "constraints": {"diameter_mm": 100}}),
            metadata=lineage_pb2.VersionMetadata(
                intent="soak", rationale="soak", confidence=1.0, source=lineage_pb2.SOURCE_HUMAN
            ),
        )
    )
    soak.versions.append(answer.version.name)


async def get_version(soak: Soak, rng: random.Random) -> None:
    await soak.stub("lineage").GetVersion(lineage_pb2.GetVersionRequest(name=rng.choice(soak.versions)))


async def generate_text(soak: Soak, rng: random.Random) -> None:
    await soak.stub("ai_gateway").GenerateText(
        gateway_pb2.GenerateTextRequest(
            operation="general_text", prompt=f"Name a wood for rosette number {rng.randrange(1000)}"
        )
    )


async def compile_spec(soak: Soak, rng: random.Random) -> None:
    spec = simple(petals=rng.randrange(6, 24))
    await soak.stub("art_studio").CompileSpec(art_studio_pb2.CompileSpecRequest(spec_json=json.dumps(spec)))


# (weight, call): the share of the mix each RPC takes.
MIX: dict[str, tuple[int, Callable[[Soak, random.Random], Awaitable[None]]]] = {
    "runs.CreateRun": (12, create_run),
    "runs.GetRun": (20, get_run),
    "runs.ListRuns": (8, list_runs),
    "runs.VerifyRun": (6, verify_run),
    "runs.UploadAttachment": (6, upload_attachment),
    "lineage.CreateVersion": (10, create_version),
    "lineage.GetVersion": (18, get_version),
    "ai_gateway.GenerateText": (12, generate_text),
    "art_studio.CompileSpec": (8, compile_spec),
}


def sample(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    """Resident memory (MiB) and open descriptors of each process."""
    found = {}
    for name, pid in sorted(pids.items()):
        process = psutil.Process(pid)
        found[name] = {"rss_mib": round(process.memory_info().rss / 2**20, 1), "fds": process.num_fds()}
    return found


async def soak_stack(addresses: dict[str, str], token: str, pids: dict[str, int], args: argparse.Namespace) -> Any:
    soak = Soak(ServiceClients(addresses, token), project=f"soak-{int(time.time())}")
    rng = random.Random(args.seed)
    for seeding in (create_run, create_version):  # reads need something to read
        await seeding(soak, rng)
    names, weights = list(MIX), [weight for weight, _ in MIX.values()]
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()

    async def worker(seed: int) -> None:
        own = random.Random(seed)
        while soak.calls < args.calls:
            soak.calls += 1
            if soak.calls % args.every == 0:
                samples.append({"calls": soak.calls, "processes": sample(pids)})
                print(f"  {soak.calls:>7} calls  {samples[-1]['processes']}", flush=True)
            name = own.choices(names, weights)[0]
            soak.by_rpc[name] += 1
            try:
                await MIX[name][1](soak, own)
                soak.statuses["OK"] += 1
            except grpc.RpcError as exc:
                decoded = decode(exc)
                soak.statuses[f"{decoded.code.name} {decoded.reason}".strip()] += 1

    await asyncio.gather(*(worker(args.seed + n) for n in range(args.clients)))
    elapsed = time.perf_counter() - started
    await soak.clients.close()
    return samples, soak, elapsed


def growth_per_100k(first: dict[str, Any], last: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per process: growth from sample `first` to sample `last`, scaled to 100k calls."""
    span = last["calls"] - first["calls"]
    if span <= 0:
        return {}
    scale = 100_000 / span
    return {
        name: {
            metric: round((last["processes"][name][metric] - value) * scale, 1)
            for metric, value in first["processes"][name].items()
        }
        for name in first["processes"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2112)
    parser.add_argument("--quick", action="store_true", help="2,000 calls sampled every 400 (the smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.every = 2_000, 400
    with tempfile.TemporaryDirectory(prefix="custody-soak-") as scratch, running_stack(Path(scratch)) as stack:
        addresses = {service: stack.address(service) for service in MIX_SERVICES}
        token = operator_token(StateLayout(stack.state_dir))
        samples, soak, elapsed = asyncio.run(soak_stack(addresses, token, stack.service_pids(), args))
        stack.stop()
    growth = growth_per_100k(samples[0], samples[-1])
    # A leak keeps its slope; memory that fills to a cap (SQLite's page cache, pools) levels off: the second half.
    late_growth = growth_per_100k(samples[len(samples) // 2], samples[-1])
    result = {
        "calls": soak.calls,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "calls_per_second": round(soak.calls / elapsed, 1),
        "statuses": dict(soak.statuses),
        "by_rpc": dict(soak.by_rpc),
        "samples": samples,
        "growth_per_100k_calls": growth,
        "second_half_growth_per_100k_calls": late_growth,
        "notes": [
            "growth is measured from the first sample (after warm-up) to the last, scaled to 100k calls",
            "rss_mib: resident set size in MiB; fds: open file descriptors (sockets, database files, logs)",
        ],
    }
    path = write_result("soak-quick" if args.quick else "soak", result)
    print(f"{soak.calls} calls in {elapsed:.0f} s; statuses {dict(soak.statuses)}")
    print(
        f"{'process':12} {'rss MiB first':>14} {'last':>6} {'/100k':>6} {'2nd half /100k':>15} "
        f"{'fds first':>10} {'last':>5}"
    )
    for name, grown in growth.items():
        first, last = samples[0]["processes"][name], samples[-1]["processes"][name]
        print(
            f"{name:12} {first['rss_mib']:>14} {last['rss_mib']:>6} {grown['rss_mib']:>6} "
            f"{late_growth[name]['rss_mib']:>15} {first['fds']:>10} {last['fds']:>5}"
        )
    print(f"wrote {path}")


MIX_SERVICES = sorted({name.split(".")[0] for name in MIX})

if __name__ == "__main__":
    main()
