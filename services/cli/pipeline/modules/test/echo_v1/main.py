"""echo_v1: copies its inputs' messages (or params.message) into one echo_record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.cli.pipeline.contract import InputArtifact, ModuleContext, ModuleResult, Output


def run_module(inputs: Mapping[str, InputArtifact], params: Mapping[str, Any], context: ModuleContext) -> ModuleResult:
    if params.get("fail"):
        raise RuntimeError(f"echo_v1 was asked to fail in stage {context.stage_id}")
    messages = [str(i.data.get("message", "")) for i in inputs.values()]
    message = str(params.get("message", " | ".join(messages)))
    data: dict[str, Any] = {"message": message, "sources": sorted(i.name for i in inputs.values())}
    if params.get("invalid_output"):
        data = {"sources": "not-a-list"}
    cost = None
    if "cost_usd" in params:
        cost = {"estimate_usd": float(params["cost_usd"]), "provider": "echo", "model": "echo-v1"}
    return ModuleResult(
        outputs=(
            Output(
                artifact_type="echo_record",
                data=data,
                intent="echo the inputs for a pipeline smoke test",
                rationale="deterministic copy; no model involved",
                confidence=1.0,
                source="ai" if cost else "human",
                cost=cost,
            ),
        )
    )
