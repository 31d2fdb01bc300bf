"""The module contract: what `run_module(inputs, params, context)` receives and returns.

A module is a directory with `module.yaml` (its manifest) and `main.py` defining `run_module`. It is stateless:
it reads its inputs and params and returns its outputs; the driver validates and saves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class InputArtifact:
    """One input: an exact lineage version produced by a stage this one needs."""

    name: str
    artifact_type: str
    stage: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class ModuleContext:
    run_id: str
    recipe_id: str
    stage_id: str
    project: str
    run_dir: Path


@dataclass(frozen=True)
class Output:
    """One output artifact. (artifact_type, entity) must be one the manifest declares (entity defaults to the
    stage id); the metadata becomes the version's audit metadata."""

    artifact_type: str
    data: Mapping[str, Any]
    intent: str
    rationale: str
    confidence: float = 1.0
    source: str = "ai"
    entity: str | None = None
    alternatives_considered: tuple[str, ...] = ()
    producing_role: str = ""
    # A custody.common.v1.CostRecord as a dict (proto field names), if the output cost an AI call.
    cost: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ModuleResult:
    outputs: tuple[Output, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)
