"""The benchmark harness keeps working: the seconds-long suite runs every benchmark and writes its reports.
No thresholds here: performance figures live in bench/, never in timed tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from bench.harness import RESULTS

pytestmark = pytest.mark.stack


# Eight benchmark processes one after another, each starting services: over a minute on a loaded 2-core machine.
@pytest.mark.timeout(300)
def test_the_smoke_suite_runs_every_benchmark_and_writes_its_reports() -> None:
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "bench.suite", "--smoke"], capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (report,) = [p for p in RESULTS.glob("smoke-*.json") if p.stat().st_mtime >= started]
    result = json.loads(report.read_text())
    assert result["errors"] == {}
    assert set(result["sections"]) == {
        "ceiling",
        "runs",
        "mlflow",
        "gateway",
        "detectors",
        "lineage",
        "ledger",
        "art_studio",
        "soak",
        "fuzz",
        "faults",
    }
    for point in ("c1", "c16"):  # the floor is measured beside custody, in the same run
        assert {"floor", "custody"} <= set(result["sections"]["gateway"]["added"][point])
    detectors = result["sections"]["detectors"]
    assert {"secrets", "email", "card_number", "prompt_injection"} <= set(detectors["per_kib"])
    assert {"idle", "GenerateText", "StreamText"} <= set(detectors["event_loop"]["adversarial"]["chunks_of_4"])
    ledger = result["sections"]["ledger"]  # ledger on and off measured in the same run, then audited
    assert {"on", "off"} <= set(ledger["backends"]["sqlite"]["mints_per_s_8_clients"])
    assert ledger["backends"]["sqlite"]["audit"]["ok"]
    assert ledger["proofs"]["inclusion_in_process"]["n"] > 0
    lineage = result["sections"]["lineage"]  # both backends in the same run, or why PostgreSQL was not measured
    assert lineage["backends"][0] == "sqlite"
    assert ("postgresql" in lineage["backends"]) != ("postgresql" in lineage["skipped"])
    assert {r["database"] for r in lineage["results"]} == set(lineage["backends"])
    fuzz = result["sections"]["fuzz"]["targets"]["svg_validator"]
    assert fuzz["executions"] > 0 and fuzz["crashes"] == 0
    assert report.with_suffix(".md").read_text().startswith("| measure |")
    assert report.with_name(report.stem + "-throughput.png").stat().st_size > 0
