"""How two versions of a run record differ, with severities: one copy for `DiffRuns` (services.runs.domain.diff)
and `custody runs migrate verify` (a legacy record against the run it was migrated as), so both rank a difference
the same way.

CRITICAL: a hash or digest differs (any path under hashes., or ending in .sha256 / _sha256), or the status changes
to or from ERROR. WARNING: another status change, a risk level change, a score drift above the threshold.
INFO: everything else.
"""

from __future__ import annotations

from typing import Any

SEVERITIES = ("INFO", "WARNING", "CRITICAL")


def severity(path: str, left: Any, right: Any, score_threshold: float) -> str:
    if path.startswith("hashes.") or path.endswith(".sha256") or path.endswith("_sha256"):
        return "CRITICAL"
    if path == "status" and "ERROR" in (left, right):
        return "CRITICAL"
    if path in ("status", "decision.risk_level"):
        return "WARNING"
    if path == "decision.score" and isinstance(left, int | float) and isinstance(right, int | float):
        return "WARNING" if abs(left - right) > score_threshold else "INFO"
    return "INFO"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A JSON document as {dotted path: leaf value}; lists index as path[i], empty maps and lists stay leaves."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat or {prefix: {}}
    if isinstance(value, list):
        flat = {}
        for index, item in enumerate(value):
            flat.update(flatten(item, f"{prefix}[{index}]"))
        return flat or {prefix: []}
    return {prefix: value}
