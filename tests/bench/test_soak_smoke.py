"""The soak harness keeps working: a 2,000-call soak of `custody up` answers every call OK and no process leaks
file descriptors. Memory figures are reported, not asserted (they belong in bench/, and 2,000 calls is warm-up)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from bench.harness import RESULTS

pytestmark = pytest.mark.stack


def test_a_short_soak_answers_every_call_and_leaks_no_descriptors() -> None:
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak.bench_soak", "--quick"], capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (report,) = [p for p in RESULTS.glob("soak-quick-*.json") if p.stat().st_mtime >= started]
    soak = json.loads(report.read_text())
    assert soak["statuses"] == {"OK": soak["calls"]} and soak["calls"] == 2000
    assert {"ai_gateway", "art_studio", "console", "lineage", "runs"} == set(soak["growth_per_100k_calls"])
    for name in soak["growth_per_100k_calls"]:
        first, last = soak["samples"][0]["processes"][name], soak["samples"][-1]["processes"][name]
        assert last["fds"] - first["fds"] <= 16, (name, first, last)
