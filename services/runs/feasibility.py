"""The deterministic, versioned feasibility engine that decides ALLOW or BLOCK for a candidate (SVG + spec).

Same inputs, same engine version -> same result and same feasibility_sha256, on any machine: the hash covers the
engine version, the input digests and the settings that shaped the result, and never a request id or a time.
Any change to a rule must bump ENGINE_VERSION.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from services.common.hashing import sha256_bytes, sha256_canonical
from services.common.rosette_spec import (
    Circle,
    Group,
    RadialPetals,
    RopeBand,
    RosetteSpec,
    SegmentedRing,
    SpecInvalid,
    parse_spec,
)

ENGINE_ID = "custody-feasibility"
ENGINE_VERSION = "custody-feasibility/1.0.0"
PRIMITIVES = frozenset({"circle", "ellipse", "line", "polyline", "polygon", "rect", "path", "text"})
COMPLEX_PRIMITIVES = 300
MAX_PRIMITIVES = 1000
NEAR_LIMIT_FACTOR = 1.5


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
    """Runs every check (it never stops at the first finding) and hashes the outcome."""
    reasons: list[str] = []
    warnings: list[str] = []
    metrics: dict[str, Any] = {}
    if svg is None:
        reasons.append("missing_svg: no geometry_svg attachment was bound")
    else:
        _check_svg(svg, settings, reasons, warnings, metrics)
    if spec is None:
        reasons.append("missing_spec: no geometry_spec_json attachment was bound")
    else:
        _check_spec(spec, settings, reasons, warnings)
    result = _score(reasons, warnings, metrics)
    inputs = {
        "svg_sha256": sha256_bytes(svg) if svg is not None else None,
        "spec_sha256": sha256_bytes(spec) if spec is not None else None,
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


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _check_svg(
    svg: bytes, settings: EngineSettings, reasons: list[str], warnings: list[str], metrics: dict[str, Any]
) -> None:
    try:
        root: Element = fromstring(svg, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        reasons.append("doctype_or_entities: the SVG declares a DOCTYPE or entities")
        return
    except (ParseError, ValueError) as exc:
        reasons.append(f"svg_unparseable: {exc}")
        return
    if _local(root.tag) != "svg":
        reasons.append(f"not_svg: the root element is <{_local(root.tag)}>")
    found: dict[str, int] = {}
    blocked_elements = {"script": "script", "foreignObject": "foreign_object", "image": "image"}
    if settings.cnc_safe:
        blocked_elements.update({"path": "path_elements", "text": "text_elements"})
    seen: set[str] = set()
    for element in root.iter():
        tag = _local(element.tag)
        found[tag] = found.get(tag, 0) + 1
        if tag in blocked_elements and blocked_elements[tag] not in seen:
            seen.add(blocked_elements[tag])
            reasons.append(
                f"{blocked_elements[tag]}: <{tag}> is not allowed"
                + (" in CNC-safe mode" if tag in ("path", "text") else "")
            )
        for attribute, value in element.attrib.items():
            name = _local(attribute)
            if name.lower().startswith("on") and "event_attribute" not in seen:
                seen.add("event_attribute")
                reasons.append(f"event_attribute: <{tag} {name}=...> runs script")
            if name == "href" and not value.startswith("#") and "external_href" not in seen:
                seen.add("external_href")
                reasons.append(f"external_href: <{tag}> references {value[:60]!r}; only #fragment links are allowed")
    primitives = sum(count for tag, count in found.items() if tag in PRIMITIVES)
    metrics["primitives"] = primitives
    if primitives > MAX_PRIMITIVES:
        reasons.append(f"too_complex: {primitives} primitives (limit {MAX_PRIMITIVES})")
    elif primitives > COMPLEX_PRIMITIVES:
        warnings.append(f"complex: {primitives} primitives (above {COMPLEX_PRIMITIVES})")


def _check_spec(spec: bytes, settings: EngineSettings, reasons: list[str], warnings: list[str]) -> None:
    try:
        parsed: RosetteSpec = parse_spec(json.loads(spec))
    except (ValueError, UnicodeDecodeError) as exc:
        reasons.append(f"spec_unparseable: {exc}")
        return
    except RecursionError:  # json recurses once per nesting level
        reasons.append("spec_unparseable: nested too deeply to parse")
        return
    except SpecInvalid as exc:
        reasons.extend(f"spec_invalid: {v.field}: {v.description}" for v in exc.violations)
        return
    tool = settings.tool_diameter_mm
    for path, shape in _walk(parsed.shapes, "shapes"):
        for feature, size in _features(shape):
            where = f"{path} ({shape.kind}) {feature} {size:.3f} mm"
            if size < tool:
                reasons.append(f"feature_below_tool_diameter: {where} < tool diameter {tool} mm")
            elif size < tool * NEAR_LIMIT_FACTOR:
                warnings.append(f"feature_near_tool_diameter: {where} < {NEAR_LIMIT_FACTOR} x tool diameter")
        if isinstance(shape, RadialPetals) and shape.count * shape.petal_width_deg > 360:
            reasons.append(
                f"petals_overlap: {path} has {shape.count} petals of {shape.petal_width_deg} degrees "
                f"({shape.count * shape.petal_width_deg:.1f} > 360)"
            )


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
