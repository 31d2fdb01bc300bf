"""Runs benchmark: durable mints per second with 8 concurrent clients, create + 4 KiB attach latency, 64 MiB
upload throughput next to the host's own sha256 rate over the same bytes (measured in the same run), and 64 MiB
upload and read throughput with blobs in the local directory and in S3 (a SeaweedFS this benchmark starts), side by
side in the same run.

    .venv/bin/python -m bench.runs.bench_runs [--quick] [--postgres DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.harness import service_process, small_run, summary, write_result
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from tests.support.seaweedfs import seaweedfs

CHUNK = 1024 * 1024


def run_input(index: int) -> runs_pb2.RunInput:
    return small_run("bench", index)


async def mints_per_second(address: str, token: str, clients: int, total: int) -> float:
    metadata = (("authorization", f"Bearer {token}"),)
    channels = [grpc.aio.insecure_channel(address) for _ in range(clients)]
    stubs = [runs_pb2_grpc.RunsServiceStub(c) for c in channels]
    per_client = total // clients

    async def client(stub: runs_pb2_grpc.RunsServiceStub, offset: int) -> None:
        for i in range(per_client):
            await stub.CreateRun(runs_pb2.CreateRunRequest(run=run_input(offset + i)), metadata=metadata)

    for stub in stubs:
        await stub.CreateRun(runs_pb2.CreateRunRequest(run=run_input(-1)), metadata=metadata)
    started = time.perf_counter()
    await asyncio.gather(*(client(stub, n * per_client) for n, stub in enumerate(stubs)))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return per_client * clients / elapsed


async def create_and_attach_latencies(address: str, token: str, count: int) -> list[float]:
    metadata = (("authorization", f"Bearer {token}"),)
    payload = os.urandom(4096)
    samples = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runs_pb2_grpc.RunsServiceStub(channel)
        for index in range(count + 10):
            started = time.perf_counter()
            run = await stub.CreateRun(runs_pb2.CreateRunRequest(run=run_input(index)), metadata=metadata)
            await stub.BatchCreateAttachments(
                runs_pb2.BatchCreateAttachmentsRequest(
                    run=run.name,
                    attachments=[runs_pb2.NewAttachment(kind="other", filename="payload.bin", data=payload)],
                ),
                metadata=metadata,
            )
            if index >= 10:  # the first calls warm connections and caches
                samples.append((time.perf_counter() - started) * 1000)
    return samples


async def create_attach_per_second(address: str, token: str, clients: int, total: int) -> float:
    """The MLflow comparison's unit of work: mint a run and attach a 4 KiB artifact to it."""
    metadata = (("authorization", f"Bearer {token}"),)
    payload = os.urandom(4096)
    channels = [grpc.aio.insecure_channel(address) for _ in range(clients)]
    per_client = max(1, total // clients)

    async def client(channel: grpc.aio.Channel, offset: int, count: int) -> None:
        stub = runs_pb2_grpc.RunsServiceStub(channel)
        for index in range(count):
            run = await stub.CreateRun(runs_pb2.CreateRunRequest(run=run_input(offset + index)), metadata=metadata)
            await stub.BatchCreateAttachments(
                runs_pb2.BatchCreateAttachmentsRequest(
                    run=run.name, attachments=[runs_pb2.NewAttachment(kind="other", filename="a.bin", data=payload)]
                ),
                metadata=metadata,
            )

    await asyncio.gather(*(client(c, -1 - n, 1) for n, c in enumerate(channels)))  # connect every channel first
    started = time.perf_counter()
    await asyncio.gather(*(client(c, n * per_client, per_client) for n, c in enumerate(channels)))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return per_client * clients / elapsed


def fresh_file(path: Path, size: int) -> None:
    """New random bytes, flushed to disk so no writeback of them competes with what is measured next."""
    with path.open("wb") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())


def sha256_seconds(path: Path) -> float:
    started = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return time.perf_counter() - started


