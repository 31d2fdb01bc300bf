"""A run artifact as the legacy JSON store wrote it (the shape `custody runs migrate` reads), for tests and seeds."""

from __future__ import annotations

from typing import Any

from services.common.hashing import sha256_canonical


def legacy_artifact(legacy_id: str, **overrides: Any) -> dict[str, Any]:
    feasibility = {"checks": ["depth"], "legacy": True}
    artifact = {
        "run_id": legacy_id,
        "created_at_utc": "2025-12-17T10:00:00Z",
        "mode": "cnc",
        "tool_id": "router-3mm",
        "status": "OK",
        "request_summary": {"diameter": 90},
        "feasibility": feasibility,
        "decision": {"risk_level": "low", "score": 0.9, "block_reason": None, "warnings": []},
        "hashes": {"feasibility_sha256": sha256_canonical(feasibility)},
        "outputs": {"gcode_path": "out/a.nc", "opplan_path": None},
        "advisory_inputs": [],
        "explanation_status": "NONE",
        "meta": {},
    }
    artifact.update(overrides)
    return artifact
