"""The fuzz harness in seconds (`make bench` runs it for a minute a target): every target runs, executes inputs and
never crashes; a crash is reported with a reproducer that replays; the request-decoding harness reaches the domain
for every RPC, so its "no crash" is about real decoding work."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.fuzz.registry import NAMES, SERVICE_TARGETS, target
from bench.fuzz.seeds import corpus
from services.common import call_context

ROOT = Path(__file__).resolve().parents[2]


PLANTED = "tests.fuzz.planted:crashes_on_three_bytes"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.fuzz", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Every target for a second, and a target with a planted crash, in one run of the runner."""
    out = tmp_path_factory.mktemp("fuzz") / "fuzz.json"
    targets = [arg for name in (*NAMES, PLANTED) for arg in ("--target", name)]
    done = run("--seconds", "1", "--jobs", "2", *targets, "--out", str(out))
    return done, json.loads(out.read_text())


def test_every_target_executes_inputs_for_a_second_and_none_crashes(
    fuzzed: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    _, result = fuzzed
    assert set(result["targets"]) == {*NAMES, PLANTED}
    for name in NAMES:
        figures = result["targets"][name]
        assert figures["crashes"] == 0, (name, figures["reproducers"], figures["log_tail"])
        assert figures["executions"] > 0, (name, figures["log_tail"])
        assert figures["corpus"] > 0


def test_a_crash_fails_the_run_and_prints_a_reproducer_that_replays(
    fuzzed: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    done, result = fuzzed
    assert done.returncode == 1
    (reproducer,) = result["targets"][PLANTED]["reproducers"]
    assert len(base64.b64decode(reproducer["base64"])) >= 3
    assert f"python -m bench.fuzz --replay {PLANTED} {reproducer['base64']}" in done.stdout
    replayed = run("--replay", PLANTED, reproducer["base64"])
    assert replayed.returncode == 1 and "ValueError: planted crash" in replayed.stderr


@pytest.mark.parametrize("name", SERVICE_TARGETS)
def test_the_seed_requests_of_every_rpc_get_past_decoding(name: str) -> None:
    """Some seed of every RPC reaches the domain (or answers): a harness refusing everything could not crash."""
    service = target(name)
    reached = {service.methods[seed[0]].name for seed in corpus(name) if service.outcome(seed) == "accepted"}
    assert reached == {m.name for m in service.methods}


def test_replaying_seeds_in_process_leaves_the_callers_context_and_worker_threads_alone() -> None:
    """Seeds replayed by a test must not leave the fuzz caller bound, or worker threads inline, for later tests."""
    service = target(SERVICE_TARGETS[0])
    threads = asyncio.to_thread
    for seed in corpus(SERVICE_TARGETS[0])[:20]:
        service.outcome(seed)
    assert call_context.principal() is None
    assert asyncio.to_thread is threads