async def read_seconds(address: str, token: str, attachment: str) -> float:
    metadata = (("authorization", f"Bearer {token}"),)
    options = [("grpc.max_receive_message_length", 4 * CHUNK)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = runs_pb2_grpc.RunsServiceStub(channel)
        started = time.perf_counter()
        async for _ in stub.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment), metadata=metadata):
            pass
        return time.perf_counter() - started


def blob_backends(tmp: Path, upload_mib: int, rounds: int) -> dict[str, Any]:
    """64 MiB uploads and reads on the filesystem backend and on S3 (parts sent 4 at a time, the default, and one at
    a time), alternating round by round (all see the same machine conditions); medians in MB/s, and S3's as a ratio
    of the directory's."""
    with seaweedfs(tmp / "seaweedfs") as server, contextlib.ExitStack() as stack:
        limit = {"max_attachment_bytes": str(128 * CHUNK)}
        settings = {
            "filesystem": limit,
            "s3": {**limit, **server.runs_settings(), "s3_part_uploads": "4"},
            "s3_one_part_at_a_time": {**limit, **server.runs_settings(), "s3_part_uploads": "1"},
        }
        timings: dict[str, dict[str, list[float]]] = {name: {"upload": [], "read": []} for name in settings}
        services = {
            name: stack.enter_context(service_process("runs", tmp / f"blobs-{name}", **values))
            for name, values in settings.items()
        }
        tokens = {name: svc.layout.operator_token.read_text().strip() for name, svc in services.items()}
        holders = {name: asyncio.run(holder_run(svc.address, tokens[name])) for name, svc in services.items()}
        for round_ in range(rounds):
            for name, svc in services.items():
                big = tmp / f"blob-{name}-{round_}.bin"
                fresh_file(big, upload_mib * CHUNK)
                seconds, attachment = asyncio.run(upload(svc.address, tokens[name], big, holders[name]))
                timings[name]["upload"].append(seconds)
                timings[name]["read"].append(asyncio.run(read_seconds(svc.address, tokens[name], attachment)))
                big.unlink()
    size_mb = upload_mib * CHUNK / 1e6
    figures: dict[str, Any] = {
        name: {
            step: {"mb_s": round(size_mb / statistics.median(seconds), 1), "runs": len(seconds)}
            for step, seconds in steps.items()
        }
        for name, steps in timings.items()
    }
    figures["mib"] = upload_mib
    figures["s3_vs_filesystem"] = {
        step: round(figures["s3"][step]["mb_s"] / figures["filesystem"][step]["mb_s"], 3) for step in ("upload", "read")
    }
    figures["s3_parallel_parts_vs_one_at_a_time"] = round(
        figures["s3"]["upload"]["mb_s"] / figures["s3_one_part_at_a_time"]["upload"]["mb_s"], 3
    )
    return figures


