"""The deterministic, versioned feasibility engine that decides ALLOW or BLOCK for a candidate (SVG + spec).

A verdict is about exactly the bytes it names. The engine trusts no earlier check: it runs the rosette contract's
allowlist validator on the SVG, recompiles the spec with the rosette compiler and requires the SVG to be
byte-identical to the compiler's output (SVG_NOT_FROM_SPEC otherwise), so the geometry checks it makes on the spec
are checks on the SVG that will be cut.

Same inputs, same engine version -> same result and same feasibility_sha256, on any machine: the hash covers the
engine version, the input digests and the settings that shaped the result, and never a request id or a time.
Any change to a rule, or to the compiler it compares against, must bump ENGINE_VERSION.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from defusedxml.ElementTree import fromstring

from services.common.hashing import sha256_bytes, sha256_canonical
from services.rosette.compiler import COMPILER_VERSION, compile_svg
from services.rosette.spec import (
    Circle,
    Group,
    RadialPetals,
    RopeBand,
    RosetteSpec,
    SegmentedRing,
    SpecInvalid,
    parse_spec,
)
from services.rosette.svg_validator import validate_svg

ENGINE_ID = "custody-feasibility"
ENGINE_VERSION = "custody-feasibility/2.0.0"
# What only the engine may put on a run: CreateRun refuses these, so a run that carries them was minted by binding.
ENGINE_MODE = "candidate_binding"
PRIMITIVES = frozenset({"circle", "ellipse", "line", "polyline", "polygon", "rect", "path", "text"})
CNC_UNSAFE = frozenset({"path", "text"})
COMPLEX_PRIMITIVES = 300
MAX_PRIMITIVES = 1000
NEAR_LIMIT_FACTOR = 1.5
# A hostile SVG can break the allowlist thousands of times; the verdict names this many findings and counts the rest.
MAX_SVG_REASONS = 50


def is_engine_version(version: str) -> bool:
    return version == ENGINE_ID or version.startswith(f"{ENGINE_ID}/")


@dataclass(frozen=True)
class EngineSettings:
    tool_diameter_mm: float = 0.5
    # CNC-safe mode refuses path and text elements: only primitives a router can follow exactly.
    cnc_safe: bool = True


@dataclass(frozen=True)
class FeasibilityResult:
    allowed: bool
    score: float
    risk_level: str  # GREEN | YELLOW | RED
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def decision(self) -> str:
        return "ALLOW" if self.allowed else "BLOCK"

    def to_document(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "score": self.score,
            "risk_level": self.risk_level,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class Evaluation:
    result: FeasibilityResult
    inputs: dict[str, Any]
    feasibility_sha256: str


def evaluate(svg: bytes | None, spec: bytes | None, settings: EngineSettings) -> Evaluation:
    """Runs every check (it never stops at the first finding) and hashes the outcome. Reasons and warnings start
    with an UPPER_SNAKE code, then say where and why."""
    reasons: list[str] = []
    warnings: list[str] = []
    metrics: dict[str, Any] = {}
    parsed: RosetteSpec | None = None
    if spec is None:
        reasons.append("MISSING_SPEC: no geometry_spec_json attachment was bound")
    else:
        parsed = _check_spec(spec, settings, reasons, warnings)
    if svg is None:
        reasons.append("MISSING_SVG: no geometry_svg attachment was bound")
    else:
        _check_svg(svg, settings, reasons, warnings, metrics)
        _check_from_spec(svg, parsed, spec is not None, reasons)
    result = _score(reasons, warnings, metrics)
    inputs = {
        "svg_sha256": sha256_bytes(svg) if svg is not None else None,
        "spec_sha256": sha256_bytes(spec) if spec is not None else None,
        "compiler_version": COMPILER_VERSION,
        "tool_diameter_mm": settings.tool_diameter_mm,
        "cnc_safe": settings.cnc_safe,
    }
    digest = sha256_canonical({"engine_version": ENGINE_VERSION, "inputs": inputs, "result": result.to_document()})
    return Evaluation(result, inputs, digest)


def _score(reasons: list[str], warnings: list[str], metrics: dict[str, Any]) -> FeasibilityResult:
    score = max(0.0, 1.0 - 0.1 * len(warnings))
    if reasons:
        score = min(score, 0.25)
    score = round(score, 4)
    risk = "RED" if reasons or score < 0.5 else "GREEN" if score >= 0.8 else "YELLOW"
    return FeasibilityResult(not reasons, score, risk, tuple(reasons), tuple(warnings), metrics)


def _check_svg(
    svg: bytes, settings: EngineSettings, reasons: list[str], warnings: list[str], metrics: dict[str, Any]
) -> None:
    """The allowlist, then (for a safe SVG) CNC safety and complexity."""
    violations = validate_svg(svg)
    if violations:
        reasons.extend(f"SVG_{v.rule} at {v.location}: {v.detail}" for v in violations[:MAX_SVG_REASONS])
        if len(violations) > MAX_SVG_REASONS:
            reasons.append(f"SVG_MORE_VIOLATIONS: {len(violations) - MAX_SVG_REASONS} more allowlist violations")
        return
    found: dict[str, int] = {}
    for element in fromstring(svg, forbid_dtd=True, forbid_entities=True, forbid_external=True).iter():
        tag = element.tag.rsplit("}", 1)[-1]
        found[tag] = found.get(tag, 0) + 1
    if settings.cnc_safe:
        reasons.extend(
            f"CNC_UNSAFE_ELEMENT: {found[tag]} <{tag}> element(s); CNC-safe mode cuts only exact primitives"
            for tag in sorted(CNC_UNSAFE & found.keys())
        )
    primitives = sum(count for tag, count in found.items() if tag in PRIMITIVES)
    metrics["primitives"] = primitives
    if primitives > MAX_PRIMITIVES:
        reasons.append(f"TOO_COMPLEX: {primitives} primitives (limit {MAX_PRIMITIVES})")
    elif primitives > COMPLEX_PRIMITIVES:
        warnings.append(f"COMPLEX: {primitives} primitives (above {COMPLEX_PRIMITIVES})")


def _check_from_spec(svg: bytes, spec: RosetteSpec | None, spec_bound: bool, reasons: list[str]) -> None:
    """The SVG must be exactly what the compiler makes of the spec; otherwise the spec's geometry says nothing
    about it."""
    if spec is None:
        if spec_bound:  # an unbound spec is already its own reason
            reasons.append("SVG_NOT_FROM_SPEC: the spec is invalid, so nothing shows what the SVG's geometry is")
        return
    expected = compile_svg(spec)
    if svg != expected:
        offset = next((i for i, (a, b) in enumerate(zip(svg, expected, strict=False)) if a != b), None)
        where = f"byte {offset}" if offset is not None else f"length {len(svg)} vs {len(expected)}"
        reasons.append(
            f"SVG_NOT_FROM_SPEC: the SVG (sha256 {sha256_bytes(svg)}) is not what {COMPILER_VERSION} compiles from "
            f"the bound spec (sha256 {sha256_bytes(expected)}); first difference at {where}"
        )


def _check_spec(spec: bytes, settings: EngineSettings, reasons: list[str], warnings: list[str]) -> RosetteSpec | None:
    """Validity and geometry; the parsed spec when it is valid."""
    try:
        parsed: RosetteSpec = parse_spec(json.loads(spec))
    except RecursionError:  # json recurses once per nesting level
        reasons.append("SPEC_UNPARSEABLE: nested too deeply to parse")
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        reasons.append(f"SPEC_UNPARSEABLE: {type(exc).__name__}: {str(exc)[:200]}")
        return None
    except SpecInvalid as exc:
        reasons.extend(f"SPEC_INVALID at {v.field}: {v.description}" for v in exc.violations)
        return None
    tool = settings.tool_diameter_mm
    for path, shape in _walk(parsed.shapes, "shapes"):
        for feature, size in _features(shape):
            where = f"{path} ({shape.kind}) {feature} {size:.3f} mm"
            if size < tool:
                reasons.append(f"FEATURE_BELOW_TOOL_DIAMETER: {where} < tool diameter {tool} mm")
            elif size < tool * NEAR_LIMIT_FACTOR:
                warnings.append(f"FEATURE_NEAR_TOOL_DIAMETER: {where} < {NEAR_LIMIT_FACTOR} x tool diameter")
        if isinstance(shape, RadialPetals) and shape.count * shape.petal_width_deg > 360:
            reasons.append(
                f"PETALS_OVERLAP: {path} has {shape.count} petals of {shape.petal_width_deg} degrees "
                f"({shape.count * shape.petal_width_deg:.1f} > 360)"
            )
    return parsed


def _walk(shapes: list[Any], prefix: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for index, shape in enumerate(shapes):
        path = f"{prefix}[{index}]"
        found.append((path, shape))
        if isinstance(shape, Group):
            found.extend(_walk(shape.shapes, f"{path}.shapes"))
    return found


def _features(shape: Any) -> list[tuple[str, float]]:
    """The narrowest features a tool must cut, per shape kind (mm)."""
    if isinstance(shape, Circle):
        return [("diameter", 2 * shape.r)]
    if isinstance(shape, Group):
        return []
    width = shape.outer_r - shape.inner_r
    features = [("band width", width)]
    if isinstance(shape, RadialPetals):
        mid = (shape.inner_r + shape.outer_r) / 2
        features.append(("petal width", 2 * mid * math.sin(math.radians(shape.petal_width_deg) / 2)))
    elif isinstance(shape, SegmentedRing):
        tile_deg = 360 / shape.segments - shape.gap_deg
        features.append(("tile width", shape.inner_r * math.radians(tile_deg)))
    elif isinstance(shape, RopeBand):
        features.append(("strand spacing", 2 * math.pi * shape.inner_r / shape.strands))
    return features
