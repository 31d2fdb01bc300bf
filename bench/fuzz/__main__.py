"""Runs the fuzz targets for a bounded time, each in its own child process, and reports per target the executions,
crashes (must be 0) and corpus size from libFuzzer's final statistics; writes bench/results/fuzz-<stamp>.json
(fuzz-quick-<stamp>.json under 30 s a target). Exits 1 when a target crashed or did not run.

    python -m bench.fuzz --seconds 60 [--target NAME ...] [--jobs 2]
    python -m bench.fuzz --replay NAME BASE64_OR_FILE      # runs one input through a target, without atheris

A crash prints its reproducer (base64) and the replay command; the JSON result holds them too.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import machine, write_result

ROOT = Path(__file__).resolve().parents[2]
# What libFuzzer leaves for an input that failed: a Python exception or signal (crash-), a hang (timeout-), too
# much memory (oom-), leaked memory (leak-).
ARTIFACT_KINDS = ("crash", "timeout", "oom", "leak", "slow-unit")
EXECUTIONS = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
DONE = re.compile(r"#\d+\s+DONE\s+cov:\s*(\d+)\s+ft:\s*(\d+)\s+corp:\s*(\d+)/")
# Seconds a child may take beyond its fuzzing time (start-up under instrumentation, the final statistics).
GRACE_S = 120
PER_INPUT_TIMEOUT_S = 10


@dataclass
class Reproducer:
    kind: str
    base64: str
    size: int


@dataclass
class TargetResult:
    target: str
    seconds: float
    executions: int = 0
    crashes: int = 0
    corpus: int = 0
    seeds: int = 0
    coverage: int = 0
    features: int = 0
    exit_code: int | None = None
    reproducers: list[Reproducer] = field(default_factory=list)
    # The tail of libFuzzer's output when the target crashed or did not run.
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.crashes == 0 and self.executions > 0


def fuzz(name: str, seconds: float, work: Path) -> TargetResult:
    """One target in a child process for `seconds`, seeded from seeds.corpus(name)."""
    from bench.fuzz.seeds import corpus as seed_corpus
    from bench.fuzz.seeds import dictionary, dictionary_file

    corpus, artifacts = work / name / "corpus", work / name / "artifacts"
    corpus.mkdir(parents=True)
    artifacts.mkdir()
    seeds = seed_corpus(name)
    for index, seed in enumerate(seeds):
        (corpus / f"seed-{index:03d}").write_bytes(seed)
    flags = [
        f"-max_total_time={max(1, round(seconds))}",
        f"-timeout={PER_INPUT_TIMEOUT_S}",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
    ]
    if tokens := dictionary(name):
        (work / name / "dictionary").write_text(dictionary_file(tokens))
        flags.append(f"-dict={work / name / 'dictionary'}")
    command = [sys.executable, "-m", "bench.fuzz.child", name, *flags, str(corpus)]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=seconds + GRACE_S, check=False)
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output, code = _text(expired.stdout) + _text(expired.stderr), None
    result = TargetResult(name, round(time.monotonic() - started, 1), seeds=len(seeds), exit_code=code)
    if found := EXECUTIONS.search(output):
        result.executions = int(found.group(1))
    if found := DONE.search(output):
        result.coverage, result.features, result.corpus = (int(g) for g in found.groups())
    else:
        result.corpus = sum(1 for _ in corpus.iterdir())
    for artifact in sorted(artifacts.iterdir()):
        kind = next((k for k in ARTIFACT_KINDS if artifact.name.startswith(k + "-")), "crash")
        data = artifact.read_bytes()
        result.reproducers.append(Reproducer(kind, base64.b64encode(data).decode(), len(data)))
    result.crashes = len(result.reproducers)
    if not result.crashes and code not in (0, None):
        result.crashes = 1  # the child died without leaving an input (a crash in start-up, for one)
    if not result.ok:
        result.log_tail = output[-6000:]
    return result


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def replay(name: str, given: str) -> int:
    """Runs one input (a file, or base64) through the target in this process; prints the traceback if it fails."""
    from bench.fuzz.registry import target

    try:
        data = Path(given).read_bytes()
    except OSError:
        try:
            data = base64.b64decode(given, validate=True)
        except binascii.Error:
            print(f"{given!r} is neither a file nor base64", file=sys.stderr)
            return 2
    run = target(name)
    try:
        run(data)
    except Exception:
        traceback.print_exc()
        print(f"{name}: CRASH on {len(data)} bytes")
        return 1
    print(f"{name}: ok ({len(data)} bytes accepted or refused as documented)")
    return 0


def report(results: list[TargetResult]) -> str:
    lines = [
        "| target | seconds | executions | exec/s | crashes | corpus (seeds) | coverage |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        rate = round(r.executions / r.seconds) if r.seconds else 0
        lines.append(
            f"| {r.target} | {r.seconds} | {r.executions} | {rate} | {r.crashes} | {r.corpus} ({r.seeds}) "
            f"| {r.coverage} |"
        )
    return "\n".join(lines)


def main() -> None:
    from bench.fuzz.registry import NAMES

    parser = argparse.ArgumentParser(prog="python -m bench.fuzz")
    parser.add_argument("--seconds", type=float, default=60, help="fuzzing time per target")
    parser.add_argument(
        "--target",
        action="append",
        help=f"this target only (repeatable): {', '.join(NAMES)}, or package.module:function",
    )
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at the same time")
    parser.add_argument("--replay", nargs=2, metavar=("TARGET", "INPUT"), help="replay one input (file or base64)")
    parser.add_argument("--out", type=Path, help="write the JSON result here instead of bench/results/")
    args = parser.parse_args()
    if args.replay:
        raise SystemExit(replay(*args.replay))
    names = args.target or list(NAMES)
    with tempfile.TemporaryDirectory(prefix="custody-fuzz-") as work, ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda name: fuzz(name, args.seconds, Path(work)), names))
    print(report(results))
    for r in results:
        for reproducer in r.reproducers:
            print(f"\n!! {r.target}: {reproducer.kind} on {reproducer.size} bytes; replay with:")
            print(f"python -m bench.fuzz --replay {r.target} {reproducer.base64}")
        if not r.ok:
            print(f"\n-- {r.target} output (tail) --\n{r.log_tail}")
    document: dict[str, Any] = {
        "seconds_per_target": args.seconds,
        "targets": {r.target: {**asdict(r), "ok": r.ok} for r in results},
        "executions": sum(r.executions for r in results),
        "crashes": sum(r.crashes for r in results),
    }
    if args.out:
        path = args.out
        path.write_text(json.dumps({"benchmark": "fuzz", "machine": machine(), **document}, indent=2) + "\n")
    else:
        path = write_result("fuzz" if args.seconds >= 30 else "fuzz-quick", document)
    print(f"wrote {path}")
    if not all(r.ok for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