async def holder_run(address: str, token: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        run = await runs_pb2_grpc.RunsServiceStub(channel).CreateRun(
            runs_pb2.CreateRunRequest(run=run_input(0)), metadata=(("authorization", f"Bearer {token}"),)
        )
        return run.name


async def upload_seconds(address: str, token: str, path: Path, run_name: str) -> float:
    return (await upload(address, token, path, run_name))[0]


async def upload(address: str, token: str, path: Path, run_name: str) -> tuple[float, str]:
    """The seconds a streamed upload of the file took, and the attachment's name."""
    metadata = (("authorization", f"Bearer {token}"),)

    async def messages() -> Any:
        yield runs_pb2.UploadAttachmentRequest(
            header=runs_pb2.AttachmentHeader(run=run_name, kind="other", filename="big.bin")
        )
        with path.open("rb") as handle:
            while block := handle.read(CHUNK):
                yield runs_pb2.UploadAttachmentRequest(chunk=block)

    options = [("grpc.max_send_message_length", 4 * CHUNK), ("grpc.max_receive_message_length", 4 * CHUNK)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = runs_pb2_grpc.RunsServiceStub(channel)
        started = time.perf_counter()
        attachment = await stub.UploadAttachment(messages(), metadata=metadata)
        return time.perf_counter() - started, attachment.name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--postgres", default="", help="also measure against this PostgreSQL database URL")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    total = 400 if args.quick else 4000
    latency_count = 50 if args.quick else 500
    upload_mib = 8 if args.quick else 64
    backends = {"sqlite": ""} | ({"postgresql": args.postgres} if args.postgres else {})
    results: dict[str, Any] = {"targets": {"mints_per_s": 1200, "upload_vs_sha256": 0.5}, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="custody-bench-runs-") as tmp:
        for backend, url in backends.items():
            state = Path(tmp) / backend
            settings = {"database_url": url} if url else {}
            settings["max_attachment_bytes"] = str(128 * CHUNK)
            with service_process("runs", state, **settings) as service:
                token = service.layout.operator_token.read_text().strip()
                rates = [asyncio.run(mints_per_second(service.address, token, 8, total)) for _ in range(repeats)]
                latencies = asyncio.run(create_and_attach_latencies(service.address, token, latency_count))
                pairs = {
                    str(c): statistics.median(
                        asyncio.run(create_attach_per_second(service.address, token, c, total // 4))
                        for _ in range(repeats)
                    )
                    for c in (1, 8)
                }

                run_name = asyncio.run(holder_run(service.address, token))
                hash_s, upload_s = [], []
                for round_ in range(1 if args.quick else 5):  # interleaved: both see the same machine conditions
                    # New bytes every round, in a new file: a repeat of stored content would measure deduplication,
                    # and overwriting the last file would have the filesystem trim its blocks meanwhile.
                    big = Path(tmp) / f"upload-{backend}-{round_}.bin"
                    fresh_file(big, upload_mib * CHUNK)
                    hash_s.append(sha256_seconds(big))
                    upload_s.append(asyncio.run(upload_seconds(service.address, token, big, run_name)))
            size_mb = upload_mib * CHUNK / 1e6
            sha_rate, upload_rate = size_mb / statistics.median(hash_s), size_mb / statistics.median(upload_s)
            results["backends"][backend] = {
                "mints_per_s_8_clients": {
                    "median": round(statistics.median(rates), 1),
                    "runs": [round(r, 1) for r in rates],
                },
                "create_plus_4kib_attach": summary(latencies),
                "create_plus_4kib_attach_per_s": {c: round(v, 1) for c, v in pairs.items()},
                "upload": {
                    "mib": upload_mib,
                    "upload_mb_s": round(upload_rate, 1),
                    "sha256_mb_s": round(sha_rate, 1),
                    "ratio": round(upload_rate / sha_rate, 3),
                },
            }
        results["blob_backends"] = blob_backends(Path(tmp), upload_mib, 1 if args.quick else 5)
    path = write_result("runs-quick" if args.quick else "runs", results)
    for backend, figures in results["backends"].items():
        mints = figures["mints_per_s_8_clients"]["median"]
        latency = figures["create_plus_4kib_attach"]
        upload = figures["upload"]
        print(
            f"[{backend}] mints/s (8 clients): {mints}  |  create+4KiB attach p50 {latency['p50_ms']} ms "
            f"p99 {latency['p99_ms']} ms  |  {upload['mib']} MiB upload {upload['upload_mb_s']} MB/s vs sha256 "
            f"{upload['sha256_mb_s']} MB/s (ratio {upload['ratio']})"
        )
    blobs = results["blob_backends"]
    for name in ("filesystem", "s3", "s3_one_part_at_a_time"):
        print(
            f"[blobs: {name}] {blobs['mib']} MiB upload {blobs[name]['upload']['mb_s']} MB/s, "
            f"read {blobs[name]['read']['mb_s']} MB/s (medians)"
        )
    print(
        f"[blobs] s3 / filesystem: upload {blobs['s3_vs_filesystem']['upload']}, "
        f"read {blobs['s3_vs_filesystem']['read']}; s3 upload, 4 parts at once / one at a time: "
        f"{blobs['s3_parallel_parts_vs_one_at_a_time']}"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
