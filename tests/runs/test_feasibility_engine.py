"""The feasibility engine alone: deterministic decisions, reasons and hashes from SVG + spec bytes, and a verdict
that is about exactly those bytes (the allowlist on the SVG, and the SVG must be the spec's compiled SVG)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.rosette.compiler import COMPILER_VERSION, compile_svg
from services.rosette.spec import SpecInvalid, parse_spec
from services.runs.feasibility import ENGINE_VERSION, EngineSettings, evaluate
from tests.runs.candidates import CLEAN_SPEC, CLEAN_SVG, HOSTILE_SVGS, compiled, spec

SETTINGS = EngineSettings(tool_diameter_mm=0.5)
# What geometry alone can block (the spec's features and the drawing's size), never the allowlist.
GEOMETRY_REASONS = {"FEATURE_BELOW_TOOL_DIAMETER", "PETALS_OVERLAP", "TOO_COMPLEX"}


def codes(reasons: tuple[str, ...]) -> set[str]:
    return {r.split(":")[0].split(" at ")[0] for r in reasons}


def test_a_clean_candidate_is_allowed_and_green() -> None:
    result = evaluate(CLEAN_SVG, CLEAN_SPEC, SETTINGS).result
    assert (result.decision, result.risk_level, result.reasons) == ("ALLOW", "GREEN", ())


def test_the_same_inputs_give_the_same_hash() -> None:
    assert (
        evaluate(CLEAN_SVG, CLEAN_SPEC, SETTINGS).feasibility_sha256
        == evaluate(CLEAN_SVG, CLEAN_SPEC, SETTINGS).feasibility_sha256
    )


def test_the_hash_changes_with_the_inputs_and_the_settings() -> None:
    base = evaluate(CLEAN_SVG, CLEAN_SPEC, SETTINGS).feasibility_sha256
    assert evaluate(CLEAN_SVG + b" ", CLEAN_SPEC, SETTINGS).feasibility_sha256 != base
    assert evaluate(CLEAN_SVG, CLEAN_SPEC, EngineSettings(tool_diameter_mm=0.6)).feasibility_sha256 != base


def test_the_hash_covers_the_engine_and_compiler_versions_not_the_request() -> None:
    evaluation = evaluate(CLEAN_SVG, CLEAN_SPEC, SETTINGS)
    assert set(evaluation.inputs) == {"svg_sha256", "spec_sha256", "compiler_version", "tool_diameter_mm", "cnc_safe"}
    assert evaluation.inputs["compiler_version"] == COMPILER_VERSION
    assert ENGINE_VERSION == "custody-feasibility/2.0.0"


@pytest.mark.parametrize(
    ("family", "index"), [(family, i) for family, payloads in HOSTILE_SVGS.items() for i in range(len(payloads))]
)
def test_hostile_svg_is_blocked_by_the_allowlist_or_as_not_from_the_spec(family: str, index: int) -> None:
    result = evaluate(HOSTILE_SVGS[family][index], CLEAN_SPEC, SETTINGS).result
    assert result.decision == "BLOCK" and result.risk_level == "RED"
    assert "SVG_NOT_FROM_SPEC" in codes(result.reasons), result.reasons


@pytest.mark.parametrize(
    ("family", "rule"),
    [
        ("active_content", "SVG_"),
        ("smil_animation", "SVG_ELEMENT_NOT_ALLOWED"),
        ("processing_instruction", "SVG_PROCESSING_INSTRUCTION"),
        ("markup_tricks", "SVG_"),
    ],
)
def test_each_allowlist_violation_is_a_reason_with_its_location(family: str, rule: str) -> None:
    for payload in HOSTILE_SVGS[family]:
        reasons = evaluate(payload, CLEAN_SPEC, SETTINGS).result.reasons
        found = [r for r in reasons if r.startswith("SVG_") and not r.startswith("SVG_NOT_FROM_SPEC")]
        assert found and all(" at " in r for r in found), reasons
        assert any(r.startswith(rule) for r in found), reasons


def test_css_hidden_behind_escapes_or_comments_is_refused() -> None:
    for payload in HOSTILE_SVGS["css"]:
        reasons = codes(evaluate(payload, CLEAN_SPEC, SETTINGS).result.reasons)
        refused = {
            "SVG_EXTERNAL_REFERENCE",
            "SVG_CSS_NOT_ALLOWED",
            "SVG_ELEMENT_NOT_ALLOWED",
            "SVG_ATTRIBUTE_NOT_ALLOWED",
        }
        assert reasons & refused, reasons


def test_a_safe_svg_with_other_geometry_is_blocked_as_not_from_the_spec() -> None:
    for payload in HOSTILE_SVGS["geometry_not_the_specs"]:
        result = evaluate(payload, CLEAN_SPEC, SETTINGS).result
        assert result.decision == "BLOCK"
        assert [r for r in result.reasons if r.startswith("SVG_NOT_FROM_SPEC")], result.reasons


def test_the_mismatch_names_both_digests_and_the_first_differing_byte() -> None:
    (reason,) = evaluate(CLEAN_SVG.replace(b'r="48"', b'r="49"'), CLEAN_SPEC, SETTINGS).result.reasons
    assert COMPILER_VERSION in reason and "first difference at byte" in reason


def test_an_invalid_spec_leaves_the_svg_unverified_and_blocked() -> None:
    result = evaluate(CLEAN_SVG, spec({"kind": "ring", "inner_r": 45, "outer_r": 40}), SETTINGS).result
    assert {"SPEC_INVALID", "SVG_NOT_FROM_SPEC"} <= codes(result.reasons)
    assert any(r.startswith("SPEC_INVALID at shapes[0]") for r in result.reasons)


def test_feature_narrower_than_the_tool_blocks() -> None:
    thin = spec({"kind": "ring", "inner_r": 40, "outer_r": 40.3})
    result = evaluate(compiled(thin), thin, SETTINGS).result
    assert result.decision == "BLOCK" and codes(result.reasons) == {"FEATURE_BELOW_TOOL_DIAMETER"}
    assert any("band width 0.300 mm < tool diameter 0.5 mm" in r for r in result.reasons)


def test_feature_close_to_the_tool_is_a_warning() -> None:
    close = spec({"kind": "ring", "inner_r": 40, "outer_r": 40.6})
    result = evaluate(compiled(close), close, SETTINGS).result
    assert result.decision == "ALLOW" and result.risk_level == "GREEN"
    assert any(w.startswith("FEATURE_NEAR_TOOL_DIAMETER") for w in result.warnings)


def test_overlapping_petals_block() -> None:
    petals = spec({"kind": "radial_petals", "inner_r": 8, "outer_r": 30, "count": 30, "petal_width_deg": 15})
    result = evaluate(compiled(petals), petals, SETTINGS).result
    assert codes(result.reasons) == {"PETALS_OVERLAP"}


def test_unparseable_inputs_block_instead_of_crashing() -> None:
    result = evaluate(b"<svg", b"{not json", SETTINGS).result
    assert codes(result.reasons) == {"SVG_UNPARSEABLE", "SPEC_UNPARSEABLE", "SVG_NOT_FROM_SPEC"}


def test_complexity_raises_risk_then_blocks() -> None:
    ring = {"kind": "segmented_ring", "inner_r": 30, "outer_r": 45, "segments": 360, "gap_deg": 0}
    medium_spec = spec(ring)
    medium = evaluate(compiled(medium_spec), medium_spec, SETTINGS).result
    assert medium.risk_level == "GREEN" and any(w.startswith("COMPLEX") for w in medium.warnings)
    large_spec = spec(ring, {**ring, "inner_r": 33, "outer_r": 46}, {**ring, "inner_r": 36, "outer_r": 47})
    large = evaluate(compiled(large_spec), large_spec, SETTINGS).result
    assert codes(large.reasons) == {"TOO_COMPLEX"}


def test_missing_inputs_block() -> None:
    result = evaluate(None, None, SETTINGS).result
    assert codes(result.reasons) == {"MISSING_SVG", "MISSING_SPEC"}


def test_cnc_safe_mode_refuses_paths_and_text_even_inside_an_otherwise_clean_svg() -> None:
    result = evaluate(CLEAN_SVG.replace(b"</g>\n</svg>", b'<path d="M0 0 L1 1"/>\n</g>\n</svg>'), CLEAN_SPEC, SETTINGS)
    assert {"CNC_UNSAFE_ELEMENT", "SVG_NOT_FROM_SPEC"} <= codes(result.result.reasons)


# ---- properties over every spec the compiler accepts ----------------------------------------------------------

_radius = st.floats(min_value=0.5, max_value=45, allow_nan=False)


@st.composite
def shapes(draw: st.DrawFn) -> dict[str, object]:
    inner = draw(_radius)
    outer = draw(st.floats(min_value=inner + 0.01, max_value=48, allow_nan=False))
    kind = draw(st.sampled_from(["circle", "ring", "radial_petals", "segmented_ring", "rope_band"]))
    if kind == "circle":
        return {"kind": "circle", "r": outer}
    shape: dict[str, object] = {"kind": kind, "inner_r": inner, "outer_r": outer}
    if kind == "radial_petals":
        shape.update(
            count=draw(st.integers(3, 64)),
            petal_width_deg=draw(st.floats(0.5, 120)),
            petal_shape=draw(st.sampled_from(["ellipse", "pointed", "teardrop"])),
            rotation_deg=draw(st.floats(-360, 360)),
        )
    elif kind == "segmented_ring":
        segments = draw(st.integers(3, 360))
        shape.update(segments=segments, gap_deg=draw(st.floats(0, min(59.9, 359.9 / segments))))
    elif kind == "rope_band":
        shape.update(strands=draw(st.integers(4, 360)), pattern=draw(st.sampled_from(["rope", "herringbone"])))
    return shape


@st.composite
def specs(draw: st.DrawFn) -> bytes:
    members = draw(st.lists(shapes(), min_size=1, max_size=8))
    if draw(st.booleans()):
        members = [{"kind": "group", "rotation_deg": draw(st.floats(-360, 360)), "shapes": members}]
    return json.dumps({"canvas": {"diameter_mm": 100}, "stroke_mm": 0.3, "shapes": members}).encode()


def _compiled_or_none(spec_bytes: bytes) -> bytes | None:
    try:
        return compile_svg(parse_spec(json.loads(spec_bytes)))
    except SpecInvalid:
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_a_compiled_spec_is_decided_by_its_geometry_only(spec_bytes: bytes) -> None:
    svg = _compiled_or_none(spec_bytes)
    if svg is None:
        return  # the spec itself is invalid (e.g. shapes outside the canvas): not a compiled candidate
    result = evaluate(svg, spec_bytes, SETTINGS).result
    assert codes(result.reasons) <= GEOMETRY_REASONS, result.reasons


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.data())
def test_any_single_byte_change_to_the_svg_is_not_from_the_spec(spec_bytes: bytes, data: st.DataObject) -> None:
    svg = _compiled_or_none(spec_bytes)
    if svg is None:
        return
    position = data.draw(st.integers(0, len(svg) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != svg[position]))
    mutated = svg[:position] + bytes([replacement]) + svg[position + 1 :]
    result = evaluate(mutated, spec_bytes, SETTINGS).result
    assert result.decision == "BLOCK" and "SVG_NOT_FROM_SPEC" in codes(result.reasons)
