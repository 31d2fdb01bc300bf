"""`python -m bench.faults.outages [--scenario postgres|lineage|gateway|disk-full|all]`: each outage against real
service processes, its figures printed as a table and written to bench/results/outages-<time>.json.

  postgres   PostgreSQL (a private cluster) stopped like a crash under load and started again
  lineage    lineage killed right after mints were acknowledged, started again: the outbox delivers them all
  gateway    ai_gateway killed: art_studio and runs answer clearly and write nothing half
  disk-full  runs' blob directory on a 2 MiB tmpfs in a private mount namespace, filled up
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.faults import disk_full, gateway_down, lineage_down, postgres_restart
from bench.harness import write_result

SCENARIOS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "postgres": postgres_restart.run,
    "lineage": lineage_down.run,
    "gateway": gateway_down.run,
    "disk-full": disk_full.run,
}


def rows(figures: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flattened (figure, value) rows: nested figures are named by their path; answers counted by label
    ("UNAVAILABLE DATABASE_UNAVAILABLE +RetryInfo": 12) stay on one row."""
    found: list[tuple[str, str]] = []
    for key, value in figures.items():
        if isinstance(value, dict) and value and all(k.islower() and " " not in k for k in value):
            found += rows(value, f"{prefix}{key}.")
        elif isinstance(value, dict):
            found.append((prefix + key, ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"))
        else:
            found.append((prefix + key, json.dumps(value) if isinstance(value, list) else str(value)))
    return found


def table(name: str, figures: dict[str, Any]) -> str:
    lines = [f"outage: {name}"]
    listed = [(k, v) for k, v in rows(figures) if k != "scenario"]
    width = max(len(k) for k, _ in listed)
    lines += [f"  {key.ljust(width)}  {value}" for key, value in listed]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    arguments = parser.parse_args(argv)
    chosen = list(SCENARIOS) if arguments.scenario == "all" else [arguments.scenario]
    results: dict[str, Any] = {}
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"custody-outage-{name}-") as root:
            results[name] = SCENARIOS[name](Path(root))
        print(table(name, results[name]), flush=True)
    path = write_result("outages", {"scenarios": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
