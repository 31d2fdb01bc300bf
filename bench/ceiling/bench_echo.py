"""The gRPC ceiling: a bare unary echo measured with the same client harness as the services.

.venv/bin/python -m bench.ceiling.bench_echo [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from bench.ceiling.echo_server import METHOD
from bench.harness import free_port, summary, write_result


@contextmanager
def echo_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.ceiling.echo_server", str(port)], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        process.stdout.readline()  # "ready"
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def calls_per_second(address: str, clients: int, total: int, payload: bytes = b"x" * 64) -> float:
    channels = [grpc.aio.insecure_channel(address) for _ in range(clients)]
    calls = [c.unary_unary(METHOD) for c in channels]
    for call in calls:
        await call(payload)
    per_client = total // clients

    async def client(call: grpc.aio.UnaryUnaryMultiCallable) -> None:
        for _ in range(per_client):
            await call(payload)

    started = time.perf_counter()
    await asyncio.gather(*(client(call) for call in calls))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return per_client * clients / elapsed


async def latencies_ms(address: str, count: int) -> list[float]:
    samples = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(METHOD)
        for index in range(count + 20):
            started = time.perf_counter()
            await call(b"x" * 64)
            if index >= 20:
                samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    total = 1000 if args.quick else 10000
    with echo_server() as address:
        result = {
            "calls_per_s": {str(c): round(asyncio.run(calls_per_second(address, c, total)), 1) for c in (1, 8, 16)},
            "latency_c1": summary(asyncio.run(latencies_ms(address, total // 5))),
        }
    path = write_result("ceiling-quick" if args.quick else "ceiling", result)
    print(f"echo calls/s by concurrency {result['calls_per_s']}; p50 {result['latency_c1']['p50_ms']} ms; wrote {path}")


if __name__ == "__main__":
    main()
